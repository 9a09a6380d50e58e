//! The DynamoDB sink.
//!
//! - [`items`]: orders and trades as items and back (pure).
//! - [`tables`]: the two tables and their indexes, created on request.
//!
//! Tables (names start with `table_prefix`, default `tachyon`):
//! - `<prefix>_orders`: key `order_id`; each order's latest state with `version` (the
//!   output sequence it reflects). Indexes: `by_account` (`account`, `created_us`) for an
//!   account's orders, `by_client_order_id` (`account_client_order_id` = `account#id`,
//!   sparse) for client-order-id lookups.
//! - `<prefix>_trades`: key (`pk` = `SYMBOL#n`, `trade_id`), `n` = trade id modulo
//!   `trade_shards`: a hot symbol's trades spread over that many partitions instead of
//!   piling onto one; a reader queries the symbol's shards and merges by trade id.
//!
//! A batch: `BatchGetItem` the stored state of the orders it touches, fold the batch over
//! it ([`crate::rows::build`]), then write each changed order with a conditional
//! `PutItem` (`attribute_not_exists(order_id) OR version < :v`: an older event never
//! overwrites a newer version; a failed condition means a newer state is already there)
//! and the trades with `BatchWriteItem` (25 per request; `UnprocessedItems` retried with
//! exponential backoff and jitter). Throttling and server errors are transient, validation
//! errors permanent. Region, endpoint and credentials come from the standard AWS chain
//! (environment, profile, instance role), so the same code runs against AWS.

pub mod items;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tachyon_proto::SymbolSpec;
use tokio::sync::OnceCell;

use crate::rows::{build, touched_orders, StoredOrder};
use crate::symbols::SymbolTable;
use tachyon_runtime::consumer::{Item, Sink, SinkError};

/// The sink's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoConfig {
    /// Table names are `<prefix>_orders` and `<prefix>_trades`.
    pub table_prefix: String,
    /// Create missing tables on start (on-demand billing).
    pub create_tables: bool,
    /// Write shards per symbol in the trades table.
    pub trade_shards: u32,
    /// Requests in flight at once per batch.
    pub concurrency: usize,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self { table_prefix: "tachyon".into(), create_tables: false, trade_shards: 16, concurrency: 16 }
    }
}

impl DynamoConfig {
    pub fn orders_table(&self) -> String {
        format!("{}_orders", self.table_prefix)
    }

    pub fn trades_table(&self) -> String {
        format!("{}_trades", self.table_prefix)
    }
}

/// The AWS configuration from the standard chain, with an endpoint override (for a local
/// DynamoDB-compatible server) and a region override when given.
pub async fn load_aws_config(endpoint_url: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// The DynamoDB sink (see the module docs).
pub struct DynamoSink {
    client: Client,
    config: DynamoConfig,
    symbols: SymbolTable,
    ready: OnceCell<()>,
}

impl std::fmt::Debug for DynamoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoSink").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Most keys one `BatchGetItem` takes, and most items one `BatchWriteItem` takes.
const GET_MAX: usize = 100;
const WRITE_MAX: usize = 25;
/// Rounds of retrying unprocessed keys or items before the batch counts as throttled.
const UNPROCESSED_ROUNDS: u32 = 8;

impl DynamoSink {
    pub fn new(aws: &aws_config::SdkConfig, config: DynamoConfig, symbols: &[SymbolSpec]) -> Arc<Self> {
        Arc::new(Self { client: Client::new(aws), config, symbols: SymbolTable::new(symbols), ready: OnceCell::new() })
    }

    /// The client (for tests and tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn load(&self, ids: &[i64]) -> Result<Vec<StoredOrder>, SinkError> {
        let table = self.config.orders_table();
        let mut stored = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_MAX) {
            let mut keys: Vec<items::Item> =
                chunk.iter().map(|id| items::Item::from([(items::ORDER_KEY.to_owned(), n(id))])).collect();
            let mut round = 0;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| SinkError::Permanent(e.to_string()))?;
                let out = self.client.batch_get_item().request_items(&table, request).send().await.map_err(classify)?;
                for item in out.responses().and_then(|r| r.get(&table)).into_iter().flatten() {
                    stored.push(items::stored_order(item, &self.symbols)?);
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&table)) {
                    keys = left.keys().to_vec();
                    round = backoff(round).await?;
                }
            }
        }
        Ok(stored)
    }

    /// Writes an order unless the table holds the same or a newer version.
    async fn put_order(&self, item: items::Item, version: u64) -> Result<(), SinkError> {
        let put = self
            .client
            .put_item()
            .table_name(self.config.orders_table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k) OR #v < :v")
            .expression_attribute_names("#k", items::ORDER_KEY)
            .expression_attribute_names("#v", items::VERSION)
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn write_trades(&self, mut requests: Vec<WriteRequest>) -> Result<(), SinkError> {
        let table = self.config.trades_table();
        let mut round = 0;
        while !requests.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&table, std::mem::take(&mut requests))
                .send()
                .await
                .map_err(classify)?;
            if let Some(left) = out.unprocessed_items().and_then(|u| u.get(&table)) {
                requests = left.clone();
                round = backoff(round).await?;
            }
        }
        Ok(())
    }
}

impl Sink for DynamoSink {
    async fn check(&self) -> Result<(), SinkError> {
        self.prepare().await?;
        self.client.describe_table().table_name(self.config.orders_table()).send().await.map(drop).map_err(classify)
    }

    /// Creates the tables if configured to (once; retried by writes until it worked).
    ///
    /// # Errors
    /// As a write would report it.
    async fn prepare(&self) -> Result<(), SinkError> {
        self.ready
            .get_or_try_init(|| async {
                if self.config.create_tables {
                    tables::create(&self.client, &self.config).await?;
                }
                Ok::<(), SinkError>(())
            })
            .await
            .map(drop)
    }
    async fn write(&self, _partition: u32, batch: &[Item]) -> Result<(), SinkError> {
        self.prepare().await?;
        let outputs = batch.iter().map(|i| &i.output);
        let ids = touched_orders(outputs.clone())
            .iter()
            .map(|o| i64::try_from(o.0).map_err(|_| SinkError::Permanent(format!("order id {} out of range", o.0))))
            .collect::<Result<Vec<i64>, _>>()?;
        let stored = self.load(&ids).await?;
        let rows = build(outputs, stored);
        let orders = rows
            .orders
            .iter()
            .map(|o| Ok((items::order_item(o, &self.symbols)?, o.seq)))
            .collect::<Result<Vec<_>, SinkError>>()?;
        let trades = rows
            .trades
            .iter()
            .map(|t| {
                let item = items::trade_item(t, &self.symbols, self.config.trade_shards)?;
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| SinkError::Permanent(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        let concurrency = self.config.concurrency.max(1);
        let put_orders = stream::iter(orders.into_iter().map(|(item, version)| self.put_order(item, version)))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>();
        let mut chunks = Vec::new();
        let mut trades = trades.into_iter().peekable();
        while trades.peek().is_some() {
            chunks.push(trades.by_ref().take(WRITE_MAX).collect::<Vec<_>>());
        }
        let put_trades = stream::iter(chunks.into_iter().map(|chunk| self.write_trades(chunk)))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>();
        futures_util::future::try_join(put_orders, put_trades).await.map(drop)
    }
}

fn n(v: impl ToString) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(v.to_string())
}

/// Waits before another round of unprocessed keys or items (exponential, with jitter);
/// after [`UNPROCESSED_ROUNDS`] the table is throttling: a transient error.
async fn backoff(round: u32) -> Result<u32, SinkError> {
    if round >= UNPROCESSED_ROUNDS {
        return Err(SinkError::Transient("DynamoDB left items unprocessed (throttled)".into()));
    }
    let ceiling = Duration::from_millis(25).saturating_mul(1 << round.min(8));
    let jitter = f64::from(std::process::id() % 997 + round * 131 % 997) / 997.0;
    tokio::time::sleep(ceiling.mul_f64(0.5 + jitter / 2.0)).await;
    Ok(round + 1)
}

/// Requests the service refuses as invalid are permanent; everything else (throttling,
/// server errors, timeouts, a missing table) is worth retrying.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(error: SdkError<E, R>) -> SinkError {
    let code = error.code().map(str::to_owned);
    let message = match error.message() {
        Some(m) => format!("{}: {m}", code.as_deref().unwrap_or("error")),
        None => format!("{error:?}"),
    };
    match code.as_deref() {
        Some("ValidationException" | "SerializationException" | "ItemCollectionSizeLimitExceededException") => {
            SinkError::Permanent(message)
        }
        _ => SinkError::Transient(message),
    }
}
