//! Shard leases: at most one engine process runs a shard at a time (distributed mode).
//!
//! Each shard's partition of `tachyon.leases` is a log of JSON records
//! `{"owner": …, "kind": "claim", "after": offset}` (where the claimant saw the lease
//! free) and `{"owner": …, "kind": "renew" | "release", "claim": offset}` (the offset of the
//! owner's claim). The broker orders them, which makes the log a lock:
//! - **Waiting.** A shard whose last lease record is a claim or renewal by someone else
//!   waits until that owner writes a release, or until no record at all has arrived for
//!   `ttl` (measured on the waiter's own clock, so clocks need not agree). Meanwhile it is a
//!   hot standby: a second engine started for the same shard waits here.
//! - **Claiming.** The waiter appends a claim, then reads what was appended between the
//!   point where it saw the lease free and its own claim: the first claim of that round
//!   wins; a loser goes back to waiting, with the winner as the holder.
//! - **Holding.** The owner appends a renewal every `renew_every` and checks what was
//!   appended since its last look: another owner's claim made after it saw this owner's
//!   claim (its `after` beyond that claim, so not a loser of the same round) means the lease
//!   was taken (this process stalled for longer than `ttl`), and [`Lease::lost`] is set so the shard stops
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

impl LeaseConfig {
    /// Expiry after `ttl`, renewed five times per `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl, renew_every: (ttl / 5).max(Duration::from_millis(1)) }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::with_ttl(Duration::from_secs(5))
    }
}

/// A held lease; renewed by a thread until dropped (which releases it).
pub struct Lease {
    bus: Arc<dyn Backbone>,
    partition: u32,
    owner: String,
    /// Offset of this owner's claim.
    claimed: u64,
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

/// One lease record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    owner: String,
    kind: Kind,
    /// Claims: the offset from which the claimant saw the lease free.
    after: u64,
    /// Renewals and releases: the offset of the owner's claim; claims: their own offset.
    claim: u64,
    /// Where it is in the partition.
    offset: u64,
}

/// The lease record in `record`; `None` for anything else (skipped).
fn parse(record: &Record) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_slice(&record.payload).ok()?;
    let kind = match value["kind"].as_str()? {
        "claim" => Kind::Claim,
        "renew" => Kind::Renew,
        "release" => Kind::Release,
        _ => return None,
    };
    let claim = if kind == Kind::Claim { record.offset } else { value["claim"].as_u64()? };
    Some(Entry {
        owner: value["owner"].as_str()?.to_string(),
        kind,
        after: value["after"].as_u64().unwrap_or(0),
        claim,
        offset: record.offset,
    })
}

/// Appends a lease record and waits for the broker; returns its offset. `at`: a claim's
/// `after`, a renewal's or release's `claim`.
fn append(bus: &dyn Backbone, partition: u32, owner: &str, kind: Kind, at: u64) -> Result<u64, BusError> {
    let field = if kind == Kind::Claim { "after" } else { "claim" };
    let record = serde_json::json!({"owner": owner, "kind": kind.name(), field: at}).to_string().into_bytes();
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

/// The first claim in `records` by someone else than `owner`.
fn first_foreign_claim(records: &[Record], owner: &str) -> Option<Entry> {
    records.iter().filter_map(parse).find(|e| e.owner != owner && e.kind == Kind::Claim)
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
    let Some(mut free_from) = wait_free(bus.as_ref(), partition, owner, config, stop)? else { return Ok(None) };
    loop {
        let mine = append(bus.as_ref(), partition, owner, Kind::Claim, free_from)?;
        let before = read(bus.as_ref(), partition, free_from, mine)?;
        if let Some(winner) = first_foreign_claim(&before, owner) {
            tracing::info!(partition, holder = winner.owner, "another engine claimed the shard first; waiting");
            free_from = match watch(bus.as_ref(), partition, mine + 1, winner, config, stop)? {
                Some(offset) => offset,
                None => return Ok(None),
            };
            continue;
        }
        tracing::info!(partition, owner, "shard lease taken");
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (bus, owner, lost, stop) = (Arc::clone(bus), owner.to_string(), Arc::clone(&lost), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("lease-{partition}"))
                .spawn(move || renew(bus.as_ref(), partition, &owner, mine, config, &lost, &stop))
                .map_err(|e| BusError::Unavailable(format!("cannot start the lease thread: {e}")))?
        };
        return Ok(Some(Lease {
            bus: Arc::clone(bus),
            partition,
            owner: owner.to_string(),
            claimed: mine,
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
    let held = last_record(bus, Topic::Leases, partition)?
        .and_then(|r| parse(&r))
        .filter(|e| e.kind != Kind::Release && e.owner != owner);
    match held {
        None => Ok(Some(end)),
        Some(holder) => watch(bus, partition, end, holder, config, stop),
    }
}

/// Watches the lease records from `from` while `holder` (a record of the current owner's)
/// holds the lease: returns where it fell free (the owner's release, or `ttl` without any
/// record), or `None` if `stop` was set. A claim made after its claimant saw the current
/// owner's claim is a new owner; older claims lost their round and change nothing.
fn watch(
    bus: &dyn Backbone,
    partition: u32,
    from: u64,
    mut holder: Entry,
    config: LeaseConfig,
    stop: &AtomicBool,
) -> Result<Option<u64>, BusError> {
    tracing::info!(
        partition,
        holder = holder.owner,
        ttl_ms = config.ttl.as_millis() as u64,
        "shard lease held; waiting"
    );
    let mut reader = bus.reader(Topic::Leases, partition, from)?;
    let mut records = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        records.clear();
        if reader.poll(&mut records, 256, Duration::from_millis(200))? > 0 {
            quiet_since = Instant::now();
            for e in records.iter().filter_map(parse) {
                let newer = match e.kind {
                    Kind::Claim => e.after > holder.claim,
                    Kind::Renew => e.claim > holder.claim,
                    Kind::Release if e.owner == holder.owner && e.claim == holder.claim => {
                        return Ok(Some(e.offset + 1));
                    }
                    Kind::Release => false,
                };
                if newer {
                    tracing::info!(partition, holder = e.owner, "shard lease changed hands; waiting");
                    holder = e;
                }
            }
        } else if quiet_since.elapsed() >= config.ttl {
            tracing::warn!(partition, holder = holder.owner, "shard lease expired (no renewal); taking over");
            return Ok(Some(reader.position()));
        }
    }
}

/// The owner's renewal loop; `claimed` is the offset of its claim.
fn renew(
    bus: &dyn Backbone,
    partition: u32,
    owner: &str,
    claimed: u64,
    config: LeaseConfig,
    lost: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut checked = claimed + 1;
    let mut next = Instant::now() + config.renew_every;
    while !stop.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        next = Instant::now() + config.renew_every;
        let result = append(bus, partition, owner, Kind::Renew, claimed)
            .and_then(|mine| read(bus, partition, checked, mine).map(|records| (mine, records)));
        match result {
            Ok((mine, records)) => {
                // A claim made after its claimant saw ours is a takeover; one from before
                // (`after` at or below our claim) lost the round we won.
                let taken = records
                    .iter()
                    .filter_map(parse)
                    .any(|e| e.owner != owner && e.kind == Kind::Claim && e.after > claimed);
                if taken {
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
            if let Err(error) = append(self.bus.as_ref(), self.partition, &self.owner, Kind::Release, self.claimed) {
                tracing::warn!(partition = self.partition, %error, "cannot release the shard lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_bus::{EmbeddedBus, EmbeddedConfig};

    /// Generous margins (a renewal every 100 ms, a 2 s TTL): a loaded CI machine must not
    /// starve a renewal past the TTL.
    fn quick() -> LeaseConfig {
        LeaseConfig { ttl: Duration::from_secs(2), renew_every: Duration::from_millis(100) }
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
        let slow = LeaseConfig { ttl: Duration::from_secs(2), renew_every: Duration::from_secs(8) };
        let a = acquire(&bus, 0, "a", slow, &never).expect("acquires").expect("not stopped");
        let b = acquire(&bus, 0, "b", quick(), &never).expect("acquires").expect("not stopped");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !a.lost().load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "a never noticed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!b.lost().load(Ordering::Acquire), "b keeps it");
    }

    #[test]
    fn of_two_engines_claiming_at_once_one_wins_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Backbone> = Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 1)).expect("opens"));
        let stop = Arc::new(AtomicBool::new(false));
        let racers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|owner| {
                let (bus, stop) = (Arc::clone(&bus), Arc::clone(&stop));
                std::thread::spawn(move || acquire(&bus, 0, owner, quick(), &stop).expect("acquires"))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1_500));
        let finished: Vec<bool> = racers.iter().map(JoinHandle::is_finished).collect();
        assert_eq!(finished.iter().filter(|f| **f).count(), 1, "exactly one holds the lease: {finished:?}");
        stop.store(true, Ordering::Release);
        let results: Vec<Option<Lease>> = racers.into_iter().map(|r| r.join().expect("joins")).collect();
        let winner = results.iter().flatten().next().expect("a winner");
        assert!(!winner.lost().load(Ordering::Acquire), "the loser's claim does not unseat the winner");
        assert_eq!(results.iter().flatten().count(), 1);
    }
}
