//! Throughput of the persistence sinks against real servers.
//!
//! The stream is trade-heavy and made by the real engine: each round, makers rest `levels`
//! one-lot asks one tick apart and a market buy sweeps them, so a round is `levels + 1`
//! commands and `levels` trades; every order is created in the stream (nothing unknown
//! to the store). The outputs are written the way one partition's consumer writes them:
//! batches of `--batch` records, one after the other, each waiting for the last.
//!
//! ```sh
//! infra/local/postgres.sh start 5544 /tmp/pg && infra/local/dynamodb.sh start 5545 /tmp/ddb
//! cargo run --release -p tachyon-benches --bin persist -- \
//!     --postgres postgres://postgres@127.0.0.1:5544/postgres --rounds 20000 --levels 10
//! cargo run --release -p tachyon-benches --bin persist -- \
//!     --dynamodb-endpoint http://127.0.0.1:5545 --rounds 100 --levels 10 --batch 500
//! ```
//!
//! With `--dynamodb-endpoint` it also times a plain client's `BatchWriteItem` of as many
//! items as the sink wrote, on the same server, and prints the ratio.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use clap::Parser;
use hdrhistogram::Histogram;
use tachyon_consumers::{DynamoConfig, DynamoSink, Item, PostgresConfig, PostgresSink, Sink};
use tachyon_engine::{Engine, EngineConfig, RiskLimits};
use tachyon_proto::symbol::default_symbols;
use tachyon_proto::wire::{encode_output, ShardOutput};
use tachyon_proto::{
    AccountId, Command, Event, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side, SymbolId,
    TimeInForce, Timestamp,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Throughput of the persistence sinks against real servers")]
struct Args {
    /// PostgreSQL database to write to (tables are created; use a scratch database).
    #[arg(long)]
    postgres: Option<String>,
    /// DynamoDB-compatible endpoint (tables `bench<pid>_*` are created).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Sweep rounds.
    #[arg(long, default_value_t = 10_000)]
    rounds: usize,
    /// Asks swept per round (= trades per round).
    #[arg(long, default_value_t = 10)]
    levels: usize,
    /// Records per write.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Partitions written at once (each its own stream, symbol and connection), as the
    /// consumer does with one writer per partition.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
}

#[allow(clippy::print_stdout, reason = "the tool's report")]
fn main() -> Result<()> {
    let args = Args::parse();
    let streams: Vec<(Vec<Item>, u64)> = (0..args.partitions).map(|p| stream(p, args.rounds, args.levels)).collect();
    let outputs: usize = streams.iter().map(|s| s.0.len()).sum();
    let trades: u64 = streams.iter().map(|s| s.1).sum();
    println!(
        "stream: {outputs} outputs over {} partitions, {trades} trades, batches of {}",
        args.partitions, args.batch
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        if let Some(url) = &args.postgres {
            let sink = PostgresSink::new(PostgresConfig::new(url), &default_symbols()).context("sink")?;
            sink.prepare().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let (took, latency) = write_partitions(&sink, &streams, args.batch).await?;
            report("postgres", outputs, trades, took, &latency);
            let client = sink.pool().get().await?;
            let rows: i64 = client
                .query_one(
                    "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_events)
                          + (SELECT count(*) FROM trades) + (SELECT count(*) FROM fills)",
                    &[],
                )
                .await?
                .get(0);
            println!("postgres: {rows} rows in all, {:.0} rows/s", rows as f64 / took.as_secs_f64());
        }
        if let Some(endpoint) = &args.dynamodb_endpoint {
            let aws = tachyon_consumers::dynamodb::load_aws_config(Some(endpoint), Some("us-east-1")).await;
            let config = DynamoConfig {
                table_prefix: format!("bench{}", std::process::id()),
                create_tables: true,
                ..DynamoConfig::default()
            };
            let sink = DynamoSink::new(&aws, config.clone(), &default_symbols());
            sink.prepare().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let (took, latency) = write_partitions(&sink, &streams, args.batch).await?;
            report("dynamodb", outputs, trades, took, &latency);
            // Items the sink wrote: one per order (conditional puts) and one per trade.
            let orders = outputs;
            let written = orders + trades as usize;
            let sink_rate = written as f64 / took.as_secs_f64();
            let raw = raw_batch_writes(sink.client(), &config.trades_table(), written).await?;
            let raw_rate = written as f64 / raw.as_secs_f64();
            println!(
                "dynamodb: sink {sink_rate:.0} items/s; plain BatchWriteItem of {written} items: {raw_rate:.0} items/s; \
                 ratio {:.2}",
                sink_rate / raw_rate
            );
            // The same mix from a plain client: a conditional PutItem per order (what
            // BatchWriteItem cannot do) and BatchWriteItem for the trades.
            let puts = raw_conditional_puts(sink.client(), &config.orders_table(), orders).await?;
            let trades_raw = raw_batch_writes(sink.client(), &config.trades_table(), trades as usize).await?;
            let same_mix = puts + trades_raw;
            println!(
                "dynamodb: plain client, same mix ({orders} conditional PutItem + {trades} items by BatchWriteItem): \
                 {:.2} s, {:.0} items/s; sink/plain ratio {:.2}",
                same_mix.as_secs_f64(),
                written as f64 / same_mix.as_secs_f64(),
                same_mix.as_secs_f64() / took.as_secs_f64()
            );
        }
        Ok(())
    })
}

/// The trade-heavy stream (see the module docs) of `partition` as the consumer would read
/// it: its own symbol, order ids and sequences.
fn stream(partition: u32, rounds: usize, levels: usize) -> (Vec<Item>, u64) {
    let symbols = default_symbols();
    let mut engine = Engine::new(EngineConfig { symbols, limits: RiskLimits { max_open_orders: 100_000 } });
    let now = Timestamp::now().0;
    let mut items = Vec::with_capacity(rounds * (levels + 1));
    let (mut id, mut trades) = (1u64, 0u64);
    let id_base = u64::from(partition) << 40;
    let symbol = SymbolId(partition + 1);
    let mut events = Vec::new();
    for round in 0..rounds {
        for level in 0..=levels {
            let taker = level == levels;
            let account = if taker { format!("taker{}", round % 8) } else { format!("mm{}", level % 8) };
            let command = Command::New(NewOrder {
                order_id: OrderId(id_base + id),
                account: AccountId::parse(&account).expect("valid account"),
                symbol,
                side: if taker { Side::Buy } else { Side::Sell },
                order_type: if taker { OrderType::Market } else { OrderType::Limit },
                time_in_force: if taker { TimeInForce::Ioc } else { TimeInForce::Gtc },
                post_only: false,
                stp: SelfTradePrevention::CancelNewest,
                price: (!taker).then(|| Price(3_000_000 + level as i64)),
                qty: Qty(if taker { levels as u64 } else { 1 }),
                client_order_id: None,
                timestamp: Timestamp(now + id as i64 * 1_000),
            });
            events.clear();
            engine.process(&command, &mut events);
            trades += events.iter().filter(|e| matches!(e, Event::Trade(_))).count() as u64;
            let output = ShardOutput {
                partition,
                seq: id,
                input_offset: id - 1,
                request_id: id,
                gateway_id: 1,
                timestamp: command.timestamp(),
                market_data: false,
                rejected: None,
                events: events.iter().filter(|e| e.is_private()).copied().collect(),
                ..ShardOutput::default()
            };
            let payload = encode_output(&output).expect("encodes").into();
            items.push(Item { offset: id - 1, payload, output });
            id += 1;
        }
    }
    (items, trades)
}

/// Writes every partition's stream at once, one writer each; returns the wall time and
/// the write latencies of all.
async fn write_partitions<S: Sink>(
    sink: &std::sync::Arc<S>,
    streams: &[(Vec<Item>, u64)],
    batch: usize,
) -> Result<(Duration, Histogram<u64>)> {
    let started = Instant::now();
    let writers: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(p, (items, _))| {
            let (sink, items) = (std::sync::Arc::clone(sink), items.clone());
            tokio::spawn(async move { write_all(sink.as_ref(), p as u32, &items, batch).await })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for w in writers {
        let (_, l) = w.await??;
        latency.add(&l)?;
    }
    Ok((started.elapsed(), latency))
}

async fn write_all<S: Sink>(
    sink: &S,
    partition: u32,
    items: &[Item],
    batch: usize,
) -> Result<(Duration, Histogram<u64>)> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    for (i, chunk) in items.chunks(batch.max(1)).enumerate() {
        let t = Instant::now();
        sink.write(partition, chunk).await.map_err(|e| anyhow::anyhow!("write failed: {e}"))?;
        latency.record(t.elapsed().as_micros() as u64)?;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let done = ((i + 1) * batch).min(items.len());
            #[allow(clippy::print_stderr, reason = "progress")]
            {
                eprintln!(
                    "  {done}/{} outputs, {:.0} outputs/s",
                    items.len(),
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok((started.elapsed(), latency))
}

#[allow(clippy::print_stdout, reason = "the tool's report")]
fn report(sink: &str, outputs: usize, trades: u64, took: Duration, latency: &Histogram<u64>) {
    let secs = took.as_secs_f64();
    println!(
        "{sink}: {outputs} outputs in {secs:.2} s: {:.0} outputs/s, {:.0} trades/s; write latency p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        outputs as f64 / secs,
        trades as f64 / secs,
        latency.value_at_quantile(0.5) as f64 / 1_000.0,
        latency.value_at_quantile(0.99) as f64 / 1_000.0,
        latency.max() as f64 / 1_000.0
    );
}

/// Times a plain client writing `count` order-sized items with a conditional `PutItem`
/// each (the sink's condition), 16 in flight.
async fn raw_conditional_puts(client: &aws_sdk_dynamodb::Client, table: &str, count: usize) -> Result<Duration> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let started = Instant::now();
    stream::iter((0..count).map(|i| async move {
        let n = |v: usize| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_owned());
        client
            .put_item()
            .table_name(table)
            .item("order_id", n(1_000_000_000 + i))
            .item("account", s("raw"))
            .item("symbol", s("RAW"))
            .item("side", s("sell"))
            .item("status", s("filled"))
            .item("quantity_lots", n(1))
            .item("filled_lots", n(1))
            .item("created_us", n(i))
            .item("version", n(i))
            .condition_expression("attribute_not_exists(#k) OR #v < :v")
            .expression_attribute_names("#k", "order_id")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(i))
            .send()
            .await?;
        Ok::<(), anyhow::Error>(())
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(started.elapsed())
}

/// Times a plain client writing `count` trade-sized items with `BatchWriteItem` (25 per
/// call, 16 calls in flight, unprocessed items resent) to `table`.
async fn raw_batch_writes(client: &aws_sdk_dynamodb::Client, table: &str, count: usize) -> Result<Duration> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let item = |i: usize| {
        let n = |v: usize| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_owned());
        [
            ("pk", s(&format!("RAW#{}", i % 16))),
            ("trade_id", n(i)),
            ("symbol", s("RAW")),
            ("price_ticks", n(3_000_000 + i % 100)),
            ("quantity_lots", n(1)),
            ("taker_side", s("buy")),
            ("taker_order_id", n(i * 2)),
            ("taker_account", s("taker1")),
            ("maker_order_id", n(i * 2 + 1)),
            ("maker_account", s("mm1")),
            ("executed_us", n(i)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<std::collections::HashMap<_, _>>()
    };
    let chunks: Vec<Vec<WriteRequest>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(25)
        .map(|c| {
            c.iter()
                .map(|&i| {
                    let put = PutRequest::builder().set_item(Some(item(i))).build().expect("an item");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    stream::iter(chunks.into_iter().map(|mut chunk| async move {
        while !chunk.is_empty() {
            let out = client.batch_write_item().request_items(table, std::mem::take(&mut chunk)).send().await?;
            if let Some(left) = out.unprocessed_items().and_then(|u| u.get(table)) {
                chunk = left.clone();
            }
        }
        Ok::<(), anyhow::Error>(())
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(started.elapsed())
}
