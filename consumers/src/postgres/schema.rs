//! Versioned migrations, applied on start, and the trades table's monthly partitions.
//!
//! Migrations are SQL files compiled into the binary, applied in version order, each in
//! its own transaction with its row in `tachyon_schema_migrations`, under an advisory
//! lock so several persisters starting at once apply each exactly once. A database that
//! is ahead of this binary (a version it does not know) is refused.

use deadpool_postgres::tokio_postgres::{Client, Error};
use tachyon_proto::SymbolSpec;

/// (version, name, SQL), in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "init", include_str!("../../migrations/0001_init.sql"))];

/// Advisory lock key for schema changes ("tachyon" in ASCII).
const SCHEMA_LOCK: i64 = 0x0074_6163_6879_6f6e;

/// What went wrong bringing the schema up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Db(#[from] Error),
    #[error("the database has schema version {found}, newer than this binary's {known}: upgrade tachyon")]
    TooNew { found: i32, known: i32 },
}

/// Applies the migrations not yet applied; returns the versions it applied.
///
/// # Errors
/// Database errors, or a database whose schema is newer than [`MIGRATIONS`].
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tachyon_schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 =
        tx.query_one("SELECT coalesce(max(version), 0) FROM tachyon_schema_migrations", &[]).await?.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(SchemaError::TooNew { found: current, known });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO tachyon_schema_migrations (version, name) VALUES ($1, $2)", &[&version, &name]).await?;
        tracing::info!(version, name, "schema migration applied");
        applied.push(version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Records the symbol table (so ticks and lots read as decimals in SQL).
///
/// # Errors
/// Database errors.
pub async fn upsert_symbols(client: &Client, symbols: &[SymbolSpec]) -> Result<(), Error> {
    let ids: Vec<i32> = symbols.iter().map(|s| s.id.0 as i32).collect();
    let names: Vec<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
    let ticks: Vec<String> = symbols.iter().map(|s| s.tick.format_fixed(1)).collect();
    let lots: Vec<String> = symbols.iter().map(|s| s.lot.format_trimmed(1)).collect();
    client
        .execute(
            "INSERT INTO symbols (symbol_id, symbol, tick_size, lot_size)
             SELECT * FROM UNNEST($1::int[], $2::text[], $3::text[]::numeric[], $4::text[]::numeric[])
             ON CONFLICT (symbol_id) DO UPDATE
             SET symbol = EXCLUDED.symbol, tick_size = EXCLUDED.tick_size, lot_size = EXCLUDED.lot_size",
            &[&ids, &names, &ticks, &lots],
        )
        .await?;
    Ok(())
}

/// A calendar month as a count of months since year 0 (orderable, easy to step).
pub fn month_index((year, month): (i64, u32)) -> i64 {
    year * 12 + i64::from(month) - 1
}

/// Creates the trades partition of each month in `months` that does not exist yet.
///
/// # Errors
/// Database errors.
pub async fn create_trade_partitions(client: &mut Client, months: &[i64]) -> Result<(), Error> {
    if months.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(SCHEMA_LOCK + 1)]).await?;
    for &m in months {
        let (y, mo) = (m.div_euclid(12), m.rem_euclid(12) + 1);
        let (ny, nmo) = ((m + 1).div_euclid(12), (m + 1).rem_euclid(12) + 1);
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS trades_y{y:04}m{mo:02} PARTITION OF trades
             FOR VALUES FROM ('{y:04}-{mo:02}-01 00:00:00+00') TO ('{ny:04}-{nmo:02}-01 00:00:00+00')"
        ))
        .await?;
    }
    tx.commit().await
}
