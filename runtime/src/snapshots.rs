//! Shard snapshots: the state machine's state plus where in the input and output it stands, kept
//! in files (one process, the embedded backbone) or on the backbone itself (distributed
//! mode: a snapshot must outlive the engine's machine).
//!
//! Both keep the same bytes:
//! ```text
//! "TCHSNAP1" | u64 LE next_input | u64 LE out_seq | u64 LE len | u32 LE CRC-32 | state (len bytes)
//! ```
//! where the CRC covers the three numbers and the state, which is the machine's own
//! serialisation (the matching engine's: an rkyv image of its books).
//!
//! - **Files**: `<dir>/<next_input:020>.snap`, written to a temporary name, synced and
//!   renamed, so a crash leaves either the old set or the new file complete.
//! - **Backbone**: the shard's partition of `tachyon.snapshots`, in chunks of at most
//!   [`CHUNK_BYTES`] (under Kafka's default message limit), each
//!   `"TCHCHNK1" | u64 LE next_input | u32 LE index | u32 LE count | bytes`; the newest
//!   snapshot is the last complete run of chunks. Retention of that topic bounds how many
//!   are kept.
//!
//! Either way a damaged or incomplete snapshot is skipped in favour of the next older one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tachyon_bus::{produce_blocking, Backbone, BusError, Record};
use tachyon_proto::Topic;

/// Largest chunk of a snapshot on the backbone.
pub const CHUNK_BYTES: usize = 512 * 1024;
const CHUNK_MAGIC: &[u8; 8] = b"TCHCHNK1";
const CHUNK_HEADER: usize = 8 + 8 + 4 + 4;
/// How many older snapshots loading looks at past damaged ones.
const MAX_SKIPPED: usize = 16;

const MAGIC: &[u8; 8] = b"TCHSNAP1";
const HEADER_BYTES: usize = 8 + 8 + 8 + 8 + 4;

/// A snapshot with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// The first input offset *not* reflected in `state`.
    pub next_input: u64,
    /// The last output sequence the shard had produced at that point.
    pub out_seq: u64,
    /// The machine's state ([`crate::Machine::snapshot`]).
    pub state: Vec<u8>,
}

/// Where one shard keeps its snapshots.
#[derive(Clone, Debug)]
pub enum SnapshotStore {
    Files(FileSnapshots),
    Backbone(BackboneSnapshots),
}

impl SnapshotStore {
    /// Snapshot files in `dir`; the newest `keep` (at least 1) are kept.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self::Files(FileSnapshots { dir: dir.into(), keep: keep.max(1) })
    }

    /// Snapshots on `partition` of the backbone's `tachyon.snapshots`.
    pub fn on_backbone(bus: Arc<dyn Backbone>, partition: u32) -> Self {
        Self::Backbone(BackboneSnapshots { bus, partition, chunk_bytes: CHUNK_BYTES })
    }

    /// The newest snapshot that reads back intact, if any; damaged ones are logged and
    /// skipped.
    ///
    /// # Errors
    /// I/O errors listing the directory or reading the backbone.
    pub fn load_newest(&self) -> std::io::Result<Option<ShardSnapshot>> {
        match self {
            Self::Files(files) => files.load_newest(),
            Self::Backbone(bus) => bus.load_newest().map_err(std::io::Error::other),
        }
    }

    /// Writes a snapshot durably; returns where it went (for the log).
    ///
    /// # Errors
    /// I/O or backbone errors; serialisation errors as `InvalidData`.
    pub fn save(&self, snapshot: &ShardSnapshot) -> std::io::Result<String> {
        match self {
            Self::Files(files) => files.save(snapshot).map(|path| path.display().to_string()),
            Self::Backbone(bus) => bus.save(snapshot).map_err(std::io::Error::other),
        }
    }
}

/// Encodes a snapshot in the format of the module docs.
///
/// # Errors
/// Serialisation errors as `InvalidData`.
pub fn encode(snapshot: &ShardSnapshot) -> std::io::Result<Vec<u8>> {
    let body = &snapshot.state;
    let len = body.len() as u64;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&snapshot.next_input.to_le_bytes());
    bytes.extend_from_slice(&snapshot.out_seq.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&checksum(snapshot.next_input, snapshot.out_seq, len, body).to_le_bytes());
    bytes.extend_from_slice(body);
    Ok(bytes)
}

/// Decodes and verifies bytes made by [`encode`].
///
/// # Errors
/// Why the bytes are not an intact snapshot.
pub fn decode(bytes: &[u8]) -> Result<ShardSnapshot, String> {
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err("not a snapshot".into());
    }
    let number = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes in the header"));
    let (next_input, out_seq, len) = (number(8), number(16), number(24));
    let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes in the header"));
    let body = &bytes[HEADER_BYTES..];
    if body.len() as u64 != len {
        return Err(format!("body is {} bytes, header says {len}", body.len()));
    }
    if checksum(next_input, out_seq, len, body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(ShardSnapshot { next_input, out_seq, state: body.to_vec() })
}

/// The snapshot files of one shard.
#[derive(Clone, Debug)]
pub struct FileSnapshots {
    dir: PathBuf,
    keep: usize,
}

fn checksum(next_input: u64, out_seq: u64, len: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for n in [next_input, out_seq, len] {
        h.update(&n.to_le_bytes());
    }
    h.update(body);
    h.finalize()
}

impl FileSnapshots {
    fn files(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let mut files = Vec::new();
        match fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry?.path();
                    let offset = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".snap"))
                        .and_then(|n| n.parse::<u64>().ok());
                    if let Some(offset) = offset {
                        files.push((offset, path));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files.sort();
        Ok(files)
    }

    fn load_newest(&self) -> std::io::Result<Option<ShardSnapshot>> {
        for (_, path) in self.files()?.into_iter().rev() {
            match read(&path) {
                Ok(snapshot) => return Ok(Some(snapshot)),
                Err(reason) => tracing::warn!(path = %path.display(), %reason, "skipping a damaged snapshot"),
            }
        }
        Ok(None)
    }

    /// Writes a snapshot durably and removes the oldest beyond `keep`.
    fn save(&self, snapshot: &ShardSnapshot) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let bytes = encode(snapshot)?;
        let path = self.dir.join(format!("{:020}.snap", snapshot.next_input));
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        let files = self.files()?;
        for (_, old) in files.iter().take(files.len().saturating_sub(self.keep)) {
            fs::remove_file(old)?;
        }
        Ok(path)
    }
}

fn read(path: &Path) -> Result<ShardSnapshot, String> {
    decode(&fs::read(path).map_err(|e| e.to_string())?)
}

/// The snapshots of one shard on the backbone (see the module docs).
#[derive(Clone)]
pub struct BackboneSnapshots {
    bus: Arc<dyn Backbone>,
    partition: u32,
    chunk_bytes: usize,
}

impl std::fmt::Debug for BackboneSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackboneSnapshots").field("partition", &self.partition).finish_non_exhaustive()
    }
}

/// A chunk's header fields: (next_input, index, count).
fn chunk_header(record: &Record) -> Option<(u64, u32, u32)> {
    let p = &record.payload;
    if p.len() < CHUNK_HEADER || &p[..8] != CHUNK_MAGIC {
        return None;
    }
    let next_input = u64::from_le_bytes(p[8..16].try_into().ok()?);
    let index = u32::from_le_bytes(p[16..20].try_into().ok()?);
    let count = u32::from_le_bytes(p[20..24].try_into().ok()?);
    (index < count).then_some((next_input, index, count))
}

impl BackboneSnapshots {
    fn save(&self, snapshot: &ShardSnapshot) -> Result<String, BusError> {
        let bytes = encode(snapshot).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let count = u32::try_from(bytes.len().div_ceil(self.chunk_bytes)).unwrap_or(u32::MAX);
        let mut chunks: Vec<Vec<u8>> = bytes
            .chunks(self.chunk_bytes)
            .enumerate()
            .map(|(index, part)| {
                let mut chunk = Vec::with_capacity(CHUNK_HEADER + part.len());
                chunk.extend_from_slice(CHUNK_MAGIC);
                chunk.extend_from_slice(&snapshot.next_input.to_le_bytes());
                chunk.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_le_bytes());
                chunk.extend_from_slice(&count.to_le_bytes());
                chunk.extend_from_slice(part);
                chunk
            })
            .collect();
        produce_blocking(self.bus.as_ref(), Topic::Snapshots, self.partition, &mut chunks)?;
        self.bus.flush(Topic::Snapshots, self.partition, Duration::from_secs(60))?;
        Ok(format!("{} partition {} ({count} chunks)", Topic::Snapshots, self.partition))
    }

    fn load_newest(&self) -> Result<Option<ShardSnapshot>, BusError> {
        let mut end = self.bus.end_offset(Topic::Snapshots, self.partition)?;
        for _ in 0..MAX_SKIPPED {
            if end == 0 {
                break;
            }
            match self.read_ending_at(end)? {
                (Some(snapshot), _) => return Ok(Some(snapshot)),
                (None, start) => end = start,
            }
        }
        Ok(None)
    }

    /// Reads the snapshot whose last chunk is at `end - 1`: the snapshot if it is intact,
    /// else `None` and where to look next.
    fn read_ending_at(&self, end: u64) -> Result<(Option<ShardSnapshot>, u64), BusError> {
        let partition = self.partition;
        let mut reader = self.bus.reader(Topic::Snapshots, partition, end - 1)?;
        let mut records = Vec::new();
        reader.poll(&mut records, 1, Duration::from_secs(10))?;
        let last = records.pop().ok_or_else(|| BusError::Unavailable("the snapshot topic did not answer".into()))?;
        let Some((next_input, index, count)) = chunk_header(&last).filter(|h| h.1 + 1 == h.2) else {
            tracing::warn!(partition, offset = last.offset, "skipping a snapshot record that ends no snapshot");
            return Ok((None, end - 1));
        };
        let start = end.saturating_sub(u64::from(count));
        if end < u64::from(count) {
            tracing::warn!(partition, offset = last.offset, index, "skipping a snapshot that lost its first chunks");
            return Ok((None, end - 1));
        }
        let mut reader = self.bus.reader(Topic::Snapshots, partition, start)?;
        records.clear();
        while (records.len() as u64) < u64::from(count) {
            let want = count as usize - records.len();
            if reader.poll(&mut records, want, Duration::from_secs(10))? == 0 {
                return Err(BusError::Unavailable("the snapshot topic stopped answering".into()));
            }
        }
        let mut bytes = Vec::new();
        for (i, record) in records.iter().enumerate() {
            match chunk_header(record) {
                Some((n, index, c)) if n == next_input && index as usize == i && c == count => {
                    bytes.extend_from_slice(&record.payload[CHUNK_HEADER..]);
                }
                _ => {
                    tracing::warn!(partition, offset = record.offset, "skipping a snapshot with a foreign chunk");
                    return Ok((None, end - 1));
                }
            }
        }
        match decode(&bytes) {
            Ok(snapshot) => Ok((Some(snapshot), start)),
            Err(reason) => {
                tracing::warn!(partition, offset = start, %reason, "skipping a damaged snapshot");
                Ok((None, start))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(next_input: u64) -> ShardSnapshot {
        ShardSnapshot { next_input, out_seq: next_input * 2, state: next_input.to_le_bytes().repeat(3) }
    }

    #[test]
    fn newest_intact_snapshot_wins_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::new(dir.path(), 2);
        assert_eq!(store.load_newest().expect("lists"), None);
        for n in [10, 20, 30] {
            store.save(&snapshot(n)).expect("saves");
        }
        let files = fs::read_dir(dir.path()).expect("lists").count();
        assert_eq!(files, 2, "only the newest two are kept");
        assert_eq!(store.load_newest().expect("loads"), Some(snapshot(30)));
        // Damage the newest: the one before it is used.
        let newest = dir.path().join(format!("{:020}.snap", 30));
        let mut bytes = fs::read(&newest).expect("reads");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&newest, bytes).expect("writes");
        assert_eq!(store.load_newest().expect("loads"), Some(snapshot(20)));
        fs::write(&newest, b"TCHSNAP1").expect("writes");
        assert_eq!(store.load_newest().expect("loads"), Some(snapshot(20)));
    }

    #[test]
    fn newest_complete_snapshot_on_the_backbone_wins() {
        use tachyon_bus::{EmbeddedBus, EmbeddedConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Backbone> = Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 2)).expect("opens"));
        let store = SnapshotStore::Backbone(BackboneSnapshots { bus: Arc::clone(&bus), partition: 1, chunk_bytes: 16 });
        assert_eq!(store.load_newest().expect("loads"), None);
        store.save(&snapshot(10)).expect("saves");
        store.save(&snapshot(20)).expect("saves");
        assert!(bus.end_offset(Topic::Snapshots, 1).expect("end") > 4, "small chunks: several records each");
        assert_eq!(store.load_newest().expect("loads"), Some(snapshot(20)));
        // A snapshot cut short (its writer died) is passed over for the previous one.
        let mut torn = encode(&snapshot(30)).expect("encodes");
        torn.truncate(16);
        let mut chunk = CHUNK_MAGIC.to_vec();
        chunk.extend_from_slice(&30u64.to_le_bytes());
        chunk.extend_from_slice(&0u32.to_le_bytes());
        chunk.extend_from_slice(&3u32.to_le_bytes());
        chunk.extend_from_slice(&torn);
        produce_blocking(bus.as_ref(), Topic::Snapshots, 1, &mut vec![chunk]).expect("produces");
        bus.flush(Topic::Snapshots, 1, Duration::from_secs(5)).expect("flushes");
        assert_eq!(store.load_newest().expect("loads"), Some(snapshot(20)));
        // Partition 0 has none of them.
        let other = SnapshotStore::on_backbone(Arc::clone(&bus), 0);
        assert_eq!(other.load_newest().expect("loads"), None);
    }
}
