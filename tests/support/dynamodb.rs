//! A DynamoDB-compatible server for tests (moto), started through
//! `infra/local/dynamodb.sh`: `scripts/test` starts one and exports its endpoint as
//! `TACHYON_TEST_DYNAMODB_ENDPOINT`; without it the first test that needs one starts one
//! for this process (stopped by a watchdog when the process exits). Tests use table
//! names of their own ([`table_prefix`]) and throwaway credentials. The test crate declares
//! `local_server` (`support/local_server.rs`) beside this module.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use aws_sdk_dynamodb::config::Credentials;

use crate::local_server;

/// The shared server's endpoint (see the module docs).
pub fn endpoint() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| local_server::shared("dynamodb.sh", "TACHYON_TEST_DYNAMODB_ENDPOINT")).clone()
}

/// A table-name prefix no other test uses.
pub fn table_prefix(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t_{label}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Environment for a `tachyon` child process that talks to the test server: the standard
/// AWS chain reads these (and never asks an instance-metadata service).
pub const CHILD_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// AWS configuration for the test server: its endpoint, a region, throwaway credentials.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tachyon-tests"))
        .load()
        .await
}
