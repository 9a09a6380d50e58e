//! The DynamoDB tables (on-demand billing), created when asked to.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::items::{ACCOUNT_CLIENT_ID, ORDER_KEY};
use super::DynamoConfig;
use tachyon_runtime::consumer::SinkError;

fn invalid(e: impl std::fmt::Display) -> SinkError {
    SinkError::Permanent(format!("invalid table definition: {e}"))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, SinkError> {
    AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(invalid)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, SinkError> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(invalid)
}

fn index(name: &str, keys: Vec<KeySchemaElement>) -> Result<GlobalSecondaryIndex, SinkError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(keys))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(invalid)
}

/// Creates the orders and trades tables unless they exist, and waits until both are active.
///
/// # Errors
/// Transient while the service cannot be reached; permanent for a definition it refuses.
pub async fn create(client: &Client, config: &DynamoConfig) -> Result<(), SinkError> {
    use ScalarAttributeType::{N, S};
    let orders = client
        .create_table()
        .table_name(config.orders_table())
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(ORDER_KEY, N)?)
        .attribute_definitions(attribute("account", S)?)
        .attribute_definitions(attribute("created_us", N)?)
        .attribute_definitions(attribute(ACCOUNT_CLIENT_ID, S)?)
        .key_schema(key(ORDER_KEY, KeyType::Hash)?)
        .global_secondary_indexes(index(
            "by_account",
            vec![key("account", KeyType::Hash)?, key("created_us", KeyType::Range)?],
        )?)
        .global_secondary_indexes(index("by_client_order_id", vec![key(ACCOUNT_CLIENT_ID, KeyType::Hash)?])?);
    let trades = client
        .create_table()
        .table_name(config.trades_table())
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", S)?)
        .attribute_definitions(attribute("trade_id", N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("trade_id", KeyType::Range)?);
    for (name, request) in [(config.orders_table(), orders), (config.trades_table(), trades)] {
        match request.send().await {
            Ok(_) => tracing::info!(table = %name, "DynamoDB table created"),
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => {
                let message =
                    format!("creating {name}: {}", e.message().map_or_else(|| format!("{e:?}"), str::to_owned));
                return Err(if e.code() == Some("ValidationException") {
                    SinkError::Permanent(message)
                } else {
                    SinkError::Transient(message)
                });
            }
        }
        wait_active(client, &name).await?;
    }
    Ok(())
}

async fn wait_active(client: &Client, name: &str) -> Result<(), SinkError> {
    for _ in 0..600 {
        let described = client.describe_table().table_name(name).send().await;
        let status = described.ok().and_then(|d| d.table().and_then(|t| t.table_status().cloned()));
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SinkError::Transient(format!("table {name} did not become active")))
}
