//! The `tachyon` binary's commands, run as a user would.

use std::process::Command;

fn tachyon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tachyon"))
}

#[test]
fn keys_mint_prints_one_key_that_the_same_data_dir_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tachyon().args(["keys", "mint", "alice", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let key = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    let ring = tachyon_gateway::KeyRing::load_or_create(dir.path()).expect("same secret");
    let first = ring.verify(key).expect("accepted");
    assert_eq!(first.account.to_string(), "alice");
    // The data dir can also come from the environment; every mint is a new, separately revocable key.
    let again = tachyon().args(["keys", "mint", "alice"]).env("TACHYON_DATA_DIR", dir.path()).output().expect("runs");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let second = ring.verify(String::from_utf8(again.stdout).expect("utf-8").trim_end()).expect("accepted");
    assert_eq!(second.account, first.account);
    assert_ne!(second.key_id, first.key_id);
}

#[test]
fn keys_mint_rejects_a_bad_account_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tachyon().args(["keys", "mint", "not valid!", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("account") && stderr.contains("may only contain"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn symbols_prints_the_api_shape() {
    let out = tachyon().arg("symbols").output().expect("runs");
    assert!(out.status.success());
    let symbols: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(symbols[0]["symbol"], "BTC-USD");
    assert_eq!(symbols[0]["tick_size"], "0.01");
}

#[test]
fn config_check_reports_defaults_files_and_mistakes() {
    let out = tachyon().args(["config", "check"]).env_remove("TACHYON_CONFIG").output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listen 127.0.0.1:8080") && stdout.contains("10 symbols"), "{stdout}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tachyon.example.toml");
    let out = tachyon().args(["config", "check", "--config", example, "--partitions", "4"]).output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 partitions"));
    let out = tachyon().args(["config", "check"]).env("TACHYON_PARTITIONS", "3").output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 partitions"), "env overrides");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[rate_limit]\nper_secnd = 5\n").expect("write");
    let out = tachyon().args(["config", "check", "--config"]).arg(&bad).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("per_secnd") && stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn distributed_roles_need_a_broker_and_valid_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    for role in [&["gateway"][..], &["engine"], &["marketdata"], &["persist", "dynamodb"]] {
        let out = tachyon()
            .args(role)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("TACHYON_KAFKA")
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{role:?} without --kafka");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--kafka"), "{role:?}: {stderr}");
    }
    for bad in ["5-3", "x", ","] {
        let out = tachyon().args(["engine", "--shards", bad]).output().expect("runs");
        assert!(!out.status.success(), "--shards {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--shards"), "--shards {bad}");
    }
    let out = tachyon()
        .args(["engine", "--shards", "0,7", "--kafka", "127.0.0.1:1", "--listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 7 does not exist"), "checked before connecting");
    let out = tachyon().args(["config", "check", "--kafka", "k1:9092", "--topic-prefix", "x."]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("backbone kafka k1:9092 (topics x.tachyon.*)"), "{stdout}");
    let out = tachyon().args(["config", "check", "--gateway-id", "1024"]).output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway_id"), "gateway ids are 0-1023");
}
