//! The REST + WebSocket gateway (not yet implemented).
//!
//! Planned: axum routes for every endpoint of `shared/API.md`, authentication by API key,
//! per-key rate limits, idempotency, validation with `tachyon_proto::api`, and reply
//! correlation with the engine. Empty until the embedded-exchange issue fills it.
