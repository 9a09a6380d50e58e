//! The journal: an append-only, checksummed log of records on disk, one per partition.
//!
//! # Layout
//! A directory of segment files, each named by the offset of its first record
//! (`00000000000000000000.log`). A segment starts with an 8-byte header (`TCHJRNL` and a
//! format version) followed by records:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (offset ‖ payload) | u64 LE offset | payload
//! ```
//!
//! Offsets are consecutive from 0 across segments. The checksum covers the offset, so a
//! record in the wrong place is caught as well as a damaged one.
//!
//! # Writing
//! [`Journal::append`] writes a batch of records with one `write` and, under
//! [`FsyncPolicy::EveryBatch`] (the default), one `fdatasync`: group commit. Records are
//! durable once [`Journal::durable_offset`] has passed them, which under `EveryBatch` is
//! when `append` returns. A segment is closed (synced) and a new one started when the next
//! batch would take it past [`JournalConfig::segment_bytes`].
//!
//! # Recovery
//! [`Journal::open`] scans every segment. A torn or damaged record at the end of the last
//! segment (a crash mid-write) is cut off, with the file truncated to the last good
//! record, and reported in [`Recovery`]; it is never returned as data. Damage anywhere
//! else is not a crash artefact, so opening fails with [`JournalError::Corrupt`] rather
//! than silently dropping acknowledged records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

const MAGIC: &[u8; 7] = b"TCHJRNL";
const VERSION: u8 = 1;
const HEADER_BYTES: u64 = 8;
const RECORD_HEADER_BYTES: usize = 16;

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch, before `append` returns (the default).
    EveryBatch,
    /// At most this often; records in between are durable only once a later batch or
    /// [`Journal::sync`] syncs them.
    Interval(Duration),
    /// Never explicitly (the OS writes back when it likes). For tests and benchmarks.
    Never,
}

/// Journal settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    pub fsync: FsyncPolicy,
    /// A segment is closed once it reaches this size.
    pub segment_bytes: u64,
    /// Largest payload accepted (and believed when recovering).
    pub max_record_bytes: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { fsync: FsyncPolicy::EveryBatch, segment_bytes: 256 << 20, max_record_bytes: 1 << 20 }
    }
}

/// What went wrong with a journal.
#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    #[error("journal segment {path} is corrupt at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: &'static str },
    #[error("record of {len} bytes exceeds the limit of {max}")]
    RecordTooLarge { len: usize, max: u32 },
    #[error("offset {offset} is beyond the end of the journal ({end})")]
    OffsetOutOfRange { offset: u64, end: u64 },
}

/// What [`Journal::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the journal.
    pub records: u64,
    /// Bytes cut off the end of the last segment (0 after a clean shutdown).
    pub truncated_bytes: u64,
    /// Why the cut was made, if one was.
    pub truncation_reason: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
}

/// An open journal, ready to append.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    segments: Vec<Segment>,
    /// Shared with [`SyncTarget`]s, so a sync can run on another thread while the next
    /// batch is written.
    active: Arc<File>,
    active_len: u64,
    next_offset: u64,
    durable_offset: u64,
    last_sync: Instant,
    buffer: Vec<u8>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn checksum(offset: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&offset.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one encoded record to `out`.
fn encode_record(out: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(offset, payload).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a sync of a journal needs, detached from it: the file of its active segment and
/// the offset everything before which that sync makes durable.
#[derive(Clone, Debug)]
pub struct SyncTarget {
    file: Arc<File>,
    /// Records below this offset are durable once [`SyncTarget::sync`] returned.
    pub end: u64,
}

impl SyncTarget {
    /// `fdatasync` of the segment.
    ///
    /// # Errors
    /// The sync's I/O error.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Reads one record. `Ok(None)` at a clean end of segment; `Err(reason)` for a torn or
/// damaged record.
fn read_record(
    reader: &mut impl Read,
    expected: u64,
    max: u32,
    payload: &mut Vec<u8>,
) -> io::Result<Result<Option<u64>, &'static str>> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    match read_full(reader, &mut header)? {
        0 => return Ok(Ok(None)),
        n if n < RECORD_HEADER_BYTES => return Ok(Err("torn record header")),
        _ => {}
    }
    let field = |range: Range<usize>| {
        let mut b = [0u8; 8];
        b[..range.len()].copy_from_slice(&header[range.clone()]);
        u64::from_le_bytes(b)
    };
    let (len, crc, offset) = (field(0..4), field(4..8) as u32, field(8..16));
    if len > u64::from(max) {
        return Ok(Err("record length beyond the limit"));
    }
    payload.resize(len as usize, 0);
    if read_full(reader, payload)? < payload.len() {
        return Ok(Err("torn record payload"));
    }
    if checksum(offset, payload) != crc {
        return Ok(Err("checksum mismatch"));
    }
    if offset != expected {
        return Ok(Err("offset out of sequence"));
    }
    Ok(Ok(Some(offset)))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn check_header(reader: &mut impl Read) -> io::Result<bool> {
    let mut header = [0u8; HEADER_BYTES as usize];
    Ok(read_full(reader, &mut header)? == header.len() && &header[..7] == MAGIC && header[7] == VERSION)
}

fn new_segment(dir: &Path, base: u64) -> Result<(Segment, File), JournalError> {
    let path = segment_path(dir, base);
    let mut file = OpenOptions::new().create_new(true).read(true).append(true).open(&path)?;
    let mut header = [0u8; HEADER_BYTES as usize];
    header[..7].copy_from_slice(MAGIC);
    header[7] = VERSION;
    file.write_all(&header)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((Segment { base, path }, file))
}

/// The segments in `dir`, by base offset.
fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(base) = base {
            segments.push(Segment { base, path });
        }
    }
    segments.sort_by_key(|s| s.base);
    Ok(segments)
}

/// Makes a directory entry (a new segment) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, recovering from a torn tail.
    ///
    /// # Errors
    /// I/O errors, and [`JournalError::Corrupt`] for damage other than at the very end.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<(Self, Recovery), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut segments = list_segments(&dir)?;
        let mut recovery = Recovery::default();
        let mut next_offset = segments.first().map_or(0, |s| s.base);
        let mut payload = Vec::new();
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            if segment.base != next_offset {
                return Err(JournalError::Corrupt {
                    path: segment.path.clone(),
                    position: 0,
                    reason: "segment does not start where the previous one ended",
                });
            }
            let file = File::open(&segment.path)?;
            let size = file.metadata()?.len();
            let mut reader = BufReader::new(file);
            if !check_header(&mut reader)? {
                return Err(JournalError::Corrupt { path: segment.path.clone(), position: 0, reason: "bad header" });
            }
            let mut position = HEADER_BYTES;
            loop {
                match read_record(&mut reader, next_offset, config.max_record_bytes, &mut payload)? {
                    Ok(None) => break,
                    Ok(Some(_)) => {
                        next_offset += 1;
                        position += (RECORD_HEADER_BYTES + payload.len()) as u64;
                    }
                    Err(reason) if i == last => {
                        tracing::warn!(
                            segment = %segment.path.display(),
                            position,
                            cut_bytes = size - position,
                            reason,
                            "journal: cutting off a torn tail"
                        );
                        let file = OpenOptions::new().write(true).open(&segment.path)?;
                        file.set_len(position)?;
                        file.sync_all()?;
                        recovery.truncated_bytes = size - position;
                        recovery.truncation_reason = Some(reason);
                        break;
                    }
                    Err(reason) => {
                        return Err(JournalError::Corrupt { path: segment.path.clone(), position, reason });
                    }
                }
            }
        }
        recovery.records = next_offset - segments.first().map_or(0, |s| s.base);
        let (active, active_len) = match segments.last() {
            Some(s) => {
                let file = OpenOptions::new().read(true).append(true).open(&s.path)?;
                let len = file.metadata()?.len();
                (Arc::new(file), len)
            }
            None => {
                let (segment, file) = new_segment(&dir, 0)?;
                segments.push(segment);
                (Arc::new(file), HEADER_BYTES)
            }
        };
        let journal = Self {
            dir,
            config,
            segments,
            active,
            active_len,
            next_offset,
            durable_offset: next_offset,
            last_sync: Instant::now(),
            buffer: Vec::new(),
        };
        Ok((journal, recovery))
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Records below this offset are on disk (synced).
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }

    /// Appends a batch of records with one write (and one sync, per the policy); returns
    /// their offsets.
    ///
    /// # Errors
    /// [`JournalError::RecordTooLarge`] (nothing is written), or an I/O error. After an
    /// I/O error the journal's state on disk is unknown: reopen it to recover.
    pub fn append<P: AsRef<[u8]>>(&mut self, records: &[P]) -> Result<Range<u64>, JournalError> {
        if let Some(big) = records.iter().find(|r| r.as_ref().len() > self.config.max_record_bytes as usize) {
            return Err(JournalError::RecordTooLarge { len: big.as_ref().len(), max: self.config.max_record_bytes });
        }
        let first = self.next_offset;
        self.buffer.clear();
        for (i, record) in records.iter().enumerate() {
            encode_record(&mut self.buffer, first + i as u64, record.as_ref());
        }
        self.write_buffer(records.len() as u64)?;
        match self.config.fsync {
            FsyncPolicy::EveryBatch => self.sync()?,
            FsyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync()?,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => {}
        }
        Ok(first..self.next_offset)
    }

    /// Writes the records in the buffer (`count` of them), rolling the segment first if
    /// they would take it past its size.
    fn write_buffer(&mut self, count: u64) -> Result<(), JournalError> {
        let bytes = self.buffer.len() as u64;
        if self.active_len > HEADER_BYTES && self.active_len + bytes > self.config.segment_bytes {
            self.roll()?;
        }
        (&*self.active).write_all(&self.buffer)?;
        self.active_len += bytes;
        self.next_offset += count;
        Ok(())
    }

    /// Appends `count` records with one write and no sync (whatever the policy): `encode`
    /// appends record `i`'s payload to the buffer it is given, straight into the write
    /// buffer (no copy of the payload after it). The records are durable once a
    /// [`SyncTarget`] taken after this call has synced; tell the journal with
    /// [`Journal::mark_durable`].
    ///
    /// # Errors
    /// The encoder's error, [`JournalError::RecordTooLarge`] (nothing is written in either
    /// case), or an I/O error (the journal's state on disk is then unknown: reopen it).
    pub fn append_encoded<E>(
        &mut self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Result<Range<u64>, E>, JournalError> {
        let first = self.next_offset;
        self.buffer.clear();
        for i in 0..count {
            let start = self.buffer.len();
            self.buffer.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
            if let Err(e) = encode(i, &mut self.buffer) {
                return Ok(Err(e));
            }
            let len = self.buffer.len() - start - RECORD_HEADER_BYTES;
            if len > self.config.max_record_bytes as usize {
                return Err(JournalError::RecordTooLarge { len, max: self.config.max_record_bytes });
            }
            let offset = first + i as u64;
            let crc = checksum(offset, &self.buffer[start + RECORD_HEADER_BYTES..]);
            let header = &mut self.buffer[start..start + RECORD_HEADER_BYTES];
            header[..4].copy_from_slice(&(len as u32).to_le_bytes());
            header[4..8].copy_from_slice(&crc.to_le_bytes());
            header[8..].copy_from_slice(&offset.to_le_bytes());
        }
        self.write_buffer(count as u64)?;
        Ok(Ok(first..self.next_offset))
    }

    /// What syncing everything written so far takes, to run elsewhere (see
    /// [`Journal::append_encoded`]).
    pub fn sync_target(&self) -> SyncTarget {
        SyncTarget { file: Arc::clone(&self.active), end: self.next_offset }
    }

    /// Records below `end` were synced through a [`SyncTarget`].
    pub fn mark_durable(&mut self, end: u64) {
        self.durable_offset = self.durable_offset.max(end.min(self.next_offset));
    }

    /// Forces everything appended so far to disk.
    ///
    /// # Errors
    /// I/O errors from `fdatasync`.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.durable_offset < self.next_offset {
            self.active.sync_data()?;
            self.durable_offset = self.next_offset;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the active segment (synced) and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let (segment, file) = new_segment(&self.dir, self.next_offset)?;
        self.segments.push(segment);
        self.active = Arc::new(file);
        self.active_len = HEADER_BYTES;
        Ok(())
    }

    /// Reads records from `offset` to the end as it is now.
    ///
    /// # Errors
    /// [`JournalError::OffsetOutOfRange`] past the end; I/O errors opening segments.
    pub fn read_from(&self, offset: u64) -> Result<JournalReader, JournalError> {
        JournalReader::new(&self.segments, offset, self.next_offset, self.config.max_record_bytes)
    }
}

/// Reads records `offset..end` of the journal in `dir` while another handle may be
/// appending to it: `end` must not exceed what that writer has already written.
///
/// # Errors
/// [`JournalError::OffsetOutOfRange`] when `offset` is not in the journal; I/O errors.
pub fn read_dir_range(dir: &Path, offset: u64, end: u64, max_record_bytes: u32) -> Result<JournalReader, JournalError> {
    JournalReader::new(&list_segments(dir)?, offset, end, max_record_bytes)
}

/// Iterates records `(offset, payload)` from a starting offset up to the end of the
/// journal at the time it was created.
#[derive(Debug)]
pub struct JournalReader {
    segments: Vec<Segment>,
    current: Option<(BufReader<File>, PathBuf)>,
    next: u64,
    skip_below: u64,
    end: u64,
    max: u32,
}

impl JournalReader {
    fn new(segments: &[Segment], offset: u64, end: u64, max: u32) -> Result<Self, JournalError> {
        let start = segments.first().map_or(0, |s| s.base);
        if offset > end || offset < start {
            return Err(JournalError::OffsetOutOfRange { offset, end });
        }
        let first = segments.partition_point(|s| s.base <= offset).saturating_sub(1);
        Ok(JournalReader {
            segments: segments[first..].to_vec(),
            current: None,
            next: segments.get(first).map_or(offset, |s| s.base),
            skip_below: offset,
            end,
            max,
        })
    }

    fn open_next_segment(&mut self) -> Result<bool, JournalError> {
        if self.segments.is_empty() {
            return Ok(false);
        }
        let segment = self.segments.remove(0);
        let mut file = File::open(&segment.path)?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        if !check_header(&mut reader)? {
            return Err(JournalError::Corrupt { path: segment.path, position: 0, reason: "bad header" });
        }
        self.next = segment.base;
        self.current = Some((reader, segment.path));
        Ok(true)
    }
}

impl Iterator for JournalReader {
    type Item = Result<(u64, Vec<u8>), JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next >= self.end {
                return None;
            }
            if self.current.is_none() {
                match self.open_next_segment() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            let (reader, path) = self.current.as_mut().expect("a segment was just opened");
            let mut payload = Vec::new();
            match read_record(reader, self.next, self.max, &mut payload) {
                Err(e) => return Some(Err(e.into())),
                Ok(Ok(None)) => self.current = None,
                Ok(Ok(Some(offset))) => {
                    self.next = offset + 1;
                    if offset >= self.skip_below {
                        return Some(Ok((offset, payload)));
                    }
                }
                Ok(Err(reason)) => {
                    let path = path.clone();
                    return Some(Err(JournalError::Corrupt { path, position: 0, reason }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JournalConfig {
        JournalConfig { fsync: FsyncPolicy::EveryBatch, segment_bytes: 4096, max_record_bytes: 1024 }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes()
    }

    fn read_all(j: &Journal, from: u64) -> Vec<(u64, Vec<u8>)> {
        j.read_from(from).expect("in range").collect::<Result<_, _>>().expect("readable")
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut logs: Vec<PathBuf> = fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
        logs.sort();
        logs.pop().expect("a segment")
    }

    #[test]
    fn appends_reads_and_reopens_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, rec) = Journal::open(dir.path(), config()).expect("opens");
        assert_eq!(rec, Recovery::default());
        for batch in 0..40u64 {
            let records: Vec<Vec<u8>> = (0..5).map(|i| payload(batch * 5 + i)).collect();
            assert_eq!(j.append(&records).expect("appends"), batch * 5..batch * 5 + 5);
            assert_eq!(j.durable_offset(), batch * 5 + 5);
        }
        assert!(j.segments.len() >= 3, "rolled into several segments: {}", j.segments.len());
        let all = read_all(&j, 0);
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|(o, p)| *p == payload(*o)));
        assert_eq!(read_all(&j, 137).first().map(|r| r.0), Some(137));
        assert!(read_all(&j, 200).is_empty());
        assert!(matches!(j.read_from(201), Err(JournalError::OffsetOutOfRange { .. })));
        drop(j);
        let (mut j, rec) = Journal::open(dir.path(), config()).expect("reopens");
        assert_eq!((rec.records, rec.truncated_bytes), (200, 0));
        assert_eq!(j.append(&[b"after"]).expect("appends"), 200..201);
        assert_eq!(read_all(&j, 200), vec![(200, b"after".to_vec())]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_every_possible_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _) =
            Journal::open(dir.path(), JournalConfig { segment_bytes: 1 << 20, ..config() }).expect("opens");
        j.append(&[payload(0), payload(1)]).expect("appends");
        drop(j);
        let path = last_segment(dir.path());
        let whole = fs::read(&path).expect("read");
        let good = whole.len();
        // A third record, written partially: every cut must recover exactly two records.
        let mut third = Vec::new();
        encode_record(&mut third, 2, &payload(2));
        for cut in 1..third.len() {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&third[..cut]);
            fs::write(&path, &bytes).expect("write");
            let (mut j, rec) = Journal::open(dir.path(), config()).expect("recovers");
            assert_eq!((rec.records, rec.truncated_bytes), (2, cut as u64), "cut at {cut}");
            assert_eq!(fs::metadata(&path).expect("meta").len(), good as u64);
            assert_eq!(j.append(&[payload(2)]).expect("appends"), 2..3);
            drop(j);
            fs::write(&path, &whole).expect("restore");
        }
    }

    #[test]
    fn a_damaged_last_record_is_cut_off_never_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _) =
            Journal::open(dir.path(), JournalConfig { segment_bytes: 1 << 20, ..config() }).expect("opens");
        j.append(&[payload(0), payload(1), payload(2)]).expect("appends");
        drop(j);
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let (j, rec) = Journal::open(dir.path(), config()).expect("recovers");
        assert_eq!(rec.records, 2);
        assert_eq!(rec.truncation_reason, Some("checksum mismatch"));
        assert_eq!(read_all(&j, 0).len(), 2);
    }

    #[test]
    fn damage_before_the_tail_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _) = Journal::open(dir.path(), config()).expect("opens");
        for i in 0..100 {
            j.append(&[payload(i)]).expect("appends");
        }
        drop(j);
        let mut logs: Vec<PathBuf> = fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("e").path()).collect();
        logs.sort();
        let first = &logs[0];
        let mut bytes = fs::read(first).expect("read");
        bytes[HEADER_BYTES as usize + RECORD_HEADER_BYTES + 2] ^= 1;
        fs::write(first, &bytes).expect("write");
        assert!(matches!(Journal::open(dir.path(), config()), Err(JournalError::Corrupt { .. })));
    }

    #[test]
    fn oversized_records_are_refused_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _) = Journal::open(dir.path(), config()).expect("opens");
        let err = j.append(&[vec![0u8; 10], vec![0u8; 2000]]).expect_err("too large");
        assert!(matches!(err, JournalError::RecordTooLarge { len: 2000, max: 1024 }));
        assert_eq!(j.next_offset(), 0, "nothing of the batch was written");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// A crash can stop the last write at any byte: recovery keeps exactly a prefix of
        /// what was appended (never garbage), and appending continues right after it.
        #[test]
        fn recovery_after_a_crash_at_any_byte_keeps_a_prefix(
            batches in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..6), 1..12),
            cut in 0.0f64..1.0,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = JournalConfig { fsync: FsyncPolicy::Never, segment_bytes: 512, max_record_bytes: 1024 };
            let (mut j, _) = Journal::open(dir.path(), cfg).expect("opens");
            let mut written = Vec::new();
            for batch in &batches {
                j.append(batch).expect("appends");
                written.extend(batch.iter().cloned());
            }
            drop(j);
            // Tear the last segment at a random byte (a crash mid-write).
            let path = last_segment(dir.path());
            let len = fs::metadata(&path).expect("meta").len();
            let keep = HEADER_BYTES + ((len - HEADER_BYTES) as f64 * cut) as u64;
            OpenOptions::new().write(true).open(&path).expect("open").set_len(keep).expect("truncate");
            let (mut j, rec) = Journal::open(dir.path(), cfg).expect("recovers");
            let got: Vec<Vec<u8>> = read_all(&j, 0).into_iter().map(|(_, p)| p).collect();
            proptest::prop_assert_eq!(got.len() as u64, rec.records);
            proptest::prop_assert_eq!(&got[..], &written[..got.len()]);
            let next = j.append(&[b"next"]).expect("appends");
            proptest::prop_assert_eq!(next.start, rec.records);
        }
    }

    #[test]
    fn interval_policy_syncs_lazily_and_on_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = JournalConfig { fsync: FsyncPolicy::Interval(Duration::from_secs(3600)), ..config() };
        let (mut j, _) = Journal::open(dir.path(), cfg).expect("opens");
        j.append(&[b"a", b"b"]).expect("appends");
        assert_eq!((j.next_offset(), j.durable_offset()), (2, 0));
        j.sync().expect("syncs");
        assert_eq!(j.durable_offset(), 2);
    }
}
