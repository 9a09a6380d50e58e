//! A DynamoDB-compatible server for tests (moto), started through
//! `infra/local/dynamodb.sh`: `scripts/test` starts one and exports its endpoint as
//! `TACHYON_TEST_DYNAMODB_ENDPOINT`; without it the first test that needs one starts one
//! for this process (stopped by a watchdog when the process exits). Tests use table
//! names of their own ([`table_prefix`]) and throwaway credentials.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use aws_sdk_dynamodb::config::Credentials;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("infra/local/dynamodb.sh"))
        .find(|p| p.exists())
        .expect("infra/local/dynamodb.sh above the crate")
}

/// The shared server's endpoint (see the module docs).
pub fn endpoint() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TACHYON_TEST_DYNAMODB_ENDPOINT") {
            return url;
        }
        let dir = std::env::temp_dir().join(format!("tachyon-test-ddb-{}", std::process::id()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let out =
            Command::new("bash").arg(script()).args(["start", &port.to_string()]).arg(&dir).output().expect("runs");
        assert!(out.status.success(), "dynamodb.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop {port} '{dir}'; rm -rf '{dir}'",
            pid = std::process::id(),
            script = script().display(),
            dir = dir.display()
        );
        Command::new("setsid")
            .args(["-f", "bash", "-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("watchdog starts");
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned()
    })
    .clone()
}

/// A table-name prefix no other test uses.
pub fn table_prefix(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t_{label}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// AWS configuration for the test server: its endpoint, a region, throwaway credentials.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tachyon-tests"))
        .load()
        .await
}
