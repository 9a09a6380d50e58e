//! Self-test of the coordinated-omission correction: a server that stalls for 400 ms in
//! the middle of a run must show the stall in the corrected p99, even when the generator
//! has only two connections (where a closed-loop tool would record just two slow
//! requests and report a healthy p99).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use parking_lot::Mutex;
use tachyon_loadtest::flow::Mix;
use tachyon_loadtest::run::{self, ResponseMode, RunConfig, RunOutput, Transport};
use tachyon_loadtest::schedule::Schedule;
use tachyon_loadtest::stats::Percentiles;

const STALL: Duration = Duration::from_millis(400);

/// Serves the baseline handler on a port of its own; `stall` makes every request arriving
/// before the instant it holds wait until then.
fn stalling_server(stall: Arc<Mutex<Option<Instant>>>) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = tachyon_loadtest::baseline::router().layer(middleware::from_fn(move |req: Request, next: Next| {
        let stall = Arc::clone(&stall);
        async move {
            let until = *stall.lock();
            if let Some(until) = until {
                tokio::time::sleep_until(until.into()).await;
            }
            let response: Response = next.run(req).await;
            response
        }
    }));
    rt.spawn(async move { axum::serve(listener, app).await });
    (url, rt)
}

fn run_with_stall(max_connections: usize) -> RunOutput {
    let stall = Arc::new(Mutex::new(None));
    let (url, _server) = stalling_server(Arc::clone(&stall));
    let config = RunConfig {
        target: url,
        schedule: Schedule::constant(500.0, 2.5).expect("schedule"),
        warmup_secs: 0.0,
        transport: Transport::Rest,
        response: ResponseMode::Result,
        batch_size: 1,
        symbols: None,
        zipf: 1.1,
        mix: Mix::default(),
        seed: 1,
        threads: 1,
        max_connections,
        timeout: Duration::from_secs(5),
        timer_resolution: Duration::from_micros(100),
        end_to_end: false,
        progress: false,
    };
    let stall_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1200));
        *stall.lock() = Some(Instant::now() + STALL);
    });
    let output = run::run(&config, &["key".to_owned()], None).expect("the run completes");
    stall_thread.join().expect("stall thread");
    output
}

#[test]
fn a_stall_shows_in_the_corrected_p99_even_with_two_connections() {
    let out = run_with_stall(2);
    let corrected = Percentiles::of(&out.total.latency);
    let service = Percentiles::of(&out.total.service);
    assert_eq!(out.total.errors, 0, "{:?}", out.total.codes);
    assert!(out.total.requests >= 1200, "about 1,250 requests: {}", out.total.requests);
    // ~200 requests were due during the stall: they waited up to 400 ms.
    assert!(corrected.p99 >= 200.0, "corrected p99 {corrected:?}");
    assert!(out.total.late > 50, "requests were due while both connections hung: {}", out.total.late);
    // What a closed-loop tool would report: only the two hung requests were slow.
    assert!(service.p99 < 100.0, "uncorrected p99 {service:?}");
    assert!(service.max >= 300.0, "the hung requests themselves: {service:?}");
}

#[test]
fn an_open_pool_grows_through_a_stall_and_still_reports_it() {
    let out = run_with_stall(4096);
    let corrected = Percentiles::of(&out.total.latency);
    assert_eq!(out.total.errors, 0, "{:?}", out.total.codes);
    assert!(corrected.p99 >= 200.0, "corrected p99 {corrected:?}");
    assert!(out.connections > 10, "the pool grew while requests were due: {}", out.connections);
}
