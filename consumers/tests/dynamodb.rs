//! The DynamoDB sink against a real DynamoDB-compatible server (moto, through
//! `infra/local/dynamodb.sh`; tables of each test's own): the engine's stream persisted
//! exactly, redelivery (older versions) changing nothing, the indexes answering, and the
//! consumer dead-lettering a bad record while persisting the rest. moto is slow, so the
//! streams are small.

mod common;
#[path = "../../tests/support/dynamodb.rs"]
mod ddb;
#[path = "../../tests/support/local_server.rs"]
mod local_server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use common::{
    bus, dead_letters, expected_orders, items, outputs, publish, publish_raw, symbols, trade_count, wait_until,
};
use tachyon_bus::Backbone;
use tachyon_consumers::{Consumer, ConsumerConfig, DynamoConfig, DynamoSink, Sink};
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{SymbolId, Topic};

fn config(label: &str) -> DynamoConfig {
    DynamoConfig { table_prefix: ddb::table_prefix(label), create_tables: true, ..DynamoConfig::default() }
}

/// Every item of a table, keyed by its rendering (stable across scans).
async fn scan(client: &Client, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client.scan().table_name(table).set_exclusive_start_key(start).send().await.expect("scans");
        items.extend(out.items().iter().cloned());
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return items;
        }
    }
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item[name].as_s().or_else(|_| item[name].as_n()).expect("a string or number")
}

async fn assert_matches(client: &Client, config: &DynamoConfig, stream: &[ShardOutput]) {
    let expected = expected_orders(stream);
    let orders = scan(client, &config.orders_table()).await;
    assert_eq!(orders.len(), expected.len(), "one item per order");
    for item in &orders {
        let id: u64 = text(item, "order_id").parse().expect("numeric id");
        let (status, filled) = expected[&id];
        assert_eq!(text(item, "status"), status.as_str(), "status of order {id}");
        assert_eq!(text(item, "filled_lots"), filled.to_string(), "filled quantity of order {id}");
    }
    let trades = scan(client, &config.trades_table()).await;
    assert_eq!(trades.len(), trade_count(stream));
    assert!(trades.len() > 20, "the stream trades ({})", trades.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_stream_is_persisted_exactly_and_redelivery_changes_nothing() {
    let aws = ddb::aws_config().await;
    let config = config("stream");
    let sink = DynamoSink::new(&aws, config.clone(), &symbols());
    let stream = outputs(0, SymbolId(1), 1, 300, 21);
    let all = items(&stream);
    // Each write starts before the end of the one before (as after a crash before a commit).
    for range in [0..120, 80..200, 150..300] {
        sink.write(0, &all[range]).await.expect("writes");
    }
    let client = sink.client();
    assert_matches(client, &config, &stream).await;
    let mut before = scan(client, &config.orders_table()).await;
    // An old prefix alone (older versions than stored) and everything again: no change.
    for range in [0..100, 0..300] {
        sink.write(0, &all[range]).await.expect("rewrites");
    }
    let mut after = scan(client, &config.orders_table()).await;
    let key = |i: &HashMap<String, AttributeValue>| text(i, "order_id").parse::<u64>().expect("id");
    before.sort_by_key(key);
    after.sort_by_key(key);
    assert_eq!(after, before, "redelivery changed the orders");
    assert_matches(client, &config, &stream).await;

    // The account index answers an account's orders.
    let ann = client
        .query()
        .table_name(config.orders_table())
        .index_name("by_account")
        .key_condition_expression("account = :a")
        .expression_attribute_values(":a", AttributeValue::S("ann".into()))
        .send()
        .await
        .expect("queries");
    let expected_ann = after.iter().filter(|i| text(i, "account") == "ann").count();
    assert!(expected_ann > 0);
    assert_eq!(ann.count() as usize, expected_ann);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_dead_letters_a_bad_record_and_persists_the_rest() {
    let aws = ddb::aws_config().await;
    let config = config("dlq");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let stream = outputs(0, SymbolId(1), 1, 150, 22);
    publish(bus.as_ref(), 0, &stream[..70]);
    publish_raw(bus.as_ref(), 0, vec![b"\x01garbage".to_vec()]);
    publish(bus.as_ref(), 0, &stream[70..]);
    let sink = DynamoSink::new(&aws, config.clone(), &symbols());
    let consumer =
        Consumer::start(bus.clone(), std::sync::Arc::clone(&sink), ConsumerConfig::new("ddb-test", Topic::Executions))
            .expect("starts");
    let end = bus.end_offset(Topic::Executions, 0).expect("end");
    wait_until("everything is committed", || {
        bus.committed("ddb-test", Topic::Executions, 0).expect("reads") == Some(end)
    })
    .await;
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
    assert_matches(sink.client(), &config, &stream).await;
    let letters = dead_letters(bus.as_ref());
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["offset"], 70);
    assert_eq!(letter["consumer"], "ddb-test");
}
