//! A real PostgreSQL server for tests, started through `infra/local/postgres.sh`.
//!
//! One server per test run: `scripts/test` starts it and exports its URL as
//! `TACHYON_TEST_POSTGRES_URL`; without that variable (a lone `cargo test`) the first test
//! that needs it starts one for this process, and a watchdog stops it when the process
//! exits. Each test gets a database of its own ([`fresh_database`]). A test that stops its
//! server starts a private one with [`Private::start`]. The test crate declares
//! `local_server` (`support/local_server.rs`) beside this module.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use deadpool_postgres::tokio_postgres::{self, NoTls};

use crate::local_server::{self, free_port, run};

fn run_script(command: &str, port: u16, dir: &Path) -> String {
    run(&local_server::script("postgres.sh"), command, port, dir)
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
        let script = local_server::script("postgres.sh");
        let _ = Command::new("bash").arg(script).args(["stop", &self.port.to_string()]).arg(self.dir.path()).output();
    }
}

/// The shared server's URL (see the module docs).
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| local_server::shared("postgres.sh", "TACHYON_TEST_POSTGRES_URL")).clone()
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
