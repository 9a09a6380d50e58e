//! The REST + WebSocket gateway.
//!
//! # Layout
//! - [`service`]: the [`Gateway`]: validation, ids and timestamps, commands onto the
//!   backbone, replies from the engine (with a timeout that answers `pending`).
//! - [`rest`] and [`ws`]: the routes of `shared/API.md` over it; [`server`] puts them
//!   together and serves them.
//! - [`path`]: where commands go (the backbone, or an engine in this process) and how
//!   their answers come back.
//! - [`orders`]: every account's orders and fills, kept from the engine's executions;
//!   [`market`]: books, trades, tickers and candles kept from its market data (fed by
//!   the runtime's feeds or, in one process, by the pipelines directly).
//! - [`balances`]: balances, fees and the ledger kept from the risk stage's outputs
//!   (balances on).
//! - [`history`]: orders and fills beyond memory, from a store (PostgreSQL) when configured.
//! - [`auth`] (API keys any gateway sharing the secret can verify), [`rate_limit`]
//!   (per-key token buckets), [`idempotency`] (replay by `Idempotency-Key`), [`error`]
//!   (the API's error shape), [`metrics`], [`openapi`].
//!
//! # Invariants
//! An account only ever sees and changes its own orders and fills; keys are never logged;
//! bad input gets the API's error shape (never a 5xx, never a panic); every wait for the
//! engine is bounded.

pub mod auth;
pub mod balances;
pub mod connections;
pub mod error;
pub mod frame;
pub mod history;
pub mod idempotency;
pub mod keys;
pub mod market;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod path;
pub mod rate_limit;
pub mod rest;
pub mod rest_balances;
pub mod server;
pub mod service;
pub mod symbols;
pub mod ws;

pub use auth::{ApiKey, AuthError, Identity, KeyId, KeyRing, Scope};
pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use history::History;
pub use idempotency::{Begin, IdempotencyConfig, IdempotencyStore, StoredResponse, Ticket};
pub use keys::Revocations;
pub use path::{InProcessPath, OrderPath, Reply, Waiter};
pub use rate_limit::{Decision, RateLimitConfig, RateLimiter};
pub use rest::Probe;
pub use service::{Gateway, GatewayConfig, ResponseMode, MAX_GATEWAY_ID};
pub use symbols::Symbols;
