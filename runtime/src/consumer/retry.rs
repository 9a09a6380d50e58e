//! Retry pacing: exponential backoff with full jitter, and a circuit breaker that stops
//! hammering a store that keeps failing.
//!
//! Pure state machines with the randomness passed in, so they are tested without sleeping.

use std::cell::RefCell;
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// How a consumer retries transient sink errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Consecutive transient failures tolerated (with backoff) before the circuit opens.
    pub attempts: u32,
    /// First backoff; each further failure doubles it, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long an open circuit waits before one trial write; doubles while the trials
    /// fail, up to `max_open`.
    pub open_for: Duration,
    pub max_open: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            open_for: Duration::from_secs(1),
            max_open: Duration::from_secs(30),
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Writes go through.
    Closed,
    /// The store is considered down: only a trial write after a pause.
    Open,
}

/// Counts consecutive failures and says how long to wait before the next attempt.
#[derive(Clone, Debug)]
pub struct Circuit {
    policy: RetryPolicy,
    failures: u32,
    trials: u32,
}

impl Circuit {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, failures: 0, trials: 0 }
    }

    pub fn state(&self) -> CircuitState {
        if self.failures >= self.policy.attempts.max(1) {
            CircuitState::Open
        } else {
            CircuitState::Closed
        }
    }

    /// A write succeeded: the circuit closes.
    pub fn success(&mut self) {
        self.failures = 0;
        self.trials = 0;
    }

    /// A write failed transiently; returns how long to wait before the next attempt.
    /// `unit` in `[0, 1)` draws the jitter: backoff is uniform in `[0, ceiling]` (full
    /// jitter, so many consumers do not retry in lockstep); an open circuit waits its
    /// whole pause plus up to 10% more.
    pub fn failure(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let unit = unit.clamp(0.0, 1.0);
        match self.state() {
            CircuitState::Closed => {
                full_jitter(self.policy.base_backoff, self.policy.max_backoff, self.failures - 1, unit)
            }
            CircuitState::Open => {
                let pause = doubled(self.policy.open_for, self.trials).min(self.policy.max_open);
                self.trials = self.trials.saturating_add(1);
                pause + pause.mul_f64(unit * 0.1)
            }
        }
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(base·2^attempt, max)]`, drawn
/// by `unit` in `[0, 1)`.
pub fn full_jitter(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    doubled(base, attempt).min(max).mul_f64(unit.clamp(0.0, 1.0))
}

/// A uniform draw in `[0, 1)` for jitter, from a per-thread generator seeded by the clock
/// and the thread (so processes and threads do not retry in lockstep).
pub fn jitter_unit() -> f64 {
    thread_local! {
        static RNG: RefCell<rand::rngs::SmallRng> = RefCell::new({
            let clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let thread = std::thread::current().id();
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&thread, &mut hasher);
            let salt = std::hash::Hasher::finish(&hasher);
            rand::rngs::SmallRng::seed_from_u64(clock ^ salt ^ u64::from(std::process::id()))
        });
    }
    RNG.with(|rng| rng.borrow_mut().random::<f64>())
}

fn doubled(d: Duration, times: u32) -> Duration {
    d.saturating_mul(1u32.checked_shl(times.min(31)).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(35),
            open_for: Duration::from_millis(100),
            max_open: Duration::from_millis(350),
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_then_the_circuit_opens_and_its_pause_doubles() {
        let mut c = Circuit::new(policy());
        // Full jitter at its top (unit → 1): the ceilings.
        let waits: Vec<u64> = (0..7).map(|_| c.failure(1.0).as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 110, 220, 385, 385, 385]);
        assert_eq!(c.state(), CircuitState::Open);
        c.success();
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.failure(1.0), Duration::from_millis(10), "a success resets both counters");
    }

    #[test]
    fn jitter_spreads_backoff_over_zero_to_the_ceiling() {
        let mut c = Circuit::new(policy());
        assert_eq!(c.failure(0.0), Duration::ZERO);
        assert_eq!(c.failure(0.5), Duration::from_millis(10));
        // Open: the pause is never shortened by jitter.
        assert_eq!(c.failure(0.0), Duration::from_millis(100));
    }
}
