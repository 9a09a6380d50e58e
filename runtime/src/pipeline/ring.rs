//! The bounded lock-free ring in front of a pipeline: many producers (the gateway's
//! request tasks), one consumer (the pipeline thread), and wake-ups per batch rather than
//! per command.
//!
//! The consumer spins briefly when it finds the ring empty, then announces that it is
//! going to sleep and parks. A producer wakes it only when it announced that, so a busy
//! pipeline is never woken (it finds the next batch itself) and an idle one is woken
//! once by the first command of a burst. The announcement is re-checked against the ring
//! after it is made, so a command pushed meanwhile is never left waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

/// A bounded multi-producer ring with a parking consumer (see the module docs).
#[derive(Debug)]
pub struct Ring<T> {
    queue: ArrayQueue<T>,
    consumer: OnceLock<Thread>,
    sleeping: AtomicBool,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Self { queue: ArrayQueue::new(capacity.max(1)), consumer: OnceLock::new(), sleeping: AtomicBool::new(false) }
    }

    /// Adds an item; gives it back when the ring is full.
    ///
    /// # Errors
    /// The item, when the ring is full.
    pub fn push(&self, item: T) -> Result<(), T> {
        self.queue.push(item)?;
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the consumer if it sleeps (also for reasons other than a new item).
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(consumer) = self.consumer.get() {
                consumer.unpark();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Consumer side: moves up to `max` items into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.queue.pop() {
                Some(item) => {
                    out.push(item);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Consumer side: waits until the ring has an item, `ready()` holds, something calls
    /// [`Ring::wake`], or `timeout` passes: spins for `spin` first, then parks. `ready` is
    /// checked again after the consumer announced its sleep, so a waker that changes what
    /// `ready` reads before calling [`Ring::wake`] is never missed.
    pub fn wait(&self, spin: Duration, timeout: Duration, ready: impl Fn() -> bool) {
        let _ = self.consumer.set(std::thread::current());
        let started = Instant::now();
        if !spin.is_zero() {
            // The clock is read once per 64 turns, not on every one.
            'spin: loop {
                for _ in 0..64 {
                    if !self.queue.is_empty() || ready() {
                        return;
                    }
                    std::hint::spin_loop();
                }
                if started.elapsed() >= spin {
                    break 'spin;
                }
            }
        }
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queue.is_empty() && !ready() {
            std::thread::park_timeout(timeout.saturating_sub(started.elapsed()));
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_ring_gives_the_item_back() {
        let ring = Ring::new(2);
        assert_eq!(ring.push(1), Ok(()));
        assert_eq!(ring.push(2), Ok(()));
        assert_eq!(ring.push(3), Err(3));
        let mut out = Vec::new();
        assert_eq!(ring.drain_into(&mut out, 10), 2);
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn a_parked_consumer_is_woken_by_a_push() {
        let ring = Arc::new(Ring::new(16));
        let consumer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while out.len() < 1000 {
                    if ring.drain_into(&mut out, 64) == 0 {
                        // A long timeout: only a wake-up can make this test finish quickly.
                        ring.wait(Duration::ZERO, Duration::from_secs(30), || false);
                    }
                }
                out
            })
        };
        for i in 0..1000 {
            let mut item = i;
            while let Err(back) = ring.push(item) {
                item = back;
                std::thread::yield_now();
            }
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let out = consumer.join().expect("consumer");
        assert_eq!(out, (0..1000).collect::<Vec<_>>(), "every item, in order");
    }
}
