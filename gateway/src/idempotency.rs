//! `Idempotency-Key`: a retried request is answered with the first answer, never run twice.
//!
//! Entries are keyed by (account, key), so two accounts may use the same key. A request
//! is identified by a fingerprint (SHA-256 of method, path and body, [`fingerprint`]):
//! - the first request with a key [`Begin::Proceed`]s and holds a [`Ticket`] until it
//!   [`IdempotencyStore::complete`]s (the response is stored) or
//!   [`IdempotencyStore::abandon`]s (no outcome: a retry may run it);
//! - the same request again gets [`Begin::Replay`] with the stored response, or
//!   [`Begin::InFlight`] (API: 409) while the first is still running;
//! - another request with the same key gets [`Begin::Mismatch`] (API: 422).
//!
//! Memory is bounded: entries expire after `ttl` (in-flight ones after `in_flight_timeout`,
//! in case their owner vanished), and past `max_entries` the oldest are evicted first.
//! Time is passed in (`now`), so behaviour is a function of the inputs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tachyon_proto::AccountId;
use thiserror::Error;

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 64;

/// Settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// How long a completed answer is kept for replay.
    pub ttl: Duration,
    /// How long an unfinished request blocks its key.
    pub in_flight_timeout: Duration,
    /// Most entries kept; the oldest go first.
    pub max_entries: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(24 * 3600), in_flight_timeout: Duration::from_secs(60), max_entries: 100_000 }
    }
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a key was refused outright.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdempotencyError {
    #[error("Idempotency-Key must be 1-{MAX_KEY_LEN} printable ASCII characters")]
    BadKey,
}

/// Permission to run a request; give it back with `complete` or `abandon`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket must be completed or abandoned, or its key stays blocked until it times out"]
pub struct Ticket {
    scope: (AccountId, String),
    generation: u64,
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    Proceed(Ticket),
    Replay(StoredResponse),
    InFlight,
    Mismatch,
}

#[derive(Debug)]
enum State {
    InFlight,
    Done(StoredResponse),
}

#[derive(Debug)]
struct Entry {
    fingerprint: [u8; 32],
    state: State,
    created: Instant,
    generation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(AccountId, String), Entry>,
    /// Entries in creation order (stale ones are skipped by generation).
    order: VecDeque<((AccountId, String), u64)>,
    next_generation: u64,
}

/// The store, shared by a gateway's requests.
#[derive(Debug)]
pub struct IdempotencyStore {
    config: IdempotencyConfig,
    inner: Mutex<Inner>,
}

/// The fingerprint of a request.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl IdempotencyStore {
    pub fn new(config: IdempotencyConfig) -> Self {
        Self { config, inner: Mutex::new(Inner::default()) }
    }

    /// Looks a request up by its key.
    ///
    /// # Errors
    /// [`IdempotencyError::BadKey`] for an empty, overlong or non-printable key.
    pub fn begin(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: Instant,
    ) -> Result<Begin, IdempotencyError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyError::BadKey);
        }
        let mut inner = self.inner.lock();
        self.expire(&mut inner, now);
        let scope = (account, key.to_owned());
        if inner.entries.get(&scope).is_some_and(|e| self.is_expired(e, now, self.config.ttl)) {
            inner.entries.remove(&scope);
        }
        if let Some(entry) = inner.entries.get(&scope) {
            return Ok(if entry.fingerprint != fingerprint {
                Begin::Mismatch
            } else {
                match &entry.state {
                    State::InFlight => Begin::InFlight,
                    State::Done(response) => Begin::Replay(response.clone()),
                }
            });
        }
        while inner.entries.len() >= self.config.max_entries.max(1) {
            let Some((oldest, generation)) = inner.order.pop_front() else { break };
            if inner.entries.get(&oldest).is_some_and(|e| e.generation == generation) {
                inner.entries.remove(&oldest);
            }
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.entries.insert(scope.clone(), Entry { fingerprint, state: State::InFlight, created: now, generation });
        inner.order.push_back((scope.clone(), generation));
        Ok(Begin::Proceed(Ticket { scope, generation }))
    }

    /// Stores the answer of a request that proceeded, for replay.
    pub fn complete(&self, ticket: Ticket, response: StoredResponse) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.entries.get_mut(&ticket.scope) {
            if entry.generation == ticket.generation {
                entry.state = State::Done(response);
            }
        }
    }

    /// Forgets a request that produced no outcome, so that a retry runs it.
    pub fn abandon(&self, ticket: Ticket) {
        let mut inner = self.inner.lock();
        if inner.entries.get(&ticket.scope).is_some_and(|e| e.generation == ticket.generation) {
            inner.entries.remove(&ticket.scope);
        }
    }

    /// Entries held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries from the front of the creation order (amortised O(1)). An
    /// in-flight entry expires after `in_flight_timeout`; one stuck behind younger
    /// completed entries is also treated as gone when its key is asked for again.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        let ttl = self.config.ttl;
        while let Some((scope, generation)) = inner.order.front().cloned() {
            let expired = match inner.entries.get(&scope) {
                Some(e) if e.generation == generation => self.is_expired(e, now, ttl),
                _ => true, // stale queue item
            };
            if !expired {
                break;
            }
            inner.order.pop_front();
            if inner.entries.get(&scope).is_some_and(|e| e.generation == generation) {
                inner.entries.remove(&scope);
            }
        }
    }

    fn is_expired(&self, e: &Entry, now: Instant, ttl: Duration) -> bool {
        let age = now.saturating_duration_since(e.created);
        match e.state {
            State::InFlight => age >= self.config.in_flight_timeout,
            State::Done(_) => age >= ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AccountId {
        AccountId::parse("alice").expect("valid")
    }

    fn store() -> IdempotencyStore {
        IdempotencyStore::new(IdempotencyConfig {
            ttl: Duration::from_secs(100),
            in_flight_timeout: Duration::from_secs(10),
            max_entries: 1000,
        })
    }

    fn ok(body: &str) -> StoredResponse {
        StoredResponse { status: 201, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_retry_replays_the_first_answer() {
        let s = store();
        let t0 = Instant::now();
        let fp = fingerprint("POST", "/v1/orders", b"{\"a\":1}");
        let Ok(Begin::Proceed(ticket)) = s.begin(alice(), "k1", fp, t0) else { panic!("first request proceeds") };
        assert_eq!(s.begin(alice(), "k1", fp, t0), Ok(Begin::InFlight));
        s.complete(ticket, ok("order 1"));
        assert_eq!(s.begin(alice(), "k1", fp, t0), Ok(Begin::Replay(ok("order 1"))));
        let other = fingerprint("POST", "/v1/orders", b"{\"a\":2}");
        assert_eq!(s.begin(alice(), "k1", other, t0), Ok(Begin::Mismatch));
    }

    #[test]
    fn keys_are_scoped_per_account_and_validated() {
        let s = store();
        let t0 = Instant::now();
        let fp = fingerprint("POST", "/v1/orders", b"x");
        assert!(matches!(s.begin(alice(), "k", fp, t0), Ok(Begin::Proceed(_))));
        let bob = AccountId::parse("bob").expect("valid");
        assert!(matches!(s.begin(bob, "k", fp, t0), Ok(Begin::Proceed(_))));
        for bad in ["", "has space", &"x".repeat(65), "tab\t"] {
            assert_eq!(s.begin(alice(), bad, fp, t0), Err(IdempotencyError::BadKey), "{bad:?}");
        }
    }

    #[test]
    fn abandoned_and_timed_out_requests_can_run_again() {
        let s = store();
        let t0 = Instant::now();
        let fp = fingerprint("DELETE", "/v1/orders/1", b"");
        let Ok(Begin::Proceed(ticket)) = s.begin(alice(), "k", fp, t0) else { panic!("proceeds") };
        s.abandon(ticket);
        let Ok(Begin::Proceed(_lost)) = s.begin(alice(), "k", fp, t0) else { panic!("runs again") };
        // The second owner vanished without an outcome: the key frees itself.
        assert_eq!(s.begin(alice(), "k", fp, t0 + Duration::from_secs(5)), Ok(Begin::InFlight));
        assert!(matches!(s.begin(alice(), "k", fp, t0 + Duration::from_secs(11)), Ok(Begin::Proceed(_))));
    }

    #[test]
    fn answers_expire_and_memory_is_bounded() {
        let s = store();
        let t0 = Instant::now();
        let fp = fingerprint("POST", "/v1/orders", b"x");
        let Ok(Begin::Proceed(t)) = s.begin(alice(), "old", fp, t0) else { panic!("proceeds") };
        s.complete(t, ok("1"));
        assert!(matches!(s.begin(alice(), "old", fp, t0 + Duration::from_secs(99)), Ok(Begin::Replay(_))));
        assert!(matches!(s.begin(alice(), "old", fp, t0 + Duration::from_secs(101)), Ok(Begin::Proceed(_))));
        for i in 0..5000 {
            if let Ok(Begin::Proceed(t)) = s.begin(alice(), &format!("k{i}"), fp, t0 + Duration::from_secs(101)) {
                s.complete(t, ok("x"));
            }
        }
        assert!(s.len() <= 1000, "{}", s.len());
    }

    #[test]
    fn a_late_complete_of_an_evicted_ticket_changes_nothing() {
        let s = IdempotencyStore::new(IdempotencyConfig { max_entries: 1, ..IdempotencyConfig::default() });
        let t0 = Instant::now();
        let fp = fingerprint("POST", "/v1/orders", b"x");
        let Ok(Begin::Proceed(first)) = s.begin(alice(), "a", fp, t0) else { panic!("proceeds") };
        // "b" evicts "a"; then "a" is asked for again and runs under a new ticket.
        let Ok(Begin::Proceed(_b)) = s.begin(alice(), "b", fp, t0) else { panic!("proceeds") };
        let Ok(Begin::Proceed(_again)) = s.begin(alice(), "a", fp, t0) else { panic!("runs again") };
        // The first ticket's late answer must not become the new request's answer.
        s.complete(first, ok("late"));
        assert_eq!(s.begin(alice(), "a", fp, t0), Ok(Begin::InFlight), "no stale replay");
    }

    #[test]
    fn a_late_abandon_of_an_evicted_ticket_does_not_unblock_the_new_request() {
        let s = IdempotencyStore::new(IdempotencyConfig { max_entries: 1, ..IdempotencyConfig::default() });
        let t0 = Instant::now();
        let fp = fingerprint("POST", "/v1/orders", b"x");
        let Ok(Begin::Proceed(first)) = s.begin(alice(), "a", fp, t0) else { panic!("proceeds") };
        let Ok(Begin::Proceed(_b)) = s.begin(alice(), "b", fp, t0) else { panic!("proceeds") };
        let Ok(Begin::Proceed(_again)) = s.begin(alice(), "a", fp, t0) else { panic!("runs again") };
        s.abandon(first);
        assert_eq!(s.begin(alice(), "a", fp, t0), Ok(Begin::InFlight), "the running request still owns the key");
    }
}
