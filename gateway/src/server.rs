//! The HTTP server: the router of every route and `serve`, which takes its listener and a
//! shutdown future so tests bind `127.0.0.1:0` and run many servers in one process.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{middleware, Router};
use tokio::net::TcpListener;

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
    // Answers and WebSocket frames are small and latency-bound: without TCP_NODELAY,
    // Nagle's algorithm holds a second small write until the first is acknowledged, and
    // the client's delayed ACK turns that into 40 ms stalls.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish (axum's graceful shutdown).
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    probe: Arc<dyn Probe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(gateway, probe), shutdown).await
}
