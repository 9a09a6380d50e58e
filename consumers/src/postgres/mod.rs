//! The PostgreSQL sink (Aurora PostgreSQL in production).
//!
//! - [`schema`]: versioned migrations applied on start, the symbol table, and the trades
//!   table's monthly partitions (created ahead, and on demand for any month a batch needs).
//! - [`rows`](self::write): the batch's rows as column arrays and the statements that
//!   write them: multi-row `INSERT … SELECT FROM UNNEST(…)`, one round trip per table.
//!
//! - `read`: orders and fills for the gateway, beyond what it keeps in memory.
//!
//! A batch is one transaction: load the stored state of the orders it touches, fold the
//! batch over it ([`crate::rows::build`]), upsert the orders that changed (only over an
//! older version), insert order events, trades and fills (`ON CONFLICT DO NOTHING`).
//! Errors are classified for the framework: data the database refuses (SQLSTATE classes
//! 22 and 23) or cannot represent is permanent; everything else (connection lost, server
//! shutting down, serialization failures, a missing table) is transient, so a broken
//! database stops the consumer instead of dead-lettering everything.

mod read;
pub mod schema;
mod write;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::tokio_postgres::{self, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tachyon_proto::{SymbolSpec, Timestamp};
use tokio::sync::OnceCell;

use crate::symbols::SymbolTable;
use tachyon_runtime::consumer::{Item, Sink, SinkError};

/// The sink's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (the password is never logged).
    pub url: String,
    /// Connections in the pool (one per partition writing at once is enough).
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Monthly trade partitions created ahead of the current month.
    pub months_ahead: u32,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("months_ahead", &self.months_ahead)
            .finish()
    }
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), pool_size: 4, connect_timeout: Duration::from_secs(5), months_ahead: 2 }
    }
}

/// A URL with its password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Checks that a database URL parses (the error does not repeat it: it may hold a password).
///
/// # Errors
/// What is wrong with it.
pub fn check_url(url: &str) -> Result<(), String> {
    tokio_postgres::Config::from_str(url).map(drop).map_err(|e| e.to_string())
}

/// Why the sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// The PostgreSQL sink (see the module docs).
pub struct PostgresSink {
    pool: Pool,
    config: PostgresConfig,
    symbols: SymbolTable,
    /// Set once the schema is up to date (retried on every write until it is).
    ready: OnceCell<()>,
    /// Months whose trades partition is known to exist.
    months: Mutex<BTreeSet<i64>>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink").field("config", &self.config).finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// A sink for `symbols`; it connects (and migrates) on first use, so a database that is
    /// down at start only delays persistence.
    ///
    /// # Errors
    /// [`SetupError`] for a malformed URL.
    pub fn new(config: PostgresConfig, symbols: &[SymbolSpec]) -> Result<Arc<Self>, SetupError> {
        let mut pg = tokio_postgres::Config::from_str(&config.url).map_err(|e| SetupError::Url(e.to_string()))?;
        pg.connect_timeout(config.connect_timeout);
        pg.application_name("tachyon-persist");
        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| SetupError::Pool(e.to_string()))?;
        Ok(Arc::new(Self {
            pool,
            config,
            symbols: SymbolTable::new(symbols),
            ready: OnceCell::new(),
            months: Mutex::new(BTreeSet::new()),
        }))
    }

    /// The connection pool (for queries of tests and tools).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn ensure_months(&self, client: &mut tokio_postgres::Client, months: &[i64]) -> Result<(), SinkError> {
        let missing: Vec<i64> = {
            let known = self.months.lock();
            months.iter().copied().filter(|m| !known.contains(m)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        schema::create_trade_partitions(client, &missing).await.map_err(|e| classify(&e))?;
        self.months.lock().extend(missing);
        Ok(())
    }
}

impl Sink for PostgresSink {
    async fn check(&self) -> Result<(), SinkError> {
        self.prepare().await?;
        let client = self.pool.get().await.map_err(|e| SinkError::Transient(e.to_string()))?;
        client.simple_query("SELECT 1").await.map(drop).map_err(|e| classify(&e))
    }

    /// Connects, applies the migrations, records the symbols and creates the trade
    /// partitions of this month and the next `months_ahead`.
    ///
    /// # Errors
    /// As a write would report it (transient when the database is unreachable).
    async fn prepare(&self) -> Result<(), SinkError> {
        self.ready
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await.map_err(|e| SinkError::Transient(e.to_string()))?;
                schema::migrate(&mut client).await.map_err(|e| match e {
                    schema::SchemaError::Db(e) => classify(&e),
                    e => SinkError::Transient(e.to_string()),
                })?;
                schema::upsert_symbols(&client, &self.symbols.all()).await.map_err(|e| classify(&e))?;
                let now = schema::month_index(Timestamp::now().year_month());
                let ahead: Vec<i64> = (now..=now + i64::from(self.config.months_ahead)).collect();
                self.ensure_months(&mut client, &ahead).await?;
                tracing::info!(database = %redact(&self.config.url), "PostgreSQL schema ready");
                Ok(())
            })
            .await
            .map(drop)
    }
    async fn write(&self, _partition: u32, items: &[Item]) -> Result<(), SinkError> {
        self.prepare().await?;
        let outputs = items.iter().map(|i| &i.output);
        let months = write::trade_months(outputs.clone())?;
        let mut client = self.pool.get().await.map_err(|e| SinkError::Transient(e.to_string()))?;
        self.ensure_months(&mut client, &months).await?;
        write::write_batch(&mut client, &self.symbols, outputs).await
    }
}

/// Data the database refuses is permanent; anything else is worth retrying.
fn classify(error: &tokio_postgres::Error) -> SinkError {
    match error.code().map(|c| c.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => SinkError::Permanent(error.to_string()),
        _ => {
            let detail = error.as_db_error().map_or_else(|| error.to_string(), |db| db.to_string());
            SinkError::Transient(detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs_or_debug_output() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("host=db user=app"), "host=db user=app");
        let debug = format!("{:?}", PostgresConfig::new("postgres://app:s3cret@db:5432/x"));
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(check_url("postgres://app:s3cret@db:5432/x").is_ok());
        let error = check_url("postgres://app:s3cret@db:notaport/x").expect_err("invalid");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
