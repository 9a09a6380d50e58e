//! Shard leases: at most one engine process runs a shard at a time (distributed mode).
//!
//! Each shard's partition of `tachyon.leases` is a log of JSON records
//! `{"owner": …, "kind": "claim" | "renew" | "release"}`. The broker orders them, which
//! makes the log a lock:
//! - **Waiting.** A shard whose last lease record is a claim or renewal by someone else
//!   waits until that owner writes a release, or until no record at all has arrived for
//!   `ttl` (measured on the waiter's own clock, so clocks need not agree). Meanwhile it is a
//!   hot standby: a second engine started for the same shard waits here.
//! - **Claiming.** The waiter appends a claim, then reads what was appended between the
//!   point where it saw the lease free and its own claim: the first claim wins; a loser goes
//!   back to waiting.
//! - **Holding.** The owner appends a renewal every `renew_every` and checks what was
//!   appended since its last look: another owner's claim means the lease was taken (this
//!   process stalled for longer than `ttl`), and [`Lease::lost`] is set so the shard stops
//!   before publishing more. Until that check both may run for up to one `renew_every`;
//!   the core being deterministic, they publish the same outputs with the same sequences,
//!   which consumers deduplicate.
//! - **Releasing.** A clean stop appends a release, so a successor starts at once; after a
//!   crash the successor waits `ttl`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tachyon_bus::{last_record, Backbone, BusError, Record};
use tachyon_proto::Topic;

/// Lease timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A lease nobody renewed for this long is free.
    pub ttl: Duration,
    /// How often the owner renews (well under `ttl`).
    pub renew_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(5), renew_every: Duration::from_secs(1) }
    }
}

/// A held lease; renewed by a thread until dropped (which releases it).
pub struct Lease {
    bus: Arc<dyn Backbone>,
    partition: u32,
    owner: String,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("partition", &self.partition).field("owner", &self.owner).finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Claim,
    Renew,
    Release,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Claim => "claim",
            Kind::Renew => "renew",
            Kind::Release => "release",
        }
    }
}

/// (owner, kind) of a lease record; `None` for anything else (skipped).
fn parse(record: &Record) -> Option<(String, Kind)> {
    let value: serde_json::Value = serde_json::from_slice(&record.payload).ok()?;
    let kind = match value["kind"].as_str()? {
        "claim" => Kind::Claim,
        "renew" => Kind::Renew,
        "release" => Kind::Release,
        _ => return None,
    };
    Some((value["owner"].as_str()?.to_string(), kind))
}

/// Appends a lease record and waits for the broker; returns its offset.
fn append(bus: &dyn Backbone, partition: u32, owner: &str, kind: Kind) -> Result<u64, BusError> {
    let record = serde_json::json!({"owner": owner, "kind": kind.name()}).to_string().into_bytes();
    let (tx, rx) = mpsc::channel();
    bus.produce(Topic::Leases, partition, &mut vec![record], Some(Box::new(move |r| drop(tx.send(r)))))?;
    let offsets = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| BusError::Unavailable("no acknowledgement for a lease record".into()))??;
    Ok(offsets.start)
}

/// Records of the partition in `[from, to)`.
fn read(bus: &dyn Backbone, partition: u32, from: u64, to: u64) -> Result<Vec<Record>, BusError> {
    let mut reader = bus.reader(Topic::Leases, partition, from)?;
    let mut records = Vec::new();
    while reader.position() < to {
        if reader.poll(&mut records, 256, Duration::from_secs(10))? == 0 {
            return Err(BusError::Unavailable("the lease topic stopped answering".into()));
        }
    }
    records.retain(|r| r.offset < to);
    Ok(records)
}

/// `true` when `records` hold a claim by someone else than `owner`. Only claims count: a
/// renewal by an owner that was overtaken is stale (it learns of the claim at its next
/// renewal and stops).
fn foreign_claim(records: &[Record], owner: &str) -> bool {
    records.iter().filter_map(parse).any(|(who, kind)| who != owner && kind == Kind::Claim)
}

/// Waits until the shard's lease is free and takes it (see the module docs). Returns
/// `Ok(None)` if `stop` was set while waiting.
///
/// # Errors
/// The backbone's.
pub fn acquire(
    bus: &Arc<dyn Backbone>,
    partition: u32,
    owner: &str,
    config: LeaseConfig,
    stop: &AtomicBool,
) -> Result<Option<Lease>, BusError> {
    loop {
        let Some(free_from) = wait_free(bus.as_ref(), partition, owner, config, stop)? else { return Ok(None) };
        let mine = append(bus.as_ref(), partition, owner, Kind::Claim)?;
        let before = read(bus.as_ref(), partition, free_from, mine)?;
        if foreign_claim(&before, owner) {
            tracing::info!(partition, "another engine claimed the shard first; waiting");
            continue;
        }
        tracing::info!(partition, owner, "shard lease taken");
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (bus, owner, lost, stop) = (Arc::clone(bus), owner.to_string(), Arc::clone(&lost), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("lease-{partition}"))
                .spawn(move || renew(bus.as_ref(), partition, &owner, mine + 1, config, &lost, &stop))
                .map_err(|e| BusError::Unavailable(format!("cannot start the lease thread: {e}")))?
        };
        return Ok(Some(Lease {
            bus: Arc::clone(bus),
            partition,
            owner: owner.to_string(),
            lost,
            stop,
            renewer: Some(renewer),
        }));
    }
}

/// Waits until nobody holds the lease; returns the offset from which claims compete.
fn wait_free(
    bus: &dyn Backbone,
    partition: u32,
    owner: &str,
    config: LeaseConfig,
    stop: &AtomicBool,
) -> Result<Option<u64>, BusError> {
    let end = bus.end_offset(Topic::Leases, partition)?;
    let held_by = last_record(bus, Topic::Leases, partition)?
        .and_then(|r| parse(&r))
        .filter(|(who, kind)| *kind != Kind::Release && who != owner)
        .map(|(who, _)| who);
    let Some(mut holder) = held_by else { return Ok(Some(end)) };
    tracing::info!(partition, holder, ttl_ms = config.ttl.as_millis() as u64, "shard lease held; waiting");
    let mut reader = bus.reader(Topic::Leases, partition, end)?;
    let mut records = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        records.clear();
        if reader.poll(&mut records, 256, Duration::from_millis(200))? > 0 {
            quiet_since = Instant::now();
            match records.last().and_then(parse) {
                Some((_, Kind::Release)) => return Ok(Some(reader.position())),
                Some((who, _)) if who != holder => {
                    tracing::info!(partition, holder = who, "shard lease changed hands; waiting");
                    holder = who;
                }
                _ => {}
            }
        } else if quiet_since.elapsed() >= config.ttl {
            tracing::warn!(partition, holder, "shard lease expired (no renewal); taking over");
            return Ok(Some(reader.position()));
        }
    }
}

/// The owner's renewal loop.
fn renew(
    bus: &dyn Backbone,
    partition: u32,
    owner: &str,
    mut checked: u64,
    config: LeaseConfig,
    lost: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut next = Instant::now() + config.renew_every;
    while !stop.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        next = Instant::now() + config.renew_every;
        let result = append(bus, partition, owner, Kind::Renew)
            .and_then(|mine| read(bus, partition, checked, mine).map(|records| (mine, records)));
        match result {
            Ok((mine, records)) => {
                if foreign_claim(&records, owner) {
                    tracing::error!(partition, "another engine took this shard's lease; stopping the shard");
                    lost.store(true, Ordering::Release);
                    return;
                }
                checked = mine + 1;
            }
            // The broker away: nobody else can claim meanwhile either; try again.
            Err(error) => tracing::warn!(partition, %error, "cannot renew the shard lease; retrying"),
        }
    }
}

impl Lease {
    /// Set once another engine took the lease: the shard must stop.
    pub fn lost(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.lost)
    }
}

impl Drop for Lease {
    /// Stops renewing and releases the lease (unless it was lost), so a successor starts at
    /// once.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if !self.lost.load(Ordering::Acquire) {
            if let Err(error) = append(self.bus.as_ref(), self.partition, &self.owner, Kind::Release) {
                tracing::warn!(partition = self.partition, %error, "cannot release the shard lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_bus::{EmbeddedBus, EmbeddedConfig};

    fn quick() -> LeaseConfig {
        LeaseConfig { ttl: Duration::from_millis(400), renew_every: Duration::from_millis(50) }
    }

    #[test]
    fn one_owner_at_a_time_release_hands_over_at_once_a_dead_owner_after_the_ttl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Backbone> = Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 1)).expect("opens"));
        let never = AtomicBool::new(false);
        let first = acquire(&bus, 0, "a", quick(), &never).expect("acquires").expect("not stopped");

        // A second engine waits while the first renews.
        let stop_b = Arc::new(AtomicBool::new(false));
        let waiting = {
            let (bus, stop_b) = (Arc::clone(&bus), Arc::clone(&stop_b));
            std::thread::spawn(move || acquire(&bus, 0, "b", quick(), &stop_b).expect("waits").is_some())
        };
        std::thread::sleep(Duration::from_millis(1_000));
        assert!(!waiting.is_finished(), "b waits while a renews");
        assert!(!first.lost().load(Ordering::Acquire));
        stop_b.store(true, Ordering::Release);
        assert!(!waiting.join().expect("joins"), "stopped while waiting");

        // A release hands over without waiting for the ttl.
        drop(first);
        let started = Instant::now();
        let second = acquire(&bus, 0, "b", LeaseConfig { ttl: Duration::from_secs(30), ..quick() }, &never)
            .expect("acquires")
            .expect("not stopped");
        assert!(started.elapsed() < Duration::from_secs(10), "no ttl wait after a release");

        // A dead owner (renewals stop without a release): taken after the ttl.
        second.stop.store(true, Ordering::Release);
        let mut second = second;
        if let Some(r) = second.renewer.take() {
            r.join().expect("joins");
        }
        second.lost.store(true, Ordering::Release); // Drop writes no release: a crash.
        drop(second);
        let started = Instant::now();
        let third = acquire(&bus, 0, "c", quick(), &never).expect("acquires").expect("not stopped");
        assert!(started.elapsed() >= quick().ttl, "waited for the ttl");
        drop(third);
    }

    #[test]
    fn an_owner_that_stalled_past_the_ttl_learns_it_lost_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Backbone> = Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 1)).expect("opens"));
        let never = AtomicBool::new(false);
        // `a` holds the lease but renews far too rarely (a stalled process).
        let slow = LeaseConfig { ttl: Duration::from_millis(300), renew_every: Duration::from_secs(2) };
        let a = acquire(&bus, 0, "a", slow, &never).expect("acquires").expect("not stopped");
        let b = acquire(&bus, 0, "b", quick(), &never).expect("acquires").expect("not stopped");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !a.lost().load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "a never noticed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!b.lost().load(Ordering::Acquire), "b keeps it");
    }
}
