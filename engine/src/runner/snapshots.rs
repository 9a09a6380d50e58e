//! Shard snapshots on disk: the engine state plus where in the input and output it stands.
//!
//! A file `<dir>/<next_input:020>.snap` holds
//! ```text
//! "TCHSNAP1" | u64 LE next_input | u64 LE out_seq | u64 LE len | u32 LE CRC-32 | engine snapshot (rkyv, len bytes)
//! ```
//! where the CRC covers the three numbers and the engine bytes. Files are written to a
//! temporary name, synced and renamed, so a crash leaves either the old set or the new
//! file complete; a damaged file is skipped in favour of the next older one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::snapshot::EngineSnapshot;

const MAGIC: &[u8; 8] = b"TCHSNAP1";
const HEADER_BYTES: usize = 8 + 8 + 8 + 8 + 4;

/// A snapshot with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// The first input offset *not* reflected in `engine`.
    pub next_input: u64,
    /// The last output sequence the shard had produced at that point.
    pub out_seq: u64,
    pub engine: EngineSnapshot,
}

/// The snapshot files of one shard.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
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

impl SnapshotStore {
    /// Snapshots in `dir`; the newest `keep` (at least 1) are kept.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self { dir: dir.into(), keep: keep.max(1) }
    }

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

    /// The newest snapshot that reads back intact, if any; damaged ones are logged and
    /// skipped.
    ///
    /// # Errors
    /// I/O errors listing the directory.
    pub fn load_newest(&self) -> std::io::Result<Option<ShardSnapshot>> {
        for (_, path) in self.files()?.into_iter().rev() {
            match read(&path) {
                Ok(snapshot) => return Ok(Some(snapshot)),
                Err(reason) => tracing::warn!(path = %path.display(), %reason, "skipping a damaged snapshot"),
            }
        }
        Ok(None)
    }

    /// Writes a snapshot durably and removes the oldest beyond `keep`.
    ///
    /// # Errors
    /// I/O errors; serialisation errors as `InvalidData`.
    pub fn save(&self, snapshot: &ShardSnapshot) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let body = snapshot.engine.to_bytes().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let len = body.len() as u64;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&snapshot.next_input.to_le_bytes());
        bytes.extend_from_slice(&snapshot.out_seq.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&checksum(snapshot.next_input, snapshot.out_seq, len, &body).to_le_bytes());
        bytes.extend_from_slice(&body);
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
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err("not a snapshot file".into());
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
    let engine = EngineSnapshot::from_bytes(body).map_err(|e| e.to_string())?;
    Ok(ShardSnapshot { next_input, out_seq, engine })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(next_input: u64) -> ShardSnapshot {
        ShardSnapshot {
            next_input,
            out_seq: next_input * 2,
            engine: EngineSnapshot { commands: next_input, books: Vec::new(), accounts: Vec::new() },
        }
    }

    #[test]
    fn newest_intact_snapshot_wins_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::new(dir.path(), 2);
        assert_eq!(store.load_newest().expect("lists"), None);
        for n in [10, 20, 30] {
            store.save(&snapshot(n)).expect("saves");
        }
        assert_eq!(store.files().expect("lists").len(), 2, "only the newest two are kept");
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
}
