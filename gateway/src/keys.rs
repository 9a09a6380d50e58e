//! The key log and revocations.
//!
//! `tachyon keys mint` and `tachyon keys revoke` append to `api-keys.log` in the data
//! directory, one JSON object per line (`{"event": "minted", "key_id", "account_id",
//! "scope", "at"}` or `{"event": "revoked", "key_id", "at"}`), each line written with one
//! `write` under `O_APPEND` and synced. The log holds no secret: a key is the HMAC of its
//! fields, so the log only names keys. `keys list` reads it; every gateway on the data
//! directory follows it ([`follow`]) and refuses a revoked key within its poll interval.
//!
//! Over Kafka, gateways on other machines do not see this data directory: the commands,
//! given the cluster's brokers, also [`publish`] each event to the `tachyon.keys` topic
//! (partition 0, keyed by key id, compacted: the last event of every key stays). A
//! gateway on Kafka reads the topic from its start before it serves ([`read_topic`]) and
//! then follows it ([`follow_topic`]) into the same [`Revocations`].

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tachyon_bus::{Backbone, BusError, Record};
use tachyon_proto::Topic;
use tokio::sync::watch;

use crate::auth::{KeyId, Scope};

/// File name of the key log inside the data directory.
pub const LOG_FILE: &str = "api-keys.log";

/// How often a gateway looks at the key log for revocations (well within the 2 s API.md
/// allows).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// One line of the key log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KeyEvent {
    Minted { key_id: KeyId, account_id: String, scope: Scope, at: String },
    Revoked { key_id: KeyId, at: String },
}

impl KeyEvent {
    pub fn key_id(&self) -> KeyId {
        match self {
            KeyEvent::Minted { key_id, .. } | KeyEvent::Revoked { key_id, .. } => *key_id,
        }
    }
}

/// The ids `events` revoke.
pub fn revoked_ids(events: &[KeyEvent]) -> impl Iterator<Item = KeyId> + '_ {
    events.iter().filter_map(|e| match e {
        KeyEvent::Revoked { key_id, .. } => Some(*key_id),
        KeyEvent::Minted { .. } => None,
    })
}

/// A key as `tachyon keys list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key_id: KeyId,
    pub account_id: String,
    pub scope: Scope,
    pub revoked: bool,
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_FILE)
}

/// Appends `event` to the data directory's key log and syncs it.
///
/// # Errors
/// I/O errors.
pub fn append(data_dir: &Path, event: &KeyEvent) -> std::io::Result<()> {
    fs::create_dir_all(data_dir)?;
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = fs::OpenOptions::new().create(true).append(true).open(log_path(data_dir))?;
    file.write_all(&line)?;
    file.sync_all()
}

/// Every event of the data directory's key log, in order (none if there is no log). A
/// line that does not parse (a torn last line after a crash) is skipped.
///
/// # Errors
/// I/O errors other than a missing log.
pub fn read(data_dir: &Path) -> std::io::Result<Vec<KeyEvent>> {
    match fs::read(log_path(data_dir)) {
        Ok(bytes) => Ok(parse_lines(&bytes).0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The events of the complete lines in `bytes`, and how many bytes those lines take.
fn parse_lines(bytes: &[u8]) -> (Vec<KeyEvent>, usize) {
    let mut events = Vec::new();
    let mut used = 0;
    while let Some(end) = bytes[used..].iter().position(|&b| b == b'\n') {
        if let Ok(event) = serde_json::from_slice(&bytes[used..used + end]) {
            events.push(event);
        }
        used += end + 1;
    }
    (events, used)
}

/// The keys the log names for `account`, oldest first, with their revocation.
/// A key minted twice in `events` (the data directory's log and the keys topic) is
/// listed once.
pub fn list(events: &[KeyEvent], account: &str) -> Vec<KeyInfo> {
    let revoked: HashSet<KeyId> = revoked_ids(events).collect();
    let mut seen = HashSet::new();
    events
        .iter()
        .filter_map(|e| match e {
            KeyEvent::Minted { key_id, account_id, scope, .. } if account_id == account && seen.insert(*key_id) => {
                Some(KeyInfo {
                    key_id: *key_id,
                    account_id: account_id.clone(),
                    scope: *scope,
                    revoked: revoked.contains(key_id),
                })
            }
            _ => None,
        })
        .collect()
}

/// The revoked key ids a gateway refuses, and a signal that fires when the set grows (so
/// WebSocket sessions of a revoked key can close).
#[derive(Debug)]
pub struct Revocations {
    revoked: RwLock<HashSet<KeyId>>,
    /// Set once anything is revoked: until then a check costs one relaxed load.
    any: AtomicBool,
    changed: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self { revoked: RwLock::new(HashSet::new()), any: AtomicBool::new(false), changed: watch::Sender::new(0) }
    }
}

impl Revocations {
    pub fn is_revoked(&self, key_id: KeyId) -> bool {
        self.any.load(Ordering::Acquire) && self.revoked.read().contains(&key_id)
    }

    /// Records revocations; wakes the watchers if any is new.
    pub fn revoke(&self, ids: impl IntoIterator<Item = KeyId>) {
        let mut added = 0;
        {
            let mut revoked = self.revoked.write();
            for id in ids {
                added += u64::from(revoked.insert(id));
            }
        }
        if added > 0 {
            self.any.store(true, Ordering::Release);
            tracing::info!(revocations = added, "API keys revoked");
            self.changed.send_modify(|generation| *generation += added);
        }
    }

    /// Fires whenever [`Revocations::revoke`] adds an id.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn len(&self) -> usize {
        self.revoked.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the data directory's key log into `revocations` now, then follows it every
/// [`POLL_INTERVAL`] (reading only what was appended), until the task is aborted.
pub async fn follow(data_dir: PathBuf, revocations: Arc<Revocations>) {
    let mut offset = 0u64;
    loop {
        match read_from(&log_path(&data_dir), offset) {
            Ok((events, used)) => {
                offset += used as u64;
                revocations.revoke(revoked_ids(&events));
            }
            Err(error) => tracing::warn!(%error, "cannot read the API-key log"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The complete lines after `offset` (none if the file is missing or has not grown).
fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<KeyEvent>, usize)> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() <= offset {
        return Ok((Vec::new(), 0));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(parse_lines(&bytes))
}

/// The partition of the keys topic that holds the events (the topic has the backbone's
/// partition count, like every topic).
const KEYS_PARTITION: u32 = 0;

/// How long [`publish`] waits for the broker.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `event` to the keys topic, keyed by its key id, and waits until it is durable.
///
/// # Errors
/// The backbone's, or [`BusError::Unavailable`] without an acknowledgement in 30 s.
pub fn publish(bus: &dyn Backbone, event: &KeyEvent) -> Result<(), BusError> {
    let payload = serde_json::to_vec(event).map_err(|e| BusError::Unavailable(format!("key event: {e}")))?;
    let key = event.key_id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    bus.produce_keyed(
        Topic::Keys,
        KEYS_PARTITION,
        key.as_bytes(),
        &mut vec![payload],
        Some(Box::new(move |r| drop(tx.send(r)))),
    )?;
    rx.recv_timeout(PUBLISH_TIMEOUT)
        .map_err(|_| BusError::Unavailable("no acknowledgement from the keys topic".into()))??;
    Ok(())
}

/// The events of `records`; a record that is not one is logged and skipped (the topic is
/// written only by `tachyon keys`, so it is somebody's mistake, never a reason to stop).
fn events_of(records: &[Record]) -> Vec<KeyEvent> {
    records
        .iter()
        .filter_map(|r| match serde_json::from_slice(&r.payload) {
            Ok(event) => Some(event),
            Err(error) => {
                tracing::warn!(offset = r.offset, %error, "skipping a record of the keys topic that is not a key event");
                None
            }
        })
        .collect()
}

/// Every event on the keys topic now, and the offset after them.
///
/// # Errors
/// The backbone's; [`BusError::Unavailable`] if the topic stops answering.
pub fn read_topic(bus: &dyn Backbone) -> Result<(Vec<KeyEvent>, u64), BusError> {
    let end = bus.end_offset(Topic::Keys, KEYS_PARTITION)?;
    let mut reader = bus.reader(Topic::Keys, KEYS_PARTITION, 0)?;
    let mut records = Vec::new();
    while reader.position() < end {
        if reader.poll(&mut records, 1024, Duration::from_secs(10))? == 0 {
            return Err(BusError::Unavailable("the keys topic stopped answering".into()));
        }
    }
    Ok((events_of(&records), reader.position()))
}

/// Follows the keys topic from `from` into `revocations` on a thread of its own until
/// `stop` is set; a broker outage is retried (the revocations known so far stay).
///
/// # Errors
/// The thread could not be started.
pub fn follow_topic(
    bus: Arc<dyn Backbone>,
    revocations: Arc<Revocations>,
    from: u64,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("keys-topic".into()).spawn(move || {
        let mut next = from;
        let mut records = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let mut reader = match bus.reader(Topic::Keys, KEYS_PARTITION, next) {
                Ok(reader) => reader,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the keys topic; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            while !stop.load(Ordering::Acquire) {
                match reader.poll(&mut records, 256, POLL_INTERVAL) {
                    Ok(_) => {
                        revocations.revoke(revoked_ids(&events_of(&records)));
                        records.clear();
                        next = reader.position();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the keys topic failed; reopening it");
                        std::thread::sleep(Duration::from_millis(500));
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(id: u64, account: &str, scope: Scope) -> KeyEvent {
        KeyEvent::Minted { key_id: KeyId(id), account_id: account.into(), scope, at: "t".into() }
    }

    #[test]
    fn the_log_lists_keys_per_account_with_their_revocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).expect("no log yet").is_empty());
        append(dir.path(), &minted(1, "alice", Scope::Trade)).expect("append");
        append(dir.path(), &minted(2, "alice", Scope::Read)).expect("append");
        append(dir.path(), &minted(3, "bob", Scope::Trade)).expect("append");
        append(dir.path(), &KeyEvent::Revoked { key_id: KeyId(1), at: "t".into() }).expect("append");
        // A torn last line (a crash mid-write) is ignored.
        fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .expect("open")
            .write_all(b"{\"event\":")
            .expect("w");
        let events = read(dir.path()).expect("reads");
        assert_eq!(events.len(), 4);
        let alice = list(&events, "alice");
        assert_eq!(
            alice.iter().map(|k| (k.key_id.0, k.scope, k.revoked)).collect::<Vec<_>>(),
            [(1, Scope::Trade, true), (2, Scope::Read, false)]
        );
        assert_eq!(list(&events, "bob").len(), 1);
        let line = fs::read_to_string(log_path(dir.path())).expect("read");
        assert!(
            line.starts_with(r#"{"event":"minted","key_id":"0000000000000001","account_id":"alice","scope":"trade""#),
            "{line}"
        );
    }

    #[tokio::test]
    async fn a_follower_sees_revocations_appended_later_and_wakes_its_watchers() {
        let dir = tempfile::tempdir().expect("tempdir");
        append(dir.path(), &KeyEvent::Revoked { key_id: KeyId(7), at: "t".into() }).expect("append");
        let revocations = Arc::new(Revocations::default());
        let mut watcher = revocations.watch();
        let task = tokio::spawn(follow(dir.path().to_path_buf(), Arc::clone(&revocations)));
        watcher.changed().await.expect("the first read");
        assert!(revocations.is_revoked(KeyId(7)) && !revocations.is_revoked(KeyId(8)));
        append(dir.path(), &KeyEvent::Revoked { key_id: KeyId(8), at: "t".into() }).expect("append");
        watcher.changed().await.expect("the appended revocation");
        assert!(revocations.is_revoked(KeyId(8)));
        assert_eq!(revocations.len(), 2);
        task.abort();
    }

    #[test]
    fn the_keys_topic_carries_revocations_to_a_reader_and_a_follower() {
        use tachyon_bus::{EmbeddedBus, EmbeddedConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Backbone> = Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 2)).expect("opens"));
        assert_eq!(read_topic(bus.as_ref()).expect("an empty topic"), (Vec::new(), 0));
        publish(bus.as_ref(), &minted(1, "alice", Scope::Trade)).expect("published");
        publish(bus.as_ref(), &KeyEvent::Revoked { key_id: KeyId(1), at: "t".into() }).expect("published");
        bus.produce(Topic::Keys, 0, &mut vec![b"not an event".to_vec()], None).expect("a stray record");
        bus.flush(Topic::Keys, 0, Duration::from_secs(5)).expect("flushed");
        let (events, next) = read_topic(bus.as_ref()).expect("reads");
        assert_eq!((events.len(), next), (2, 3), "the stray record is skipped: {events:?}");
        assert_eq!(list(&[events.clone(), events].concat(), "alice").len(), 1, "one key, however often it is seen");

        let revocations = Arc::new(Revocations::default());
        let stop = Arc::new(AtomicBool::new(false));
        let follower =
            follow_topic(Arc::clone(&bus), Arc::clone(&revocations), next, Arc::clone(&stop)).expect("starts");
        publish(bus.as_ref(), &KeyEvent::Revoked { key_id: KeyId(9), at: "t".into() }).expect("published");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !revocations.is_revoked(KeyId(9)) {
            assert!(std::time::Instant::now() < deadline, "the follower never saw the revocation");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!revocations.is_revoked(KeyId(1)), "the follower starts where it is told");
        stop.store(true, Ordering::Release);
        follower.join().expect("stops");
    }
}
