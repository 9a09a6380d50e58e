//! The HTTP server: the router of every route and `serve`, which takes its listener and a
//! shutdown future so tests bind `127.0.0.1:0` and run many servers in one process.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum::{middleware, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connections::CappedListener;
use crate::rest::{self, AppState, Probe};

use crate::service::Gateway;
use crate::ws;

/// Every route of the gateway.
pub fn router(gateway: Arc<Gateway>, probe: Arc<dyn Probe>) -> Router {
    let state = AppState { gateway, probe };
    rest::routes(state.clone())
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .fallback(rest::not_found)
        .layer(middleware::from_fn(rest::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), rest::count_responses))
        .with_state(state)
}

/// The routes of a process without the API (an engine or a persister): `/healthz`,
/// `/readyz` and `/metrics` from its probe.
pub fn ops_router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/healthz", get(rest::healthz))
        .route(
            "/readyz",
            get(|State(probe): State<Arc<dyn Probe>>| async move {
                let ready = probe.ready();
                let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, axum::Json(serde_json::json!({"ready": ready})))
            }),
        )
        .route(
            "/metrics",
            get(|State(probe): State<Arc<dyn Probe>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], rest::probe_metrics(&probe).await)
            }),
        )
        .fallback(rest::not_found)
        .with_state(probe)
}

/// Serves `app` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish (axum's graceful shutdown).
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| nodelay(tcp));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
/// and closes idle keep-alive connections. Connections over the gateway's caps are closed
/// at accept, a request head must arrive within the header-read timeout, and a socket on
/// which nothing moves for the idle timeout is closed ([`crate::connections`]).
///
/// # Errors
/// None today: a failed accept is logged and retried; the signature leaves room for one.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    probe: Arc<dyn Probe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::clone(&gateway.connections);
    let header_read_timeout = connections.limits().header_read_timeout;
    let listener = CappedListener::new(listener, connections);
    serve_http1(listener, router(gateway, probe), header_read_timeout, shutdown).await;
    Ok(())
}

/// The accept loop: one HTTP/1.1 connection task per socket (with upgrades, for the
/// WebSocket), hyper's header-read timeout on each, and a graceful stop. axum's own
/// `serve` offers no header-read timeout, so a client could hold a connection by never
/// finishing its request head.
async fn serve_http1<L>(
    mut listener: L,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
{
    // Dropping `stop` tells every connection to finish; each holds a `done` receiver, so
    // `done_tx.closed()` resolves when the last one has.
    let (stop, stopping) = watch::channel(());
    let (done_tx, done) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
            let mut stop_asked = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(error) = result {
                            tracing::trace!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !stop_asked => {
                        stop_asked = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop);
    drop(done);
    done_tx.closed().await;
}

/// See [`CappedListener`]'s accept: TCP_NODELAY for small, latency-bound answers.
fn nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::warn!(%error, "cannot set TCP_NODELAY");
    }
}
