//! Arrival schedules: when the i-th request is *meant* to be sent.
//!
//! A schedule is a list of phases in which the rate moves linearly from one value to
//! another (constant rate, ramps and steps are special cases). Latency is measured from
//! these intended times, never from the moment a busy client got round to sending, so a
//! stalled server shows up in the percentiles (coordinated-omission correction).

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// One phase: the rate goes linearly from `from` to `to` requests/s over `secs` seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub from: f64,
    pub to: f64,
    pub secs: f64,
}

impl Phase {
    /// Arrivals in the first `t` seconds of the phase.
    fn count_at(&self, t: f64) -> f64 {
        self.from * t + (self.to - self.from) / (2.0 * self.secs) * t * t
    }

    /// Seconds into the phase at which the count reaches `k`.
    fn time_of(&self, k: f64) -> f64 {
        let a = (self.to - self.from) / (2.0 * self.secs);
        if a.abs() < 1e-12 {
            return k / self.from;
        }
        (-self.from + (self.from * self.from + 4.0 * a * k).sqrt()) / (2.0 * a)
    }
}

/// A whole schedule: phases back to back.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    phases: Vec<Phase>,
    /// Start time and cumulative count at the start of each phase.
    starts: Vec<(f64, f64)>,
    total: f64,
}

impl Schedule {
    /// Builds a schedule from phases.
    ///
    /// # Errors
    /// A negative or non-finite rate, or a phase that is not longer than zero.
    pub fn new(phases: Vec<Phase>) -> Result<Self> {
        let mut starts = Vec::with_capacity(phases.len());
        let (mut t, mut n) = (0.0, 0.0);
        for p in &phases {
            ensure!(p.secs.is_finite() && p.secs > 0.0, "a schedule phase must last longer than 0 s");
            ensure!(
                p.from.is_finite() && p.to.is_finite() && p.from >= 0.0 && p.to >= 0.0,
                "rates must be finite and not negative"
            );
            starts.push((t, n));
            t += p.secs;
            n += p.count_at(p.secs);
        }
        Ok(Self { phases, starts, total: n })
    }

    /// `rate` requests/s for `secs` seconds.
    ///
    /// # Errors
    /// As [`Schedule::new`].
    pub fn constant(rate: f64, secs: f64) -> Result<Self> {
        Self::new(vec![Phase { from: rate, to: rate, secs }])
    }

    /// Parses `RATE:SECS[,RATE:SECS…]` (steps) where a rate may be `FROM-TO` (a ramp).
    ///
    /// # Errors
    /// A malformed step list.
    pub fn parse_steps(spec: &str) -> Result<Self> {
        let mut phases = Vec::new();
        for step in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (rate, secs) = step.split_once(':').with_context(|| format!("step {step:?}: expected RATE:SECS"))?;
            let secs: f64 = secs.parse().with_context(|| format!("step {step:?}: seconds"))?;
            let (from, to) = match rate.split_once('-') {
                Some((a, b)) => (a.parse()?, b.parse()?),
                None => {
                    let r: f64 = rate.parse().with_context(|| format!("step {step:?}: rate"))?;
                    (r, r)
                }
            };
            phases.push(Phase { from, to, secs });
        }
        if phases.is_empty() {
            bail!("an empty step list");
        }
        Self::new(phases)
    }

    /// This schedule followed by `next`.
    ///
    /// # Errors
    /// Never in practice (both were valid).
    pub fn then(&self, next: &Schedule) -> Result<Self> {
        Self::new(self.phases.iter().chain(&next.phases).copied().collect())
    }

    /// The same shape at `factor` times the rate (a thread's share of the load).
    ///
    /// # Errors
    /// A negative factor.
    pub fn scaled(&self, factor: f64) -> Result<Self> {
        Self::new(self.phases.iter().map(|p| Phase { from: p.from * factor, to: p.to * factor, ..*p }).collect())
    }

    /// Requests in the whole schedule.
    pub fn total(&self) -> u64 {
        // A whole request only; the fractional remainder is never sent.
        self.total.floor() as u64
    }

    /// How long the schedule runs.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|p| p.secs).sum())
    }

    /// The peak rate of the schedule (requests/s).
    pub fn peak_rate(&self) -> f64 {
        self.phases.iter().map(|p| p.from.max(p.to)).fold(0.0, f64::max)
    }

    /// Mean rate over the schedule (requests/s).
    pub fn mean_rate(&self) -> f64 {
        self.total / self.duration().as_secs_f64()
    }

    /// Intended send time of request `i` (0-based) after the start, or `None` past the end.
    pub fn offset(&self, i: u64) -> Option<Duration> {
        // Request i is sent when the cumulative count reaches i (the first at t = 0).
        let k = i as f64;
        if i >= self.total() {
            return None;
        }
        let idx = self.starts.partition_point(|&(_, n)| n <= k).saturating_sub(1);
        // Skip phases with no arrivals (a zero rate).
        let (mut idx, mut start) = (idx, self.starts[idx]);
        while self.phases[idx].count_at(self.phases[idx].secs) <= k - start.1 && idx + 1 < self.phases.len() {
            idx += 1;
            start = self.starts[idx];
        }
        let t = start.0 + self.phases[idx].time_of(k - start.1);
        Some(Duration::from_secs_f64(t.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.expect("inside the schedule").as_secs_f64()
    }

    #[test]
    fn constant_rate_spaces_requests_evenly() {
        let s = Schedule::constant(1000.0, 2.0).expect("valid");
        assert_eq!(s.total(), 2000);
        assert!((secs(s.offset(0)) - 0.0).abs() < 1e-9);
        assert!((secs(s.offset(1)) - 0.001).abs() < 1e-9);
        assert!((secs(s.offset(1999)) - 1.999).abs() < 1e-9);
        assert_eq!(s.offset(2000), None);
    }

    #[test]
    fn ramp_accelerates() {
        let s = Schedule::parse_steps("0-1000:10").expect("valid");
        assert_eq!(s.total(), 5000);
        // Half the requests arrive in the last 10 / sqrt(2) ≈ 2.93 s.
        let half = secs(s.offset(2500));
        assert!((half - 10.0 / 2f64.sqrt()).abs() < 1e-6, "{half}");
        let gaps: Vec<f64> = (1..5000).map(|i| secs(s.offset(i)) - secs(s.offset(i - 1))).collect();
        assert!(gaps.windows(2).all(|w| w[1] <= w[0] + 1e-12), "gaps shrink as the rate rises");
    }

    #[test]
    fn steps_follow_each_other() {
        let s = Schedule::parse_steps("100:1, 0:1, 200:1").expect("valid");
        assert_eq!(s.total(), 300);
        assert!((secs(s.offset(99)) - 0.99).abs() < 1e-9);
        // The idle step is skipped: request 100 is the first of the third step.
        assert!((secs(s.offset(100)) - 2.0).abs() < 1e-9);
        assert!((secs(s.offset(299)) - (2.0 + 199.0 / 200.0)).abs() < 1e-9);
        assert_eq!(s.peak_rate(), 200.0);
    }

    #[test]
    fn scaling_and_chaining() {
        let warm = Schedule::constant(100.0, 1.0).expect("valid");
        let main = Schedule::constant(300.0, 2.0).expect("valid");
        let s = warm.then(&main).expect("valid").scaled(0.5).expect("valid");
        assert_eq!(s.total(), 350);
        assert!((secs(s.offset(50)) - 1.0).abs() < 1e-9);
        assert!(Schedule::parse_steps("x").is_err());
        assert!(Schedule::constant(-1.0, 1.0).is_err());
        assert!(Schedule::constant(1.0, 0.0).is_err());
    }
}
