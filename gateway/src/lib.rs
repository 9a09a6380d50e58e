//! The REST + WebSocket gateway.
//!
//! So far: [`auth`], API keys that any gateway sharing the key secret can verify without a
//! database; [`rate_limit`], per-key token buckets; [`idempotency`], replay of retried
//! requests by `Idempotency-Key`. Planned (the embedded-exchange issue): axum routes for every endpoint of
//! `shared/API.md`, per-key rate limits, idempotency, validation with
//! `tachyon_proto::api`, and reply correlation with the engine.

pub mod auth;
pub mod idempotency;
pub mod rate_limit;

pub use auth::{ApiKey, AuthError, KeyRing};
pub use idempotency::{Begin, IdempotencyConfig, IdempotencyStore, StoredResponse, Ticket};
pub use rate_limit::{Decision, RateLimitConfig, RateLimiter};
