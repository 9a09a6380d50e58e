//! Per-key rate limits: a token bucket per account.
//!
//! Each key earns `per_second` tokens a second up to `burst`; a request spends one. The
//! decision carries what the API reports: `X-RateLimit-Limit` (the sustained rate per
//! second), `X-RateLimit-Remaining` (whole tokens left) and, when refused, `Retry-After`
//! (when the next token arrives). Tokens are counted in millionths, in integers, so no
//! rounding drift builds up. Time is passed in (`now`), which keeps the limiter a pure
//! function of its inputs and its tests deterministic.
//!
//! Buckets live in shards behind short mutexes. A bucket that has refilled to `burst` is
//! the same as no bucket, so idle keys are dropped when a shard has doubled since its last
//! sweep (amortised O(1) per new key): memory stays proportional to the keys active within
//! the last `burst / per_second` seconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tachyon_proto::AccountId;

/// Millionths of a token per token.
const MICRO: u64 = 1_000_000;
const SHARDS: usize = 16;
/// A shard first sweeps its idle buckets when it holds more than this many, and then each
/// time it has doubled since the last sweep.
const SWEEP_ABOVE: usize = 4096;

/// Rate-limit settings, per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may arrive at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// At least 1,000 requests/s per key with bursts of 2,000, as the API promises.
    fn default() -> Self {
        Self { per_second: 1_000, burst: 2_000 }
    }
}

/// The outcome of one request against its key's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// For `X-RateLimit-Limit`.
    pub limit: u32,
    /// For `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// For `Retry-After` when refused (zero when allowed).
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    micro_tokens: u64,
    at: Instant,
}

#[derive(Debug)]
struct Shard {
    buckets: HashMap<AccountId, Bucket>,
    sweep_at: usize,
}

/// Token buckets for every key.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    /// A limiter; a zero rate or burst is raised to 1.
    pub fn new(config: RateLimitConfig) -> Self {
        let config = RateLimitConfig { per_second: config.per_second.max(1), burst: config.burst.max(1) };
        let shard = || Mutex::new(Shard { buckets: HashMap::new(), sweep_at: SWEEP_ABOVE });
        Self { config, shards: (0..SHARDS).map(|_| shard()).collect() }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.config.burst) * MICRO
    }

    /// Tokens (in millionths) a bucket holds at `now`.
    fn refilled(&self, bucket: Bucket, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_nanos();
        // per_second tokens a second = per_second * MICRO millionths per 1e9 ns.
        let earned = elapsed * u128::from(self.config.per_second) / 1_000;
        (u128::from(bucket.micro_tokens) + earned).min(u128::from(self.capacity())) as u64
    }

    /// Spends a token of `key`'s bucket if there is one.
    pub fn check(&self, key: AccountId, now: Instant) -> Decision {
        let shard = &self.shards[shard_of(key)];
        let mut shard = shard.lock();
        if shard.buckets.len() >= shard.sweep_at {
            let full = self.capacity();
            shard.buckets.retain(|_, b| self.refilled(*b, now) < full);
            shard.sweep_at = (shard.buckets.len() * 2).max(SWEEP_ABOVE);
        }
        let buckets = &mut shard.buckets;
        let fresh = Bucket { micro_tokens: self.capacity(), at: now };
        let bucket = buckets.entry(key).or_insert(fresh);
        let tokens = self.refilled(*bucket, now);
        let limit = self.config.per_second;
        if tokens >= MICRO {
            *bucket = Bucket { micro_tokens: tokens - MICRO, at: now };
            let remaining = u32::try_from((tokens - MICRO) / MICRO).unwrap_or(u32::MAX);
            Decision { allowed: true, limit, remaining, retry_after: Duration::ZERO }
        } else {
            *bucket = Bucket { micro_tokens: tokens, at: now };
            let missing = MICRO - tokens;
            let nanos = (missing * 1_000).div_ceil(u64::from(self.config.per_second));
            Decision { allowed: false, limit, remaining: 0, retry_after: Duration::from_nanos(nanos) }
        }
    }

    /// Whether a bucket is held for `key`.
    pub fn is_tracked(&self, key: AccountId) -> bool {
        self.shards[shard_of(key)].lock().buckets.contains_key(&key)
    }

    /// Buckets held (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().buckets.len()).sum()
    }
}

/// A shard for a key: the packed id's low bits are its first character, so mix first.
fn shard_of(key: AccountId) -> usize {
    let raw = key.to_raw();
    let folded = (raw as u64) ^ ((raw >> 64) as u64).rotate_left(32);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AccountId {
        AccountId::parse(name).expect("valid")
    }

    #[test]
    fn default_allows_a_burst_of_2000_then_1000_per_second() {
        assert_eq!(RateLimitConfig::default(), RateLimitConfig { per_second: 1_000, burst: 2_000 });
        let limiter = RateLimiter::new(RateLimitConfig::default());
        let t0 = Instant::now();
        for i in 0..2_000u32 {
            let d = limiter.check(key("alice"), t0);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 1_999 - i);
        }
        let refused = limiter.check(key("alice"), t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(1), "one token per millisecond");
        // One second later: exactly 1,000 more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..1_500).filter(|_| limiter.check(key("alice"), t1).allowed).count();
        assert_eq!(allowed, 1_000);
    }

    #[test]
    fn keys_are_independent() {
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 1, burst: 1 });
        let t0 = Instant::now();
        assert!(limiter.check(key("alice"), t0).allowed);
        assert!(!limiter.check(key("alice"), t0).allowed);
        assert!(limiter.check(key("bob"), t0).allowed);
    }

    #[test]
    fn sustained_rate_is_exact_over_a_long_run() {
        // 7 per second offered 100 per second for 60 s: exactly 7 × 60 + the burst of 3 pass.
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 7, burst: 3 });
        let t0 = Instant::now();
        let allowed =
            (0..6_000u64).filter(|i| limiter.check(key("alice"), t0 + Duration::from_millis(i * 10)).allowed).count();
        assert_eq!(allowed, 7 * 60 - 1 + 3, "no drift: {allowed}");
    }

    #[test]
    fn retry_after_is_when_the_next_token_arrives() {
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 4, burst: 1 });
        let t0 = Instant::now();
        assert!(limiter.check(key("alice"), t0).allowed);
        let d = limiter.check(key("alice"), t0 + Duration::from_millis(100));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(150));
        assert!(limiter.check(key("alice"), t0 + Duration::from_millis(250)).allowed);
    }

    #[test]
    fn idle_keys_are_forgotten_when_a_shard_fills() {
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 1_000, burst: 10 });
        let t0 = Instant::now();
        for i in 0..(SHARDS * SWEEP_ABOVE * 2) {
            limiter.check(key(&format!("k{i}")), t0);
        }
        let busy = limiter.tracked_keys();
        assert!(busy >= SHARDS * SWEEP_ABOVE, "active keys are all kept: {busy}");
        // Much later every bucket is full again: as shards reach their next sweep, the idle
        // buckets go.
        let later = t0 + Duration::from_secs(1);
        for i in 0..2 * busy {
            limiter.check(key(&format!("new{i}")), later);
        }
        let kept = (0..busy).filter(|i| limiter.is_tracked(key(&format!("k{i}")))).count();
        assert_eq!(kept, 0, "idle buckets are forgotten");
    }
}
