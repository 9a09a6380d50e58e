//! Property tests: the risk core against its reference model, with the real matching
//! engine between them.
//!
//! Each stream interleaves deposits and withdrawals (transfer ids collide on purpose),
//! funded and unfunded orders of every kind over two symbols, cancels, amends up and
//! down, and replays of earlier settlement batches. Orders the risk core forwards go to a
//! real [`Engine`]; its events come back as settlements, split over one or two risk
//! shards. After every input the core and the reference hold identical state, every hold
//! equals the sum of its orders', and the conservation law holds per shard (with what
//! trades moved between shards) and over all shards together. A snapshot taken midway,
//! restored through bytes and fed the rest of the stream reaches the same state hash.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tachyon_engine::{Engine, EngineConfig, RiskLimits};
use tachyon_proto::symbol::SymbolDef;
use tachyon_proto::{
    AccountId, Amend, Cancel, Command, Event, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side,
    SymbolId, SymbolSpec, TimeInForce, Timestamp,
};
use tachyon_risk::reference::ReferenceRisk;
use tachyon_risk::snapshot::HoldSnapshot;
use tachyon_risk::{
    risk_partition_for, settlements_for, AmendHold, Asset, AssetId, FeeRates, FeeTier, OrderHold, Outcome, Request,
    Risk, RiskConfig, RiskSnapshot, Settlement, Transfer, TransferId, TransferKind,
};

const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// The highest limit price the streams use (market-buy funds are sized from it).
const MAX_PRICE: i64 = 110;

fn acct(name: &str) -> AccountId {
    AccountId::parse(name).expect("valid account")
}

fn symbols() -> Vec<SymbolSpec> {
    let def = |id, name| SymbolDef {
        id,
        name,
        tick_size: "1",
        lot_size: "1",
        min_quantity: "1",
        max_quantity: "50",
        max_notional: "10000",
    };
    vec![
        SymbolSpec::from_def(&def(1, "AAA-USD")).expect("valid"),
        SymbolSpec::from_def(&def(2, "BBB-USD")).expect("valid"),
    ]
}

/// Whole units of AAA and BBB; USD on `usd_scale` decimal places (0 makes every fee round).
fn config(usd_scale: u32, partition: u32, partitions: u32) -> RiskConfig {
    let assets = [
        Asset { name: "AAA".into(), scale: 0 },
        Asset { name: "BBB".into(), scale: 1 },
        Asset { name: "USD".into(), scale: usd_scale },
    ];
    let fees = [FeeRates { maker_bps: 10, taker_bps: 25 }, FeeRates { maker_bps: 0, taker_bps: 7 }];
    let tiers = [FeeTier { accounts: vec![acct("carol")], rates: FeeRates { maker_bps: 0, taker_bps: 5 } }];
    RiskConfig::build(&assets, &symbols(), &fees, &tiers, partition, partitions).expect("valid risk config")
}

/// One risk shard under test: the core, its reference, and (after the cut) the core
/// restored from a snapshot.
struct Shard {
    risk: Risk,
    reference: ReferenceRisk,
    restored: Option<Risk>,
    /// The state at the last check (to verify the reported balance changes).
    last: Option<RiskSnapshot>,
}

impl Shard {
    fn request(&mut self, r: &Request) -> Outcome {
        let got = self.risk.request(r);
        assert_eq!(got, self.reference.request(r), "outcome of {r:?}");
        if let Some(restored) = &mut self.restored {
            assert_eq!(restored.request(r), got, "restored outcome of {r:?}");
        }
        got
    }

    fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome {
        let got = self.risk.settle(partition, seq, batch);
        assert_eq!(got, self.reference.settle(partition, seq, batch), "settlement {seq}");
        if let Some(restored) = &mut self.restored {
            assert_eq!(restored.settle(partition, seq, batch), got);
        }
        got
    }

    fn check(&mut self) -> RiskSnapshot {
        let snap = self.risk.snapshot();
        // Every balance that changed is reported once, with its new value.
        let (mut updates, mut fees) = (Vec::new(), Vec::new());
        self.risk.drain_changes(&mut updates, &mut fees);
        let balance_of = |s: &RiskSnapshot, id: AccountId, asset: AssetId| {
            s.accounts.iter().find(|a| a.id == id).and_then(|a| a.balances.iter().find(|b| b.0 == asset)).map(|b| b.1)
        };
        for u in &updates {
            let now = balance_of(&snap, u.account, AssetId(u.asset)).expect("a reported balance exists");
            assert_eq!((now.available, now.hold), (u.available, u.hold), "reported as it is");
        }
        for a in &snap.accounts {
            for &(asset, b) in &a.balances {
                let before = self.last.as_ref().and_then(|l| balance_of(l, a.id, asset));
                if before != Some(b) && b != tachyon_risk::Balance::default() {
                    assert!(
                        updates.iter().any(|u| u.account == a.id && u.asset == asset.0),
                        "change of {} reported",
                        a.id
                    );
                }
            }
        }
        self.last = Some(snap.clone());
        assert_eq!(snap, self.reference.snapshot(), "core and reference differ");
        snap.check_conservation().expect("conservation per shard");
        let config = self.risk.config();
        let held_asset = |o: &HoldSnapshot| {
            let m = &config.markets[usize::from(config.market_of(o.symbol)?)];
            Some(if o.side == Side::Buy { m.quote } else { m.base })
        };
        snap.check_holds(held_asset).expect("holds match orders");
        for l in &snap.ledger {
            assert_eq!(l.overdraft, 0, "market buys never overspend their funds");
        }
        snap
    }
}

type Seed = (u8, u8, u8, u8, u8, u8);

struct Run {
    shards: Vec<Shard>,
    engine: Engine,
    /// Every settlement batch sent: (seq, per-shard batch), for replays.
    sent: Vec<(u64, Vec<Vec<Settlement>>)>,
    seq: u64,
    next_order: u64,
    events: Vec<Event>,
    transfers: Vec<Transfer>,
    /// USD units per tick·lot.
    usd_per_unit: u64,
    /// Order id − 1 → its account.
    owners: Vec<AccountId>,
    /// How often each request outcome came up (for the coverage test).
    outcomes: std::collections::BTreeMap<String, usize>,
}

impl Run {
    fn new(usd_scale: u32, partitions: u32) -> Self {
        let shards = (0..partitions)
            .map(|p| Shard {
                risk: Risk::new(config(usd_scale, p, partitions)),
                reference: ReferenceRisk::new(config(usd_scale, p, partitions)),
                restored: None,
                last: None,
            })
            .collect();
        let engine = Engine::new(EngineConfig { symbols: symbols(), limits: RiskLimits { max_open_orders: 8 } });
        Self {
            shards,
            engine,
            sent: Vec::new(),
            seq: 0,
            next_order: 1,
            events: Vec::new(),
            transfers: Vec::new(),
            owners: Vec::new(),
            usd_per_unit: 10u64.pow(usd_scale),
            outcomes: std::collections::BTreeMap::new(),
        }
    }

    /// Sends `request` to its account's shard.
    fn request(&mut self, account: AccountId, request: &Request) -> Outcome {
        let p = risk_partition_for(account, self.shards.len() as u32);
        let outcome = self.shards[p as usize].request(request);
        let kind = match (request, outcome) {
            (_, Outcome::Transferred { replayed: true, .. }) => "transfer replayed".to_owned(),
            (Request::Transfer(t), Outcome::Transferred { .. }) => format!("{:?} Transferred", t.kind),
            (Request::Transfer(t), o) => format!("{:?} {o:?}", t.kind),
            (Request::Order(o), Outcome::Forward) if o.funds.is_some() => "market buy forwarded".to_owned(),
            (Request::Order(_), o) => format!("order {o:?}"),
            (Request::Amend(_), o) => format!("amend {o:?}"),
        };
        *self.outcomes.entry(kind).or_default() += 1;
        outcome
    }

    /// Runs `command` through the engine and settles its events on every shard.
    fn match_and_settle(&mut self, command: &Command) {
        self.events.clear();
        self.engine.process(command, &mut self.events);
        self.seq += 1;
        let partitions = self.shards.len() as u32;
        let mut batches = Vec::new();
        for (p, shard) in self.shards.iter_mut().enumerate() {
            let mut batch = Vec::new();
            settlements_for(&self.events, p as u32, partitions, &mut batch);
            assert_eq!(shard.settle(0, self.seq, &batch), Outcome::Settled);
            batches.push(batch);
        }
        self.sent.push((self.seq, batches));
    }

    fn step(&mut self, i: usize, &(kind, a, b, c, d, e): &Seed) {
        let seed_kind = kind % 16;
        let account = acct(ACCOUNTS[usize::from(a) % ACCOUNTS.len()]);
        let timestamp = Timestamp(i as i64);
        // Mostly one of the last few orders (likely still open), sometimes any earlier one.
        let earlier = if c % 4 == 0 {
            OrderId(u64::from(b) % self.next_order + 1)
        } else {
            OrderId(self.next_order.saturating_sub(u64::from(b % 4) + 1).max(1))
        };
        match kind % 16 {
            0..=2 => {
                let asset = AssetId(u16::from(c % 3));
                let kind = if kind % 16 == 1 { TransferKind::Withdrawal } else { TransferKind::Deposit };
                // A few orders' worth: sizes that run out now and then.
                let amount = match asset.0 {
                    0 => u64::from(d) / 4 + u64::from(e % 3) * 20,
                    1 => u64::from(d) * 2 + u64::from(e % 3) * 200,
                    _ => (u64::from(d) * 10 + u64::from(e % 3) * 1_000) * self.usd_per_unit,
                };
                let transfer_id = TransferId::parse(&format!("t{i}")).expect("valid id");
                let mut t = Transfer { kind, transfer_id, account, asset, amount };
                if seed_kind == 2 && !self.transfers.is_empty() {
                    // An earlier transfer again: as it was (a retry), or changed.
                    t = self.transfers[usize::from(b) % self.transfers.len()];
                    if d % 2 == 1 {
                        t.amount += 1;
                    }
                }
                self.transfers.push(t);
                self.request(account, &Request::Transfer(t));
            }
            3..=10 => {
                let side = if c & 1 == 0 { Side::Buy } else { Side::Sell };
                let symbol = SymbolId(u32::from(c >> 1 & 1) + 1);
                let market = d % 7 == 0;
                let qty = Qty(u64::from(e % 12) + 1);
                let base = if side == Side::Buy { 98 } else { 102 };
                let price = (!market).then(|| Price((base + i64::from(b % 9) - 4).min(MAX_PRICE)));
                let funds = (market && side == Side::Buy).then(|| {
                    // Enough for the whole quantity at the band's top, fees included.
                    let notional = MAX_PRICE as u64 * qty.0 * self.usd_per_unit;
                    notional + notional.div_ceil(100) + u64::from(d)
                });
                let time_in_force = match d % 5 {
                    _ if market => TimeInForce::Ioc,
                    0 => TimeInForce::Ioc,
                    1 => TimeInForce::Fok,
                    _ => TimeInForce::Gtc,
                };
                let stp = match a / 4 % 3 {
                    0 => SelfTradePrevention::CancelNewest,
                    1 => SelfTradePrevention::CancelOldest,
                    _ => SelfTradePrevention::CancelBoth,
                };
                let order_id = OrderId(self.next_order);
                self.next_order += 1;
                self.owners.push(account);
                let hold = OrderHold { order_id, account, symbol, side, price, qty, funds };
                if self.request(account, &Request::Order(hold)) != Outcome::Forward {
                    return;
                }
                let order_type = if market { OrderType::Market } else { OrderType::Limit };
                let new = NewOrder {
                    order_id,
                    account,
                    symbol,
                    side,
                    order_type,
                    time_in_force,
                    post_only: d % 11 == 3 && !market,
                    stp,
                    price,
                    qty,
                    client_order_id: None,
                    timestamp,
                };
                self.match_and_settle(&Command::New(new));
            }
            11..=13 => {
                let price = (c % 3 != 0).then(|| Price(96 + i64::from(d % 12)));
                let qty = (c % 3 != 1).then(|| Qty(if e % 5 == 0 { 45 } else { u64::from(e % 14) }));
                // Mostly the order's owner; sometimes another account.
                let owner = self.owners.get(earlier.0 as usize - 1).copied();
                let account = if a % 5 == 0 { account } else { owner.unwrap_or(account) };
                let amend = AmendHold { order_id: earlier, account, price, qty };
                if self.request(account, &Request::Amend(amend)) != Outcome::Forward {
                    return;
                }
                self.match_and_settle(&Command::Amend(Amend { order_id: earlier, account, price, qty, timestamp }));
            }
            14 => {
                self.match_and_settle(&Command::Cancel(Cancel { order_id: earlier, account, timestamp }));
            }
            _ => {
                // A hop replayed: an earlier settlement batch again changes nothing.
                if self.sent.is_empty() {
                    return;
                }
                let (seq, batches) = self.sent[usize::from(b) % self.sent.len()].clone();
                for (shard, batch) in self.shards.iter_mut().zip(&batches) {
                    assert_eq!(shard.settle(0, seq, batch), Outcome::Duplicate);
                }
            }
        }
    }

    /// Conservation over every shard: what trades moved between shards cancels out.
    fn check(&mut self) {
        let snaps: Vec<RiskSnapshot> = self.shards.iter_mut().map(Shard::check).collect();
        let assets = snaps[0].ledger.len();
        for asset in 0..assets {
            let (mut held, mut moved_in, mut moved_out, mut net) = (0i128, 0u128, 0u128, 0i128);
            for s in &snaps {
                let (h, _) = s.conservation()[asset];
                held += h;
                let l = &s.ledger[asset];
                moved_in += l.transit_in;
                moved_out += l.transit_out;
                net += l.deposits as i128 - l.withdrawals as i128 - i128::from(l.fees);
            }
            assert_eq!(moved_in, moved_out, "asset {asset}: in transit between shards after a whole step");
            assert_eq!(held, net, "asset {asset}: global conservation");
        }
    }
}

fn run(seeds: &[Seed], usd_scale: u32, partitions: u32, cut: usize) {
    let mut run = Run::new(usd_scale, partitions);
    for (i, seed) in seeds.iter().enumerate() {
        if i == cut {
            for shard in &mut run.shards {
                let bytes = shard.risk.snapshot().to_bytes().expect("serialises");
                let snap = RiskSnapshot::from_bytes(&bytes).expect("reads back");
                let restored = Risk::restore(shard.risk.config().clone(), &snap).expect("restores");
                assert_eq!(restored.snapshot().hash(), snap.hash());
                shard.restored = Some(restored);
            }
        }
        run.step(i, seed);
        run.check();
    }
    for shard in &run.shards {
        if let Some(restored) = &shard.restored {
            assert_eq!(restored.snapshot().hash(), shard.risk.snapshot().hash(), "restore + replay");
        }
    }
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn core_and_reference_agree_and_conserve_funds(
        seeds in proptest::collection::vec(any::<Seed>(), 1..400),
        usd_scale in prop_oneof![Just(0u32), Just(2u32)],
        partitions in 1u32..=2,
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(seeds.len());
        run(&seeds, usd_scale, partitions, cut);
    }
}

/// The streams reach every rule: funded and refused orders, fills with fees, amends that
/// reserve, replays, and trades across shards.
#[test]
fn streams_cover_every_path() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let seeds: Vec<Seed> = (0..4000)
        .map(|_| {
            let r = next().to_le_bytes();
            (r[0], r[1], r[2], r[3], r[4], r[5])
        })
        .collect();
    let mut run = Run::new(0, 2);
    for (i, seed) in seeds.iter().enumerate() {
        run.step(i, seed);
        run.check();
    }
    let snaps: Vec<RiskSnapshot> = run.shards.iter().map(|s| s.risk.snapshot()).collect();
    let fees: u64 = snaps.iter().map(|s| s.ledger[2].fees).sum();
    let transit: u128 = snaps.iter().map(|s| s.ledger[2].transit_in).sum();
    let trades = run.sent.iter().flat_map(|(_, b)| b.iter().flatten()).filter(|s| matches!(s, Settlement::Fill(_)));
    assert!(trades.count() > 100, "trades happen");
    assert!(fees > 0, "fees are charged");
    assert!(transit > 0, "trades cross risk shards");
    for kind in [
        "Deposit Transferred",
        "Withdrawal Transferred",
        "Withdrawal Rejected(InsufficientFunds)",
        "transfer replayed",
        "Deposit Rejected(DuplicateTransferId)",
        "order Forward",
        "order Rejected(InsufficientFunds)",
        "market buy forwarded",
        "amend Forward",
        "amend Rejected(InsufficientFunds)",
        "amend Rejected(NotOrderOwner)",
    ] {
        assert!(run.outcomes.get(kind).copied().unwrap_or(0) > 0, "{kind} never happens: {:?}", run.outcomes);
    }
    let settled =
        |f: fn(&Settlement) -> bool| run.sent.iter().flat_map(|(_, b)| b.iter().flatten()).filter(|s| f(s)).count();
    assert!(settled(|s| matches!(s, Settlement::Amended { .. })) > 10, "amends take effect");
    assert!(settled(|s| matches!(s, Settlement::Rejected { .. })) > 10, "matching rejects");
    assert!(settled(|s| matches!(s, Settlement::Cancelled { .. })) > 10, "cancels release");
}
