//! The yardstick: a bare axum server whose handler returns a constant, to measure what
//! the HTTP stack and the generator hold on this machine before measuring Tachyon
//! (Tachyon's REST order entry is judged as a ratio of this).
//!
//! It answers `GET /v1/symbols` with the built-in symbol table (so the generator can set
//! up exactly as against Tachyon) and every other request with one constant order object.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tachyon_proto::api::SymbolInfo;
use tachyon_proto::symbol::default_symbols;

/// The constant body every order request gets.
const ORDER: &str = r#"{"order_id":"1","status":"new","remaining_quantity":"1","fills":[]}"#;

/// The baseline router.
pub fn router() -> Router {
    let symbols: Vec<SymbolInfo> = default_symbols().iter().map(SymbolInfo::from).collect();
    let symbols = serde_json::to_string(&symbols).unwrap_or_else(|_| "[]".to_owned());
    Router::new()
        .route("/v1/symbols", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], symbols) }))
        .fallback(|| async {
            (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], ORDER).into_response()
        })
}

/// Serves the baseline on `listen` with `threads` runtime workers until Ctrl-C/SIGTERM.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(listen: SocketAddr, threads: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        eprintln!("baseline axum handler on http://{}", listener.local_addr()?);
        // As Tachyon's server does.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router()).with_graceful_shutdown(shutdown()).await?;
        Ok(())
    })
}

async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
