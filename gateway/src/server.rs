//! The HTTP server: the router of every route and `serve`, which takes its listener and a
//! shutdown future so tests bind `127.0.0.1:0` and run many servers in one process.

use std::future::Future;
use std::sync::Arc;

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
        .layer(middleware::from_fn_with_state(state.clone(), rest::count_responses))
        .with_state(state)
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
    let app = router(gateway, probe);
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
