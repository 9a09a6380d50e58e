//! Criterion benchmarks of the matching core (throughput in commands/s, or fills/s for
//! `sweep`). Workloads, all generated before timing (see `tachyon_benches::flow`):
//!
//! - `mixed`: 16 symbols × 5,000 resting orders; 100,000 commands of about 60% passive
//!   limits near the touch, 30% cancels, 10% aggressive IOC/market orders (symbol
//!   popularity ∝ 1/rank; most cancels pull recent orders; see `flow`).
//! - `add_cancel`: the same book; 100,000 commands, half passive adds, half cancels.
//! - `sweep`: market orders each walking 50 single-order levels of a 1,000-level ladder,
//!   which is refilled after each sweep; throughput counts fills.
//!
//! Commands go through `Engine::process_batch` in batches of 256, as the shard runner feeds
//! them. Each iteration starts from the same restored book (restore is not timed).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tachyon_benches::flow::{self, FlowSpec};
use tachyon_benches::{run_batches, BatchSink, Prepared};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(prepared: &Prepared, engine: &mut tachyon_engine::Engine) -> u64 {
    let mut sink = BatchSink::new();
    run_batches(engine, &prepared.commands, &mut sink);
    sink.drain();
    sink.count
}

fn bench_flow(c: &mut Criterion, name: &str, prepared: &Prepared, elements: u64) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(elements));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.iter_batched_ref(|| prepared.engine(), |engine| run(prepared, engine), BatchSize::PerIteration);
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let mixed = flow::generate(&FlowSpec::mixed(), 100_000);
    bench_flow(c, "mixed", &mixed, mixed.commands.len() as u64);
    let add_cancel = flow::generate(&FlowSpec::add_cancel(), 100_000);
    bench_flow(c, "add_cancel", &add_cancel, add_cancel.commands.len() as u64);
    let (sweep, fills) = flow::sweep(1_000, 50, 2_000);
    bench_flow(c, "sweep", &sweep, fills);
}

criterion_group!(matching, benches);
criterion_main!(matching);
