//! A real PostgreSQL server for tests, started through `infra/local/postgres.sh`.
//!
//! One server per test run: `scripts/test` starts it and exports its URL as
//! `TACHYON_TEST_POSTGRES_URL`; without that variable (a lone `cargo test`) the first test
//! that needs it starts one for this process, and a watchdog stops it when the process
//! exits. Each test gets a database of its own ([`fresh_database`]). A test that stops its
//! server starts a private one with [`Private::start`].

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use deadpool_postgres::tokio_postgres::{self, NoTls};

/// `infra/local/postgres.sh` of this clone (found from whichever crate's tests run).
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("infra/local/postgres.sh"))
        .find(|p| p.exists())
        .expect("infra/local/postgres.sh above the crate")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Runs the script; returns its last line (the URL, for `start`).
fn run_script(command: &str, port: u16, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args([command, &port.to_string()])
        .arg(dir)
        .output()
        .expect("infra/local/postgres.sh runs");
    assert!(
        out.status.success(),
        "postgres.sh {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned()
}

/// A server of this test's own (for tests that stop and start it).
pub struct Private {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Private {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("tachyon-pg-").tempdir_in(std::env::temp_dir()).expect("tempdir");
        // The server runs as the `postgres` user when we are root: it must reach the directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let port = free_port();
        let url = run_script("start", port, dir.path());
        Self { port, dir, url }
    }

    pub fn stop(&self) {
        run_script("stop", self.port, self.dir.path());
    }

    pub fn restart(&self) {
        run_script("start", self.port, self.dir.path());
    }

    /// The URL of a database on this server.
    pub fn database_url(&self, name: &str) -> String {
        with_database(&self.url, name)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.port.to_string()]).arg(self.dir.path()).output();
    }
}

/// The shared server's URL (see the module docs).
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TACHYON_TEST_POSTGRES_URL") {
            return url;
        }
        let dir = std::env::temp_dir().join(format!("tachyon-test-pg-{}", std::process::id()));
        let port = free_port();
        let url = run_script("start", port, &dir);
        // Stops the server (and removes it) once this test process is gone.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop {port} '{dir}'; rm -rf '{dir}'",
            pid = std::process::id(),
            script = script().display(),
            dir = dir.display()
        );
        // `setsid -f` forks the watchdog into its own session and returns at once.
        Command::new("setsid")
            .args(["-f", "bash", "-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("watchdog starts");
        url
    })
    .clone()
}

fn with_database(server: &str, name: &str) -> String {
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

/// Creates an empty database for one test on `server` and returns its URL.
pub async fn create_database(server: &str, label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("t_{}_{}_{}", label, std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let (client, connection) = tokio_postgres::connect(server, NoTls).await.expect("connects to the test server");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("creates the database");
    with_database(server, &name)
}

/// A fresh database on the shared server.
pub async fn fresh_database(label: &str) -> String {
    create_database(&server_url(), label).await
}

/// A connection to `url` (for the test's own queries).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
}
