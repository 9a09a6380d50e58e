//! Replays a standard workload file through the real engine (events and all).
//!
//! `cargo run --release -p tachyon-benches --bin replay -- <file> [--passes 5]`
//!
//! Prints each pass's throughput (prefill untimed; commands fed in batches of 256 through
//! `Engine::process_batch`, as the shard runner does), the per-command latency from a
//! separate pass timing each `Engine::process` call, and as its last line `replay <file>: <N> Mops/s median`. Exits non-zero,
//! loudly, when the end state differs from the header's expectation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tachyon_benches::stats::{latency_histogram, median, summary};
use tachyon_benches::workload::{self, EndState, Replay};
use tachyon_benches::{run_batches, BatchSink};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Replay a standard matching workload file through the engine")]
struct Args {
    /// A workload file (see shared/bench/WORKLOAD.md).
    file: PathBuf,
    /// Timed throughput passes; the median is reported.
    #[arg(long, default_value_t = 5)]
    passes: usize,
}

/// One throughput pass: (Mops/s, end state).
fn pass(replay: &Replay) -> (f64, EndState) {
    let mut engine = replay.run.engine();
    let mut sink = BatchSink::new();
    let started = Instant::now();
    run_batches(&mut engine, &replay.run.commands, &mut sink);
    sink.drain();
    let secs = started.elapsed().as_secs_f64();
    let mops = replay.run.commands.len() as f64 / secs / 1e6;
    (mops, EndState::of(&engine, replay.prefill_traded + sink.traded))
}

/// One pass timing every command on its own.
fn latency_pass(replay: &Replay) -> hdrhistogram::Histogram<u64> {
    let mut engine = replay.run.engine();
    let mut sink = BatchSink::new();
    let mut hist = latency_histogram();
    for cmd in &replay.run.commands {
        let t = Instant::now();
        engine.process(cmd, &mut sink);
        let ns = t.elapsed().as_nanos() as u64;
        hist.saturating_record(ns.max(1));
        sink.maybe_drain();
    }
    hist
}

/// What one `Instant::now()` + `elapsed()` pair costs, so latencies can be read against it.
fn timer_overhead_ns() -> u64 {
    let mut hist = latency_histogram();
    for _ in 0..100_000 {
        let t = Instant::now();
        hist.saturating_record((t.elapsed().as_nanos() as u64).max(1));
    }
    hist.value_at_quantile(0.5)
}

#[allow(clippy::print_stdout, reason = "a benchmark report")]
fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {name}"))?;
    let (header, records) = workload::parse(&bytes).with_context(|| format!("parsing {name}"))?;
    let replay = workload::prepare(&header, &records);
    println!(
        "replay {name}: {} timed commands after {} prefill (untimed); {} passes",
        replay.run.commands.len(),
        header.n_prefill,
        args.passes
    );
    let expected = EndState::expected(&header);
    let mut rates = Vec::new();
    for i in 1..=args.passes.max(1) {
        let (mops, end) = pass(&replay);
        if end != expected {
            eprintln!("replay {name}: WRONG END STATE in pass {i}\n  expected {expected:?}\n  got      {end:?}");
            return Ok(ExitCode::FAILURE);
        }
        println!("  pass {i}: {mops:.2} Mops/s");
        rates.push(mops);
    }
    println!("  end state OK: {expected:?}");
    let hist = latency_pass(&replay);
    println!("  per command: {}  (timer overhead ~{} ns)", summary(&hist), timer_overhead_ns());
    println!("replay {name}: {:.2} Mops/s median", median(rates));
    Ok(ExitCode::SUCCESS)
}
