//! Criterion benchmark of the embedded backbone's journal: appending batches of 64
//! records of 128 bytes (about a command envelope each) to a fresh directory, with an
//! fsync per batch (the default, what an `ack` waits for) and without one. Throughput in
//! records per second; the fsync variant also shows this disk's sync latency.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tachyon_bus::{FsyncPolicy, Journal, JournalConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 128]).collect();
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, fsync) in
        [("append_64x128B_fsync", FsyncPolicy::EveryBatch), ("append_64x128B_nosync", FsyncPolicy::Never)]
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = JournalConfig { fsync, segment_bytes: 64 << 20, ..JournalConfig::default() };
        let (mut journal, _) = Journal::open(dir.path(), config).expect("journal opens");
        group.bench_function(name, |b| b.iter(|| journal.append(&records).expect("append")));
    }
    group.finish();
}

criterion_group!(journal, benches);
criterion_main!(journal);
