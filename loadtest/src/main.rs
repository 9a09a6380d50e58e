//! `tachyon-loadtest`: open-loop load, honest latency, capacity reports.
//!
//! ```text
//! tachyon-loadtest run --target http://127.0.0.1:8080 --rate 20000 --duration 30 --out results/run --data-dir ./data
//! tachyon-loadtest sweep --target … --start 10000 --step 10000 --max 80000 --slo-p99-ms 5 --out results/sweep
//! tachyon-loadtest subscribers --target … --subscribers 500 --duration 30 --out results/md
//! tachyon-loadtest plan --sweep results/sweep/sweep.json --target-rps 50000 --slo-p99-ms 10
//! tachyon-loadtest baseline --listen 127.0.0.1:9000
//! ```
//! Exit codes: 0 pass, 1 could not run, 2 SLO or error budget broken, 3 invalid run (the
//! generator could not keep its schedule).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tachyon_loadtest::flow::Mix;
use tachyon_loadtest::report::{self, Judgement, Summary};
use tachyon_loadtest::run::{self, ResponseMode, RunConfig, Transport};
use tachyon_loadtest::schedule::Schedule;
use tachyon_loadtest::{baseline, http, keys, plan, subscribers, sweep};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "tachyon-loadtest", version, about = "Open-loop load generator and capacity reports for Tachyon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One run: a constant rate (or a ramp or steps) for a duration.
    Run(RunArgs),
    /// Raise the rate step by step until the p99 SLO breaks; report the knee.
    Sweep(SweepArgs),
    /// Open N market-data WebSocket subscribers and measure fan-out delay.
    Subscribers(SubscriberArgs),
    /// Capacity table from a sweep's JSON and a target load.
    Plan(PlanArgs),
    /// Serve a bare axum handler returning a constant (the yardstick for HTTP).
    Baseline(BaselineArgs),
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Base URL of the server (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Data directory of the server: keys are minted with its secret.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// File of API keys, one per line (instead of --data-dir).
    #[arg(long)]
    keys_file: Option<PathBuf>,
    /// Before the load, deposit this much of every asset to each account (servers with
    /// balances on; the `admin` key of --data-dir must be an admin's).
    #[arg(long, value_name = "AMOUNT")]
    fund: Option<String>,
    /// Accounts to spread the load over (default: one per 500 orders/s of peak rate, at
    /// least 8, so the default per-key rate limit of 1,000/s is never hit).
    #[arg(long)]
    accounts: Option<usize>,
    #[arg(long, value_enum, default_value_t = Transport::Rest)]
    transport: Transport,
    /// REST answers: `ack` (durable on the backbone) or `result` (the engine's report).
    #[arg(long, value_enum, default_value_t = ResponseMode::Result)]
    response: ResponseMode,
    /// Orders per request with `--transport batch`.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Seconds at the starting rate before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Symbols to trade, comma-separated, most popular first (default: all listed).
    #[arg(long, value_delimiter = ',')]
    symbols: Option<Vec<String>>,
    /// Zipf exponent of symbol popularity.
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Request mix, e.g. `passive=45,aggressive=15,cancel=35,amend=5`.
    #[arg(long, default_value = "passive=45,aggressive=15,cancel=35,amend=5")]
    mix: Mix,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Generator threads (each a single-threaded event loop).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Upper bound of the HTTP connection pool (it grows while requests wait).
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// A request not answered in this time counts as an error (`timeout`).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Shortest time between two wake-ups of a generator thread, in microseconds: requests
    /// due meanwhile go out together, at most this late (counted in their latency).
    #[arg(long, default_value_t = 100)]
    timer_resolution_us: u64,
    /// Do not follow trades on a market-data WebSocket (no end-to-end latency).
    #[arg(long)]
    no_e2e: bool,
    /// Server process id, to report its CPU per 1,000 orders.
    #[arg(long)]
    server_pid: Option<u32>,
    /// p99 latency objective in ms (exit code 2 when broken).
    #[arg(long)]
    slo_p99_ms: Option<f64>,
    /// Largest tolerated share of failed requests (exit code 2 when exceeded).
    #[arg(long, default_value_t = 0.001)]
    max_error_rate: f64,
    /// The generator's send lag p99 (ms) above which the run is invalid.
    #[arg(long, default_value_t = 1.0)]
    max_send_lag_ms: f64,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Orders (plus cancels and amends) per second; with `--transport batch`, orders/s
    /// (requests/s = rate ÷ batch size).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Ramp linearly from this rate up to --rate over --duration.
    #[arg(long, conflicts_with = "steps")]
    ramp_from: Option<f64>,
    /// Steps instead of a constant rate: `RATE:SECS,…` (a rate may be `FROM-TO`, a ramp).
    #[arg(long)]
    steps: Option<String>,
    /// Output directory (summary.json, .hgrm, .hlog, report.html).
    #[arg(long, default_value = "loadtest-results")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct SweepArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// First rate (orders/s).
    #[arg(long, default_value_t = 5000.0)]
    start: f64,
    /// Increment per step (orders/s).
    #[arg(long, default_value_t = 5000.0)]
    step: f64,
    /// Highest rate to try (orders/s).
    #[arg(long, default_value_t = 100_000.0)]
    max: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    step_duration: f64,
    /// Engine shards (partitions) of the deployment under test, for `plan`.
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Gateway processes of the deployment under test, for `plan`.
    #[arg(long, default_value_t = 1)]
    gateways: u32,
    #[arg(long, default_value = "loadtest-sweep")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct SubscriberArgs {
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Channels each subscriber joins: book, trades, ticker.
    #[arg(long, value_delimiter = ',', default_value = "book,trades")]
    channels: Vec<String>,
    /// Symbols each subscriber joins.
    #[arg(long, value_delimiter = ',', default_value = "BTC-USD")]
    md_symbols: Vec<String>,
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Also drive this many orders/s (REST, ack) so there is market data to fan out
    /// (needs --data-dir or --keys-file; 0 = only listen). `--target`, keys and the flow
    /// settings are the common ones.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long, default_value = "loadtest-subscribers")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// A sweep's sweep.json.
    #[arg(long)]
    sweep: PathBuf,
    #[arg(long, default_value_t = 50_000.0)]
    target_rps: f64,
    #[arg(long, default_value_t = 10.0)]
    slo_p99_ms: f64,
    /// Spare capacity on top of the target (0.3 = 30%).
    #[arg(long, default_value_t = 0.3)]
    headroom: f64,
    /// Share of all orders on the busiest symbol.
    #[arg(long, default_value_t = 0.34)]
    hot_symbol_share: f64,
    #[arg(long, default_value_t = 160.0)]
    command_bytes: f64,
    #[arg(long, default_value_t = 220.0)]
    output_bytes: f64,
    #[arg(long, default_value_t = 3.0)]
    replication: f64,
    /// Trades per order (default: the sweep's measurement).
    #[arg(long)]
    trades_per_order: Option<f64>,
    #[arg(long, default_value_t = 0.5)]
    item_kb: f64,
    #[arg(long, default_value_t = 2.0)]
    order_gsis: f64,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BaselineArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Runtime worker threads (Tachyon's server uses one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main() -> Result<i32> {
    match Cli::parse().command {
        Command::Run(args) => {
            let schedule = match (&args.steps, args.ramp_from) {
                (Some(steps), _) => Schedule::parse_steps(steps)?,
                (None, Some(from)) => Schedule::parse_steps(&format!("{from}-{}:{}", args.rate, args.duration))?,
                (None, None) => Schedule::constant(args.rate, args.duration)?,
            };
            let (config, judge) = run_config(&args.load, &schedule)?;
            let keys = load_keys(&args.load, schedule.peak_rate())?;
            let admin = admin_key(&args.load);
            fund(&args.load, &config.target, admin.as_deref(), &keys)?;
            if let Some(admin) = &admin {
                http::server_hops(&config.target, admin, true);
            }
            let output = run::run(&config, &keys, args.load.server_pid)?;
            let mut summary = Summary::new(&config, &output, &judge);
            summary.server_hops = admin.and_then(|admin| http::server_hops(&config.target, &admin, false));
            report::write_run(&args.out, &summary, &output)?;
            print_out(&summary.table());
            print_out(&format!("results in {}", args.out.display()));
            Ok(summary.exit_code())
        }
        Command::Sweep(args) => {
            let steps = sweep::Steps { start: args.start, step: args.step, max: args.max, secs: args.step_duration };
            if args.load.slo_p99_ms.is_none() {
                bail!("a sweep needs --slo-p99-ms");
            }
            let (config, judge) = run_config(&args.load, &Schedule::constant(args.start, args.step_duration)?)?;
            let keys = load_keys(&args.load, args.max)?;
            let admin = admin_key(&args.load);
            fund(&args.load, &config.target, admin.as_deref(), &keys)?;
            let report = sweep::sweep(
                &config,
                &steps,
                &judge,
                &keys,
                args.load.server_pid,
                admin.as_deref(),
                args.partitions,
                args.gateways,
                &args.out,
            )?;
            print_out(&sweep::table(&report));
            print_out(&format!("results in {}", args.out.display()));
            Ok(if report.knee_orders_per_sec.is_some() { 0 } else { 2 })
        }
        Command::Subscribers(args) => {
            let config = subscribers::SubscriberConfig {
                target: args.load.target.clone(),
                subscribers: args.subscribers,
                channels: args.channels.clone(),
                symbols: args.md_symbols.clone(),
                duration: Duration::from_secs_f64(args.duration),
                threads: args.load.threads,
            };
            // Optional order flow so that there is something to fan out.
            let driver = if args.rate > 0.0 {
                let schedule = Schedule::constant(args.rate, args.duration)?;
                let load = LoadArgs { warmup: 0.0, no_e2e: true, ..args.load.clone() };
                let (mut run_config, _) = run_config(&load, &schedule)?;
                run_config.progress = false;
                run_config.response = ResponseMode::Ack;
                run_config.symbols = Some(args.md_symbols.clone());
                let keys = load_keys(&load, args.rate)?;
                Some(std::thread::spawn(move || run::run(&run_config, &keys, None)))
            } else {
                None
            };
            let report = subscribers::run(&config, &args.out)?;
            if let Some(driver) = driver {
                let output = driver.join().map_err(|_| anyhow::anyhow!("the order driver panicked"))??;
                let codes: Vec<String> = output.total.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
                print_out(&format!(
                    "order flow: {} requests, {} errors; outcomes: {}",
                    output.total.requests,
                    output.total.errors,
                    if codes.is_empty() { "none".to_owned() } else { codes.join(" ") }
                ));
            }
            print_out(&subscribers::table(&report));
            print_out(&format!("results in {}", args.out.display()));
            Ok(if report.connected == report.subscribers { 0 } else { 2 })
        }
        Command::Plan(args) => {
            let text =
                std::fs::read_to_string(&args.sweep).with_context(|| format!("reading {}", args.sweep.display()))?;
            let sweep: sweep::SweepReport = serde_json::from_str(&text).context("not a sweep.json")?;
            let input = plan::PlanInput {
                target_rps: args.target_rps,
                slo_p99_ms: args.slo_p99_ms,
                headroom: args.headroom,
                hot_symbol_share: args.hot_symbol_share,
                command_bytes: args.command_bytes,
                output_bytes: args.output_bytes,
                replication: args.replication,
                trades_per_order: args.trades_per_order,
                item_kb: args.item_kb,
                order_gsis: args.order_gsis,
            };
            let plan = plan::plan(&sweep, &input)?;
            print_out(&if args.json { serde_json::to_string_pretty(&plan)? } else { plan.table() });
            Ok(0)
        }
        Command::Baseline(args) => {
            baseline::serve(args.listen, args.threads)?;
            Ok(0)
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    println!("{}", text.trim_end());
}

fn run_config(load: &LoadArgs, schedule: &Schedule) -> Result<(RunConfig, Judgement)> {
    if load.batch_size == 0 || load.batch_size > 100 {
        bail!("--batch-size must be 1 to 100 (the API's batch limit)");
    }
    let per_request = if load.transport == Transport::Batch { load.batch_size as f64 } else { 1.0 };
    let config = RunConfig {
        target: load.target.trim_end_matches('/').to_owned(),
        schedule: schedule.scaled(1.0 / per_request)?,
        warmup_secs: load.warmup.max(0.0),
        transport: load.transport,
        response: load.response,
        batch_size: load.batch_size,
        symbols: load.symbols.clone(),
        zipf: load.zipf,
        mix: load.mix,
        seed: load.seed,
        threads: load.threads.max(1),
        max_connections: load.max_connections.max(1),
        timeout: Duration::from_millis(load.timeout_ms.max(1)),
        timer_resolution: Duration::from_micros(load.timer_resolution_us),
        end_to_end: !load.no_e2e,
        progress: true,
    };
    let judge = Judgement {
        slo_p99_ms: load.slo_p99_ms,
        max_error_rate: load.max_error_rate,
        max_send_lag_ms: load.max_send_lag_ms,
        ..Judgement::default()
    };
    Ok((config, judge))
}

/// `--fund`: deposits to every account before the load.
fn fund(load: &LoadArgs, target: &str, admin: Option<&str>, keys: &[String]) -> Result<()> {
    let Some(amount) = &load.fund else { return Ok(()) };
    let admin = admin.context("--fund needs the admin key: give --data-dir")?;
    let done = http::fund(target, admin, keys, amount)?;
    print_out(&format!("funded {} accounts ({done} deposits of {amount})", keys.len()));
    Ok(())
}

/// The `admin` account's key, minted from the data dir (for the server's hop histograms).
fn admin_key(load: &LoadArgs) -> Option<String> {
    let dir = load.data_dir.as_deref().unwrap_or(Path::new("data"));
    keys::mint_for(dir, "admin").ok()
}

fn load_keys(load: &LoadArgs, peak_orders_per_sec: f64) -> Result<Vec<String>> {
    let wanted = load.accounts.unwrap_or_else(|| ((peak_orders_per_sec / 500.0).ceil() as usize).max(8));
    match (&load.keys_file, &load.data_dir) {
        (Some(file), _) => keys::from_file(file, load.accounts),
        (None, Some(dir)) => keys::mint(dir, wanted),
        (None, None) => {
            let default = Path::new("data");
            keys::mint(default, wanted).context("no --data-dir or --keys-file; tried ./data")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        // Duplicate argument names across flattened groups only panic at run time.
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["tachyon-loadtest", "subscribers", "--target", "http://127.0.0.1:1", "--rate", "5"])
                .expect("parses");
        let Command::Subscribers(args) = cli.command else { panic!("subscribers") };
        assert_eq!(args.load.target, "http://127.0.0.1:1");
    }
}
