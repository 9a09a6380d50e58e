//! Per-command latency of the `mixed` flow, into an HdrHistogram.
//!
//! `cargo run --release -p tachyon-benches --bin latency -- [--commands 2000000] [--hgrm out.hgrm] [--svg out.svg]`
//!
//! Times each `Engine::process` call on its own (events written into a batch buffer, as
//! in the benches) and prints p50/p90/p99/p99.9/p99.99/max and the timer's own overhead;
//! `--hgrm` also writes the percentile distribution for HdrHistogram's plotter, `--svg` a
//! latency-by-percentile chart.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tachyon_benches::flow::{self, FlowSpec};
use tachyon_benches::stats::{hgrm, latency_histogram, percentile_svg, summary};
use tachyon_benches::BatchSink;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Per-command latency of the mixed flow")]
struct Args {
    /// Timed commands (after the untimed prefill and a warm-up of the same length / 10).
    #[arg(long, default_value_t = 2_000_000)]
    commands: usize,
    /// Write the percentile distribution here (.hgrm).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile chart here (.svg).
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[allow(clippy::print_stdout, reason = "a benchmark report")]
fn main() -> Result<()> {
    let args = Args::parse();
    let spec = FlowSpec::mixed();
    let warmup = args.commands / 10;
    let run = flow::generate(&spec, warmup + args.commands);
    let mut engine = run.engine();
    let mut sink = BatchSink::new();
    for cmd in &run.commands[..warmup] {
        engine.process(cmd, &mut sink);
        sink.maybe_drain();
    }
    let mut hist = latency_histogram();
    let started = Instant::now();
    for cmd in &run.commands[warmup..] {
        let t = Instant::now();
        engine.process(cmd, &mut sink);
        hist.saturating_record((t.elapsed().as_nanos() as u64).max(1));
        sink.maybe_drain();
    }
    let secs = started.elapsed().as_secs_f64();
    let mut timer = latency_histogram();
    for _ in 0..100_000 {
        let t = Instant::now();
        timer.saturating_record((t.elapsed().as_nanos() as u64).max(1));
    }
    println!(
        "mixed: {} commands over {} symbols, {} resting at start",
        args.commands,
        spec.symbols,
        spec.symbols * spec.prefill_per_symbol
    );
    println!("per command: {}", summary(&hist));
    println!(
        "timer overhead (Instant pair): p50 {} ns; rate while timing {:.2} Mops/s",
        timer.value_at_quantile(0.5),
        args.commands as f64 / secs / 1e6
    );
    if let Some(path) = args.hgrm {
        std::fs::write(&path, hgrm(&hist))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = args.svg {
        let title = format!("Engine::process latency, mixed flow ({} commands)", args.commands);
        std::fs::write(&path, percentile_svg(&title, &[("mixed", &hist)]))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
