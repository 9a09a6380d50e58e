//! The real `tachyon` binary as a child process (for crash tests: SIGKILL, restart).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tachyon_gateway::KeyRing;
use tachyon_proto::AccountId;

use super::Client;

pub struct Process {
    pub child: Child,
    pub base: String,
    /// The command and its log, for failure messages.
    pub what: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("address").port()
}

/// Starts `tachyon run` on `dir` and `port` with `extra` arguments; waits until ready.
pub async fn start(dir: &std::path::Path, port: u16, extra: &[&str]) -> Process {
    start_with_env(dir, port, extra, &[]).await
}

/// [`start`] with environment variables added for the child.
pub async fn start_with_env(dir: &std::path::Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Process {
    start_command(dir, port, &["run"], extra, env, "server.log").await
}

/// Starts `tachyon <command…>` (a role: `gateway`, `engine --shards 0`, …) on `dir` and
/// `port`, logging to `dir/<log>`; waits until `/readyz` answers 200.
pub async fn start_command(
    dir: &std::path::Path,
    port: u16,
    command: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
    log: &str,
) -> Process {
    let mut p = spawn_command(dir, port, command, extra, env, log);
    p.wait_ready(Duration::from_secs(60)).await;
    p
}

/// Starts `tachyon <command…>` like [`start_command`] without waiting for it.
pub fn spawn_command(
    dir: &std::path::Path,
    port: u16,
    command: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
    log: &str,
) -> Process {
    let log_path = dir.join(log);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .args(command)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starts the binary");
    Process {
        child,
        base: format!("http://127.0.0.1:{port}"),
        what: format!("{command:?}, log {}", log_path.display()),
    }
}

impl Process {
    /// Waits until `/readyz` answers 200 (panics after `within`, or if the process exits).
    pub async fn wait_ready(&mut self, within: Duration) {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.is_ready(&http).await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tachyon {} exited with {status}", self.what);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("tachyon {} did not become ready", self.what);
    }

    pub async fn is_ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == 200)
    }
}

impl Drop for Process {
    /// A failed test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client(base: &str, keys: &KeyRing, account: &str) -> Client {
    let key = keys.mint(AccountId::parse(account).expect("valid")).expose().to_string();
    Client { base: base.to_string(), key: Some(key), http: reqwest::Client::new() }
}

pub fn sigkill(p: &mut Process) {
    p.child.kill().expect("SIGKILL");
    p.child.wait().expect("reaped");
}
