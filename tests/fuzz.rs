//! The REST API against its own OpenAPI document, through a schema fuzzer: Schemathesis
//! (PyPI, installed once into a cached virtualenv by `infra/local/pytool.sh`) generates
//! valid and invalid requests for every operation of `GET /v1/openapi.json` and runs every
//! check on the answers (no 5xx, only documented status codes, bodies and headers that
//! match the document, schema-invalid input refused, schema-valid input accepted, auth
//! enforced, `Allow` on 405…), with the exceptions `tests/fuzz/schemathesis.toml` documents.
//!
//! A fixed seed and a bounded number of examples keep it deterministic and within a
//! minute or two; `scripts/fuzz-api` runs it longer with a random seed.

mod common;
#[path = "support/local_server.rs"]
mod local_server;

use std::path::PathBuf;
use std::process::Command;

use common::process::{client, free_port, start};
use serde_json::json;
use tachyon_gateway::KeyRing;

/// Examples per operation and the seed of the run in the test suite.
const EXAMPLES: &str = "100";
const SEED: &str = "20261207";

/// An exchange with every route live: balances on, one admin account.
const FUZZ_CONFIG: &str = r#"
[gateway]
admin_accounts = ["admin"]

[risk]
balances = true
"#;

fn schemathesis() -> PathBuf {
    if let Ok(path) = std::env::var("TACHYON_TEST_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(local_server::script("pytool.sh"))
        .arg("schemathesis")
        .output()
        .expect("infra/local/pytool.sh runs");
    assert!(out.status.success(), "installing schemathesis failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim())
}

fn settings() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/schemathesis.toml")
}

/// Runs the fuzzer against `base` with `key`; panics with its report unless every check
/// passed on every generated case.
fn fuzz(base: &str, key: &str, report_dir: &std::path::Path) {
    let out = Command::new(schemathesis())
        .arg("--config-file")
        .arg(settings())
        .args(["run", &format!("{base}/v1/openapi.json"), "--header", &format!("X-API-Key: {key}")])
        .args(["--max-examples", EXAMPLES, "--seed", SEED, "--workers", "2", "--no-color"])
        .args(["--generation-database", "none", "--report", "junit", "--report-dir"])
        .arg(report_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().filter(|l| l.contains("generated,")).collect::<Vec<_>>().join("\n");
    eprintln!("schemathesis against {base}: {summary}");
    assert!(out.status.success(), "schemathesis found failures:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // "N generated, N passed": something ran, and all of it passed.
    let counts: Vec<u64> = summary.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(counts.len() >= 2 && counts[0] > 500 && counts[0] == counts[1], "unexpected summary: {summary}\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document_under_a_schema_fuzzer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fuzz.toml");
    std::fs::write(&config, FUZZ_CONFIG).expect("config");
    let keys = KeyRing::load_or_create(dir.path()).expect("key secret");
    let port = free_port();
    let process = start(dir.path(), port, &["--config", config.to_str().expect("utf-8")]).await;
    // Funds for the fuzzer's own orders and withdrawals, so funded paths run too.
    let admin = client(&process.base, &keys, "admin");
    for (asset, amount) in [("USD", "100000000"), ("BTC", "10000"), ("ETH", "100000"), ("SOL", "1000000")] {
        let body =
            json!({"account_id": "admin", "asset": asset, "amount": amount, "transfer_id": format!("seed-{asset}")});
        let answer = admin.post("/v1/admin/deposits", &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let key = keys.mint(tachyon_proto::AccountId::parse("admin").expect("valid")).expose().to_string();
    let base = process.base.clone();
    let reports = dir.path().join("reports");
    tokio::task::spawn_blocking(move || fuzz(&base, &key, &reports)).await.expect("the fuzzer's thread");
    // The server took all of it and still answers.
    let health = reqwest::get(format!("{}/healthz", process.base)).await.expect("healthz");
    assert_eq!(health.status(), 200);
}
