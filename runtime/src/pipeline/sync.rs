//! Group commit for the pipelines of one process: one thread syncs the journals of every
//! partition that wrote since its last round, so the pipelines go on matching while the
//! sync is in flight (LMAX's journaller beside its business logic), and a pipeline that
//! wrote several batches meanwhile is covered by one `fdatasync`.
//!
//! A pipeline hands over a [`SyncTarget`] after each write ([`Syncer::request`]); the
//! syncer takes every pending target, syncs each, publishes how far each partition is
//! durable ([`SyncSlot::durable`]) and wakes that pipeline. A newer target of a
//! partition replaces an older one: both name the same file (a segment roll syncs the
//! old file itself before the new one is used), and the newer covers more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tachyon_bus::SyncTarget;

/// How far one partition's journal is synced, and what woke its pipeline.
#[derive(Debug, Default)]
pub struct SyncSlot {
    /// Records below this offset are durable.
    pub durable: AtomicU64,
    /// Set once a sync failed: the journal's state on disk is unknown.
    pub failed: Mutex<Option<String>>,
}

type Wake = Box<dyn Fn() + Send + Sync>;

struct Pending {
    targets: Vec<Option<SyncTarget>>,
    stop: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    slots: Vec<Arc<SyncSlot>>,
    wakers: Mutex<Vec<Option<Wake>>>,
    /// Shortest time between two rounds (the interval fsync policy), zero for a round per
    /// request.
    interval: Duration,
    running: AtomicBool,
}

/// The syncer of one process's pipelines (see the module docs).
pub struct Syncer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("partitions", &self.shared.slots.len()).finish_non_exhaustive()
    }
}

impl Syncer {
    /// A syncer for `partitions` journals, syncing at most once per `interval` (zero: as
    /// soon as asked).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(partitions: u32, interval: Duration) -> std::io::Result<Arc<Self>> {
        let n = partitions as usize;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { targets: vec![None; n], stop: false }),
            wake: Condvar::new(),
            slots: (0..n).map(|_| Arc::default()).collect(),
            wakers: Mutex::new((0..n).map(|_| None).collect()),
            interval,
            running: AtomicBool::new(true),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("journal-sync".into()).spawn(move || run(&worker))?;
        Ok(Arc::new(Self { shared, thread: Mutex::new(Some(thread)) }))
    }

    /// The slot of `partition`, and `wake` to call once it advanced.
    pub(crate) fn register(&self, partition: u32, durable_from: u64, wake: Wake) -> Arc<SyncSlot> {
        let slot = Arc::clone(&self.shared.slots[partition as usize]);
        slot.durable.store(durable_from, Ordering::Release);
        self.shared.wakers.lock()[partition as usize] = Some(wake);
        slot
    }

    /// Asks for `target` to be synced.
    pub(crate) fn request(&self, partition: u32, target: SyncTarget) {
        self.shared.pending.lock().targets[partition as usize] = Some(target);
        self.shared.wake.notify_one();
    }

    /// Finishes pending syncs and stops the thread. Idempotent.
    pub fn stop(&self) {
        self.shared.pending.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared) {
    let mut round: Vec<(usize, SyncTarget)> = Vec::new();
    let mut last_round = Instant::now() - shared.interval;
    loop {
        {
            let mut pending = shared.pending.lock();
            while pending.targets.iter().all(Option::is_none) && !pending.stop {
                shared.wake.wait(&mut pending);
            }
            if pending.targets.iter().all(Option::is_none) && pending.stop {
                break;
            }
            let wait = shared.interval.saturating_sub(last_round.elapsed());
            if !wait.is_zero() && !pending.stop {
                drop(pending);
                std::thread::sleep(wait);
                pending = shared.pending.lock();
            }
            round.extend(pending.targets.iter_mut().enumerate().filter_map(|(i, t)| t.take().map(|t| (i, t))));
        }
        last_round = Instant::now();
        for (partition, target) in round.drain(..) {
            let slot = &shared.slots[partition];
            match target.sync() {
                Ok(()) => {
                    slot.durable.fetch_max(target.end, Ordering::SeqCst);
                }
                Err(error) => {
                    tracing::error!(partition, %error, "journal sync failed");
                    *slot.failed.lock() = Some(error.to_string());
                }
            }
            if let Some(wake) = &shared.wakers.lock()[partition] {
                wake();
            }
        }
    }
    shared.running.store(false, Ordering::Release);
}
