//! Property tests: the engine against the reference model, on random command streams.
//!
//! Each stream mixes every command and order kind over two symbols, three accounts and a
//! narrow price band (so orders cross, self-trade, collide on client ids and hit the
//! open-order limit often), plus invalid commands. After every command the two must have
//! emitted identical events and hold identical state, and the engine's invariants must
//! hold. Snapshot → restore (through rkyv bytes) → replay must reproduce the same events
//! and state hash as the uninterrupted run.

mod common;

use common::{acct, config};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tachyon_engine::reference::ReferenceEngine;
use tachyon_engine::{Engine, EngineSnapshot, Event};
use tachyon_proto::command::CancelAllCause;
use tachyon_proto::{
    Amend, Cancel, CancelAll, ClientOrderId, Command, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention,
    Side, SymbolId, TimeInForce, Timestamp,
};

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const MAX_OPEN: u32 = 6;

/// Raw randomness for one command; [`build`] turns a list of these into commands so that
/// order ids stay sequential and cancels/amends can name earlier orders.
type Seed = (u8, u8, u8, u8, u8, u8, u8);

fn seeds(max_len: usize) -> impl Strategy<Value = Vec<Seed>> {
    proptest::collection::vec(any::<Seed>(), 1..max_len)
}

fn build(seeds: &[Seed]) -> Vec<Command> {
    let mut next_id = 1u64;
    let mut cmds = Vec::with_capacity(seeds.len());
    for (i, &(kind, a, b, c, d, e, f)) in seeds.iter().enumerate() {
        let account = acct(ACCOUNTS[usize::from(a) % ACCOUNTS.len()]);
        let timestamp = Timestamp(i as i64);
        // An earlier order id (or occasionally one never issued).
        let earlier = OrderId(u64::from(b) % (next_id + 1) + u64::from(b % 17 == 0) * 1000);
        let cmd = match kind % 20 {
            0..=11 => {
                let order_type = if c % 10 == 0 { OrderType::Market } else { OrderType::Limit };
                let time_in_force = match d % 8 {
                    0 => TimeInForce::Ioc,
                    1 => TimeInForce::Fok,
                    _ if order_type == OrderType::Market => TimeInForce::Ioc,
                    _ => TimeInForce::Gtc,
                };
                let side = if c & 1 == 0 { Side::Buy } else { Side::Sell };
                // Buys cluster a little lower than sells so books build up and also cross.
                let base = if side == Side::Buy { 98 } else { 102 };
                let mut price = Some(Price(base + i64::from(e % 9) - 4));
                if order_type == OrderType::Market && f % 13 != 0 {
                    price = None;
                }
                if f % 37 == 0 {
                    price = Some(Price(0));
                }
                let qty = match f % 23 {
                    0 => 0,
                    1 => 51,
                    2 => 45, // notional above 4,000 at prices ≥ 89
                    _ => u64::from(f % 12) + 1,
                };
                let client_order_id = match d % 5 {
                    0 => Some(ClientOrderId::parse("c1").expect("valid")),
                    1 => Some(ClientOrderId::parse("c2").expect("valid")),
                    _ => None,
                };
                let stp = match a / 3 % 4 {
                    0 => SelfTradePrevention::CancelNewest,
                    1 => SelfTradePrevention::CancelOldest,
                    2 => SelfTradePrevention::CancelBoth,
                    _ => SelfTradePrevention::None,
                };
                let order_id = if f % 41 == 0 { earlier } else { OrderId(next_id) };
                next_id += 1;
                Command::New(NewOrder {
                    order_id,
                    account,
                    symbol: if e % 4 == 0 {
                        SymbolId(2)
                    } else if e == 255 {
                        SymbolId(9)
                    } else {
                        SymbolId(1)
                    },
                    side,
                    order_type,
                    time_in_force,
                    post_only: d % 6 == 0,
                    stp,
                    price,
                    qty: Qty(qty),
                    client_order_id,
                    timestamp,
                })
            }
            12..=15 => Command::Cancel(Cancel { order_id: earlier, account, timestamp }),
            16..=18 => Command::Amend(Amend {
                order_id: earlier,
                account,
                price: (c % 3 != 0).then(|| Price(96 + i64::from(e % 9))),
                qty: (d % 3 != 0).then(|| Qty(u64::from(f % 14))),
                timestamp,
            }),
            _ => Command::CancelAll(CancelAll {
                account,
                symbol: match c % 4 {
                    0 => None,
                    1 => Some(SymbolId(2)),
                    2 => Some(SymbolId(7)),
                    _ => Some(SymbolId(1)),
                },
                cause: if d & 1 == 0 { CancelAllCause::Request } else { CancelAllCause::Disconnect },
                timestamp,
            }),
        };
        cmds.push(cmd);
    }
    cmds
}

fn run_engine(engine: &mut Engine, cmds: &[Command]) -> Vec<Event> {
    let mut out = Vec::new();
    for cmd in cmds {
        engine.process(cmd, &mut out);
    }
    out
}

/// Runs both engines over `cmds`, requiring identical events after every command, the
/// engine's invariants, and identical final state.
fn assert_matches_reference(config: &tachyon_engine::EngineConfig, cmds: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(config.clone());
    let mut reference = ReferenceEngine::new(config.clone());
    for (i, cmd) in cmds.iter().enumerate() {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        engine.process(cmd, &mut fast);
        reference.process(cmd, &mut slow);
        prop_assert_eq!(&fast, &slow, "events differ at command {}: {:?}", i, cmd);
        if let Err(e) = engine.check_invariants() {
            return Err(TestCaseError::fail(format!("invariant broken after command {i} {cmd:?}: {e}")));
        }
    }
    prop_assert_eq!(engine.snapshot(), reference.snapshot());
    prop_assert_eq!(engine.state_hash(), reference.snapshot().state_hash());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_reference(seeds in seeds(300)) {
        assert_matches_reference(&config(MAX_OPEN), &build(&seeds))?;
    }

    #[test]
    fn snapshot_restore_replay_reproduces_the_run(seeds in seeds(300), cut in any::<prop::sample::Index>()) {
        let cmds = build(&seeds);
        let cut = cut.index(cmds.len() + 1);
        let mut whole = Engine::new(config(MAX_OPEN));
        let events = run_engine(&mut whole, &cmds);

        let mut first = Engine::new(config(MAX_OPEN));
        let mut replayed = run_engine(&mut first, &cmds[..cut]);
        let bytes = first.snapshot().to_bytes().expect("serialises");
        let snapshot = EngineSnapshot::from_bytes(&bytes).expect("round-trips");
        prop_assert_eq!(&snapshot, &first.snapshot());
        let mut restored = Engine::restore(config(MAX_OPEN), &snapshot).expect("restores");
        prop_assert_eq!(restored.state_hash(), first.state_hash());
        replayed.extend(run_engine(&mut restored, &cmds[cut..]));
        prop_assert_eq!(replayed, events);
        prop_assert_eq!(restored.state_hash(), whole.state_hash());
        prop_assert_eq!(restored.snapshot(), whole.snapshot());
    }

    #[test]
    fn corrupt_snapshots_are_errors_not_panics(seeds in seeds(60), flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4)) {
        let mut engine = Engine::new(config(MAX_OPEN));
        run_engine(&mut engine, &build(&seeds));
        let mut bytes = engine.snapshot().to_bytes().expect("serialises");
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if let Ok(snapshot) = EngineSnapshot::from_bytes(&bytes) {
            // Structurally valid but possibly inconsistent: restore must check, not panic.
            let _ = Engine::restore(config(MAX_OPEN), &snapshot);
        }
        let _ = EngineSnapshot::from_bytes(&bytes[..bytes.len() / 2]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn batches_behave_exactly_like_single_commands(seeds in seeds(300), batch in 1usize..40) {
        let cmds = build(&seeds);
        let mut single = Engine::new(config(MAX_OPEN));
        let expected = run_engine(&mut single, &cmds);
        let mut batched = Engine::new(config(MAX_OPEN));
        let mut events = Vec::new();
        for chunk in cmds.chunks(batch) {
            batched.process_batch(chunk, &mut events);
        }
        prop_assert_eq!(events, expected);
        prop_assert_eq!(batched.snapshot(), single.snapshot());
    }
}

/// Prices far apart: clusters 200,000 ticks apart (beyond the ladder's 65,536-tick
/// window), occasional prices near `i64::MAX`, on a symbol whose notional limit allows them.
fn wide_config() -> tachyon_engine::EngineConfig {
    use tachyon_proto::symbol::SymbolDef;
    let def = SymbolDef {
        id: 1,
        name: "WIDE-USD",
        tick_size: "1",
        lot_size: "1",
        min_quantity: "1",
        max_quantity: "50",
        max_notional: "1000000000000000000000000",
    };
    tachyon_engine::EngineConfig {
        symbols: vec![tachyon_proto::SymbolSpec::from_def(&def).expect("valid")],
        limits: tachyon_engine::RiskLimits { max_open_orders: 40 },
    }
}

fn wide_price(a: u8, b: u8) -> Price {
    match a % 16 {
        0 => Price(i64::MAX - i64::from(b % 4)),
        1 => Price(1 + i64::from(b % 4)),
        n => Price(1_000_000 + 200_000 * i64::from(n % 3) + i64::from(b % 16) - 8),
    }
}

fn build_wide(seeds: &[Seed]) -> Vec<Command> {
    let mut cmds = build(seeds);
    for (cmd, &(_, a, b, ..)) in cmds.iter_mut().zip(seeds) {
        match cmd {
            Command::New(n) => {
                n.symbol = SymbolId(1);
                if n.price.is_some_and(|p| p.0 > 0) {
                    n.price = Some(wide_price(a ^ b, b));
                }
            }
            Command::Amend(m) => m.price = m.price.map(|_| wide_price(b, a)),
            Command::CancelAll(c) => c.symbol = c.symbol.map(|_| SymbolId(1)),
            Command::Cancel(_) => {}
        }
    }
    cmds
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference_with_prices_far_apart(seeds in seeds(300)) {
        assert_matches_reference(&wide_config(), &build_wide(&seeds))?;
    }
}

#[test]
fn the_generator_reaches_every_outcome() {
    // Guard against a vacuous property: the random streams must actually produce every
    // event kind, every reject reason and every cancel reason.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;
    let mut runner = TestRunner::deterministic();
    let (mut kinds, mut rejects, mut cancels) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut priority_kept = BTreeSet::new();
    for _ in 0..200 {
        let seeds = seeds(300).new_tree(&mut runner).expect("strategy works").current();
        let mut engine = Engine::new(config(MAX_OPEN));
        for e in run_engine(&mut engine, &build(&seeds)) {
            let kind = match e {
                Event::Accepted(_) => "accepted",
                Event::Rejected(r) => {
                    rejects.insert(r.reason.as_str());
                    "rejected"
                }
                Event::Trade(_) => "trade",
                Event::Cancelled(c) => {
                    cancels.insert(c.reason.as_str());
                    "cancelled"
                }
                Event::Amended(a) => {
                    priority_kept.insert((a.priority_kept, a.remaining.0 == 0));
                    "amended"
                }
                Event::Level(_) => "level",
                Event::Bbo(_) => "bbo",
            };
            kinds.insert(kind);
        }
    }
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert_eq!(rejects.len(), 13, "{rejects:?}");
    assert_eq!(cancels.len(), 7, "{cancels:?}");
    assert_eq!(priority_kept.len(), 3, "{priority_kept:?}");
}

#[test]
fn the_wide_generator_reaches_far_and_extreme_prices() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut far_levels, mut extreme_levels, mut far_trades, mut low_trades) = (0, 0, 0, 0);
    for _ in 0..100 {
        let seeds = seeds(300).new_tree(&mut runner).expect("strategy works").current();
        let mut engine = Engine::new(wide_config());
        for e in run_engine(&mut engine, &build_wide(&seeds)) {
            match e {
                Event::Level(l) if l.price.0 >= 1_400_000 && l.price.0 < 2_000_000 => far_levels += 1,
                Event::Level(l) if l.price.0 > i64::MAX - 8 => extreme_levels += 1,
                Event::Trade(t) if t.price.0 >= 1_400_000 => far_trades += 1,
                Event::Trade(t) if t.price.0 < 8 => low_trades += 1,
                _ => {}
            }
        }
    }
    assert!(far_levels > 100 && extreme_levels > 10, "{far_levels} far, {extreme_levels} extreme levels");
    assert!(far_trades > 10 && low_trades > 10, "{far_trades} far, {low_trades} low trades");
}
