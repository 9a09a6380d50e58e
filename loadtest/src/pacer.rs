//! Precise sleeps for the schedule.
//!
//! tokio's timer wheel has a 1 ms resolution and rounds deadlines up, so sleeping until
//! each request's intended time would send it 1–2 ms late, and that lateness, honestly
//! counted from the intended time, would be reported as server latency. A `timerfd`
//! (CLOCK_MONOTONIC, the clock behind `Instant`) registered with the runtime's reactor
//! wakes the generator within microseconds instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A one-shot microsecond timer for one runtime thread.
pub struct Pacer {
    fd: AsyncFd<Fd>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pacer")
    }
}

impl Pacer {
    /// A timer registered with the current tokio runtime.
    ///
    /// # Errors
    /// The timerfd cannot be created or registered.
    pub fn new() -> io::Result<Self> {
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
        // `AsyncFd::new` is deprecated in favour of the `unsafe` `register`, whose contract
        // (the descriptor stays open and the same while registered) holds here: `Fd` owns
        // the timer and never hands it out. The workspace forbids `unsafe`, so keep `new`.
        #[allow(deprecated)]
        let fd = AsyncFd::new(Fd(timer))?;
        Ok(Self { fd })
    }

    /// Sleeps until `at` (returns at once if it has passed).
    ///
    /// # Errors
    /// Errors of the timer system calls.
    pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
        let now = Instant::now();
        if at <= now {
            return Ok(());
        }
        let wait = TimeSpec::from_duration(at - now);
        self.fd.get_ref().0.set(Expiration::OneShot(wait), TimerSetTimeFlags::empty())?;
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().0.wait() {
                Ok(()) => return Ok(()),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_until_the_deadline_and_not_before() {
        let pacer = Pacer::new().expect("timerfd");
        for micros in [0, 50, 300, 2_500] {
            let at = Instant::now() + Duration::from_micros(micros);
            pacer.sleep_until(at).await.expect("slept");
            assert!(Instant::now() >= at, "never early");
        }
    }
}
