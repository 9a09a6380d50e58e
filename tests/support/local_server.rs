//! A server started through one of `infra/local/*.sh` for the whole test process: the
//! address a wrapper script exported, or one started here and stopped by a watchdog once
//! this process exits.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `infra/local/<name>` of this clone (found from whichever crate's tests run).
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("infra/local").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("infra/local/{name} above the crate"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Runs `script command port dir`; returns its last line (the address, for `start`).
pub fn run(script: &Path, command: &str, port: u16, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg(script)
        .args([command, &port.to_string()])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {command} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned()
}

/// `$env_var` if set (`scripts/test` starts the servers once per run), else a server
/// started with `infra/local/<name>` for this process and stopped when it exits.
pub fn shared(name: &str, env_var: &str) -> String {
    if let Ok(address) = std::env::var(env_var) {
        return address;
    }
    let script = script(name);
    let dir =
        std::env::temp_dir().join(format!("tachyon-test-{}-{}", name.trim_end_matches(".sh"), std::process::id()));
    let port = free_port();
    let address = run(&script, "start", port, &dir);
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop {port} '{dir}'; rm -rf '{dir}'",
        pid = std::process::id(),
        script = script.display(),
        dir = dir.display()
    );
    // `setsid -f` forks the watchdog into its own session and returns at once.
    Command::new("setsid")
        .args(["-f", "bash", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("watchdog starts");
    address
}
