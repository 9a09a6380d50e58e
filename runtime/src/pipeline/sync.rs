//! Group commit for the pipelines of one process: sync threads (each serving a fixed set
//! of partitions) sync the journals of their partitions that wrote since the last round,
//! so the pipelines go on matching while the sync is in flight (LMAX's journaller beside
//! its business logic), and a pipeline that wrote several batches meanwhile is covered by
//! one `fdatasync`. Partitions on different threads sync in parallel (a device takes
//! concurrent flushes; serial ones would add their latencies up).
//!
//! A pipeline hands over a [`SyncTarget`] after each write ([`Syncer::request`]); the
//! syncer takes every pending target, syncs each, publishes how far each partition is
//! durable ([`SyncSlot::durable`]) and wakes that pipeline. A newer target of a
//! partition replaces an older one: both name the same file (a segment roll syncs the
//! old file itself before the new one is used), and the newer covers more.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Per partition of the process (only this group's are ever set).
    targets: Vec<Option<SyncTarget>>,
    stop: bool,
}

/// The partitions one sync thread serves.
struct Group {
    pending: Mutex<Pending>,
    wake: Condvar,
}

struct Shared {
    groups: Vec<Group>,
    slots: Vec<Arc<SyncSlot>>,
    wakers: Mutex<Vec<Option<Arc<Wake>>>>,
    /// Shortest time between two rounds (the interval fsync policy), zero for a round per
    /// request.
    interval: Duration,
    /// Sync threads still running.
    running: AtomicUsize,
    stopped: AtomicBool,
}

impl Shared {
    fn group_of(&self, partition: usize) -> &Group {
        &self.groups[partition % self.groups.len()]
    }
}

/// The syncer of one process's pipelines (see the module docs).
pub struct Syncer {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("partitions", &self.shared.slots.len())
            .field("threads", &self.shared.groups.len())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    /// A syncer for `partitions` journals on `threads` sync threads (partition `p` on
    /// thread `p % threads`), each syncing at most once per `interval` (zero: as soon as
    /// asked).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(partitions: u32, threads: usize, interval: Duration) -> std::io::Result<Arc<Self>> {
        let n = partitions as usize;
        let threads = threads.clamp(1, n.max(1));
        let shared = Arc::new(Shared {
            groups: (0..threads)
                .map(|_| Group {
                    pending: Mutex::new(Pending { targets: vec![None; n], stop: false }),
                    wake: Condvar::new(),
                })
                .collect(),
            slots: (0..n).map(|_| Arc::default()).collect(),
            wakers: Mutex::new((0..n).map(|_| None).collect()),
            interval,
            running: AtomicUsize::new(threads),
            stopped: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(threads);
        for group in 0..threads {
            let worker = Arc::clone(&shared);
            let spawned =
                std::thread::Builder::new().name(format!("journal-sync-{group}")).spawn(move || run(&worker, group));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    let syncer = Self { shared, threads: Mutex::new(handles) };
                    syncer.shared.running.fetch_sub(threads - group, Ordering::AcqRel);
                    syncer.stop();
                    return Err(error);
                }
            }
        }
        Ok(Arc::new(Self { shared, threads: Mutex::new(handles) }))
    }

    /// The slot of `partition`, and `wake` to call once it advanced.
    pub(crate) fn register(&self, partition: u32, durable_from: u64, wake: Wake) -> Arc<SyncSlot> {
        let slot = Arc::clone(&self.shared.slots[partition as usize]);
        slot.durable.store(durable_from, Ordering::Release);
        self.shared.wakers.lock()[partition as usize] = Some(Arc::new(wake));
        slot
    }

    /// Asks for `target` to be synced.
    pub(crate) fn request(&self, partition: u32, target: SyncTarget) {
        let group = self.shared.group_of(partition as usize);
        group.pending.lock().targets[partition as usize] = Some(target);
        group.wake.notify_one();
    }

    /// Finishes pending syncs and stops the threads. Idempotent.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        for group in &self.shared.groups {
            group.pending.lock().stop = true;
            group.wake.notify_one();
        }
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }

    /// `true` while every sync thread runs (a pipeline whose syncer is gone must not wait
    /// for it).
    pub fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::Acquire)
            && self.shared.running.load(Ordering::Acquire) == self.shared.groups.len()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, group: usize) {
    let me = &shared.groups[group];
    let mut round: Vec<(usize, SyncTarget)> = Vec::new();
    let mut last_round = Instant::now() - shared.interval;
    loop {
        {
            let mut pending = me.pending.lock();
            while pending.targets.iter().all(Option::is_none) && !pending.stop {
                me.wake.wait(&mut pending);
            }
            if pending.targets.iter().all(Option::is_none) && pending.stop {
                break;
            }
            let wait = shared.interval.saturating_sub(last_round.elapsed());
            if !wait.is_zero() && !pending.stop {
                drop(pending);
                std::thread::sleep(wait);
                pending = me.pending.lock();
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
            let wake = shared.wakers.lock()[partition].clone();
            if let Some(wake) = wake {
                wake();
            }
        }
    }
    shared.running.fetch_sub(1, Ordering::AcqRel);
}
