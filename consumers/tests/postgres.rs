//! The PostgreSQL sink against a real server (`infra/local/postgres.sh`, a database per
//! test): the engine's stream persisted exactly, redelivery in any split changing nothing,
//! bad records dead-lettered by the consumer while the rest is persisted, migrations.

mod common;
#[path = "../../tests/support/local_server.rs"]
mod local_server;
#[path = "../../tests/support/postgres.rs"]
mod pg;

use std::time::{Duration, Instant};

use common::{
    bus, dead_letters, expected_orders, items, outputs, publish, publish_raw, symbols, trade_count, wait_until,
};
use deadpool_postgres::tokio_postgres::Client;
use tachyon_bus::Backbone;
use tachyon_consumers::{Consumer, ConsumerConfig, PostgresConfig, PostgresSink, Sink};
use tachyon_proto::wire::{encode_output, ShardOutput};
use tachyon_proto::{Event, SymbolId, Topic};

/// Every table, rendered in key order: two equal dumps are two equal databases.
async fn dump(db: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("orders", "order_id"),
        ("order_events", "shard, shard_seq, event_index"),
        ("trades", "symbol, trade_id"),
        ("fills", "symbol, trade_id, liquidity"),
    ] {
        let rows = db.query(&format!("SELECT t::text FROM {table} t ORDER BY {key}"), &[]).await.expect("dump");
        out.extend(rows.iter().map(|r| format!("{table} {}", r.get::<_, String>(0))));
    }
    out
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect("counts").get(0)
}

/// The database holds exactly the orders, trades and fills the stream implies.
async fn assert_matches(db: &Client, streams: &[&[ShardOutput]]) {
    let all = || streams.iter().flat_map(|s| s.iter());
    let expected = expected_orders(all());
    let rows = db.query("SELECT order_id, status, filled_lots FROM orders", &[]).await.expect("orders");
    assert_eq!(rows.len(), expected.len(), "one row per order");
    for row in rows {
        let id = row.get::<_, i64>(0) as u64;
        let (status, filled) = expected[&id];
        assert_eq!(row.get::<_, &str>(1), status.as_str(), "status of order {id}");
        assert_eq!(row.get::<_, i64>(2) as u64, filled, "filled quantity of order {id}");
    }
    let trades = trade_count(all()) as i64;
    assert!(trades > 100, "the stream trades ({trades})");
    assert_eq!(count(db, "SELECT count(*) FROM trades").await, trades);
    assert_eq!(count(db, "SELECT count(*) FROM fills").await, 2 * trades);
    // No fill counted twice into an order: its filled quantity is the sum of its fills.
    let inconsistent = count(
        db,
        "SELECT count(*) FROM orders o
         WHERE filled_lots <> (SELECT coalesce(sum(quantity_lots), 0) FROM fills f WHERE f.order_id = o.order_id)",
    )
    .await;
    assert_eq!(inconsistent, 0);
    // Every order event is there once: one per order created, per side of each trade,
    // per cancel and per amend.
    let changes: i64 = all()
        .flat_map(|o| &o.events)
        .map(|e| match e {
            Event::Trade(_) => 2,
            Event::Accepted(_) | Event::Cancelled(_) | Event::Amended(_) => 1,
            _ => 0,
        })
        .sum::<i64>()
        + count(db, "SELECT count(*) FROM orders WHERE status = 'rejected'").await;
    assert_eq!(count(db, "SELECT count(*) FROM order_events").await, changes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_stream_is_persisted_exactly_and_redelivery_in_any_split_changes_nothing() {
    let url = pg::fresh_database("stream").await;
    let sink = PostgresSink::new(PostgresConfig::new(&url), &symbols()).expect("sink");
    let p0 = outputs(0, SymbolId(1), 1, 3_000, 11);
    let p1 = outputs(1, SymbolId(2), 1_000_000, 1_000, 12);
    let (i0, i1) = (items(&p0), items(&p1));
    // As after crashes between a write and its commit: each write starts before the end
    // of the one before it (records already stored, then new ones, in one batch).
    for range in [0..450, 300..1_234, 1_000..2_000, 1_999..2_500, 2_400..3_000] {
        sink.write(0, &i0[range]).await.expect("writes");
    }
    for chunk in i1.chunks(333) {
        sink.write(1, chunk).await.expect("writes");
    }
    let db = pg::connect(&url).await;
    assert_matches(&db, &[&p0, &p1]).await;
    let before = dump(&db).await;

    // A consumer that crashed before committing reads again from an older offset, with
    // other batch boundaries: overlapping ranges, a lone old prefix, everything at once.
    for range in [0..450, 50..1_234, 2_999..3_000, 0..3_000, 1_777..2_100] {
        sink.write(0, &i0[range]).await.expect("rewrites");
    }
    for chunk in i1.chunks(77) {
        sink.write(1, chunk).await.expect("rewrites");
    }
    assert_eq!(dump(&db).await, before, "redelivery changed the database");

    // Trades crossed a month boundary: one partition each, created on demand.
    let parts = count(&db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass").await;
    assert!(parts >= 2, "{parts} partitions");
    let nov = count(&db, "SELECT count(*) FROM trades_y2026m11").await;
    let dec = count(&db, "SELECT count(*) FROM trades_y2026m12").await;
    assert!(nov > 0 && dec > 0, "november {nov}, december {dec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_dead_letters_bad_records_and_persists_the_rest() {
    let url = pg::fresh_database("dlq").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let stream = outputs(0, SymbolId(1), 1, 1_000, 13);
    // An output naming a symbol this deployment does not have: the sink cannot store it.
    let mut unknown = stream[500].clone();
    unknown.seq = 10_000;
    for e in &mut unknown.events {
        if let Event::Accepted(a) = e {
            a.symbol = SymbolId(99);
            a.order_id = tachyon_proto::OrderId(99_999_999);
        }
    }
    assert!(unknown.events.iter().any(|e| matches!(e, Event::Accepted(_))), "the record creates an order");
    publish(bus.as_ref(), 0, &stream[..400]);
    publish_raw(bus.as_ref(), 0, vec![vec![1, 2, 3], encode_output(&unknown).expect("encodes")]);
    publish(bus.as_ref(), 0, &stream[400..]);

    let sink = PostgresSink::new(PostgresConfig::new(&url), &symbols()).expect("sink");
    let consumer =
        Consumer::start(bus.clone(), sink, ConsumerConfig::new("persist-test", Topic::Executions)).expect("starts");
    let end = bus.end_offset(Topic::Executions, 0).expect("end");
    wait_until("everything is committed", || {
        bus.committed("persist-test", Topic::Executions, 0).expect("reads") == Some(end)
    })
    .await;
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;

    let db = pg::connect(&url).await;
    assert_matches(&db, &[&stream]).await;
    let letters = dead_letters(bus.as_ref());
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["offset"], 400);
    assert_eq!(letters[1]["offset"], 401);
    assert!(letters[1]["error"].as_str().expect("error").contains("unknown symbol id 99"), "{}", letters[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_record_their_version() {
    let url = pg::fresh_database("migrate").await;
    for _ in 0..2 {
        let sink = PostgresSink::new(PostgresConfig::new(&url), &symbols()).expect("sink");
        sink.prepare().await.expect("prepares");
    }
    let db = pg::connect(&url).await;
    let versions = db.query("SELECT version, name FROM tachyon_schema_migrations", &[]).await.expect("reads");
    assert_eq!(versions.len(), 1);
    assert_eq!((versions[0].get::<_, i32>(0), versions[0].get::<_, &str>(1)), (1, "init"));
    let symbols = db.query("SELECT symbol, tick_size::text FROM symbols ORDER BY symbol_id", &[]).await.expect("reads");
    assert_eq!(symbols.len(), 2);
    assert_eq!(symbols[0].get::<_, &str>(0), "AAA-USD");
    // This month's trades partition and the next ones exist before any trade.
    let parts = count(&db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass").await;
    assert_eq!(parts, 3);
}
