//! The funded machine (risk core in front of matching) on random streams of orders,
//! amends, cancels, deposits and withdrawals: the conservation law after every input;
//! the balances its outputs report, folded in order, equal the risk core's state; and a
//! snapshot taken midway, restored through bytes and fed the rest reaches the same
//! engine and risk state as the uninterrupted run, with the same outputs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tachyon_engine::{EngineConfig, RiskLimits};
use tachyon_proto::balance::{TransferId, TransferKind};
use tachyon_proto::symbol::DEFAULT_SYMBOLS;
use tachyon_proto::wire::{encode_output, CommandEnvelope, ShardOutput, TransferEnvelope};
use tachyon_proto::{
    AccountId, Amend, Cancel, Command, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side, SymbolId,
    SymbolSpec, TimeInForce, Timestamp,
};
use tachyon_risk::{FeeRates, RiskConfig};
use tachyon_runtime::{Funded, FundedInput, Machine, Outputs};

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];

fn machine() -> Funded {
    let symbols: Vec<SymbolSpec> =
        DEFAULT_SYMBOLS[..2].iter().map(|d| SymbolSpec::from_def(d).expect("valid")).collect();
    let fees = [FeeRates { maker_bps: 10, taker_bps: 20 }, FeeRates { maker_bps: 0, taker_bps: 7 }];
    let risk = RiskConfig::build(&[], &symbols, &fees, &[], 0, 1).expect("fits");
    Funded::new(EngineConfig { symbols, limits: RiskLimits::default() }, risk, 0)
}

fn inputs(seeds: &[(u8, u8, u8, u8)]) -> Vec<FundedInput> {
    let mut out = Vec::new();
    let mut next = 1u64;
    for (i, &(kind, a, b, c)) in seeds.iter().enumerate() {
        let account = AccountId::parse(ACCOUNTS[usize::from(a) % 3]).expect("valid");
        let timestamp = Timestamp(i as i64);
        let request_id = i as u64;
        let earlier = OrderId(next.saturating_sub(u64::from(b % 6) + 1).max(1));
        let command = match kind % 10 {
            0..=1 => {
                // BTC (asset 0), USD (1) or ETH (2); amounts sized to run out now and then.
                let asset = u16::from(c % 3);
                let amount = (u64::from(b) + 1) * if asset == 1 { 100_000_000_000 } else { 10_000_000 };
                let kind = if kind % 10 == 1 && c % 2 == 0 { TransferKind::Withdrawal } else { TransferKind::Deposit };
                let transfer_id = TransferId::parse(&format!("t{}", i % 97)).expect("valid");
                let t = TransferEnvelope {
                    request_id,
                    gateway_id: 1,
                    timestamp,
                    kind,
                    transfer_id,
                    account,
                    asset,
                    amount,
                };
                out.push(FundedInput::Transfer(t));
                continue;
            }
            2..=6 => {
                let side = if c % 2 == 0 { Side::Buy } else { Side::Sell };
                let symbol = SymbolId(u32::from(c / 2 % 2) + 1);
                let base = if symbol.0 == 1 { 3_000_000 } else { 200_000 };
                let price = Price(base + i64::from(b % 9) * 100 - 400);
                let market = b % 13 == 0 && side == Side::Sell;
                let order_id = OrderId(next);
                next += 1;
                Command::New(NewOrder {
                    order_id,
                    account,
                    symbol,
                    side,
                    order_type: if market { OrderType::Market } else { OrderType::Limit },
                    time_in_force: if market || c % 7 == 0 { TimeInForce::Ioc } else { TimeInForce::Gtc },
                    post_only: false,
                    stp: SelfTradePrevention::CancelNewest,
                    price: (!market).then_some(price),
                    qty: Qty(u64::from(b % 20 + 1) * 1_000),
                    client_order_id: None,
                    timestamp,
                })
            }
            7 => Command::Amend(Amend {
                order_id: earlier,
                account,
                price: None,
                qty: Some(Qty(u64::from(c % 30 + 1) * 1_000)),
                timestamp,
            }),
            _ => Command::Cancel(Cancel { order_id: earlier, account, timestamp }),
        };
        out.push(FundedInput::Command(CommandEnvelope { request_id, gateway_id: 1, command, origin: None }));
    }
    out
}

/// Applies `inputs` one batch at a time; returns every output record's payload.
fn run(machine: &mut Funded, inputs: &[FundedInput], first_offset: u64, check: bool) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut reported: BTreeMap<(u128, u16), (u64, u64)> = BTreeMap::new();
    for (i, chunk) in inputs.chunks(7).enumerate() {
        let mut out: Outputs<ShardOutput> = Outputs::default();
        machine.apply(chunk, first_offset + 7 * i as u64, &mut out);
        assert_eq!(out.inputs(), chunk.len(), "one end per input");
        for (_, record) in out.records() {
            payloads.push(encode_output(record).expect("encodes"));
            for b in &record.balances {
                reported.insert((b.account.to_raw(), b.asset), (b.available, b.hold));
            }
        }
        if check {
            machine.risk().check_conservation().expect("conservation after every batch");
            for ((raw, asset), (available, hold)) in &reported {
                let account = AccountId::from_raw(*raw).expect("valid");
                let now = machine.risk().balance(account, tachyon_risk::AssetId(*asset)).expect("reported ⇒ held");
                assert_eq!((now.available, now.hold), (*available, *hold), "the outputs' balances are the state");
            }
        }
    }
    payloads
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn funded_runs_conserve_report_their_balances_and_restore_exactly(
        seeds in proptest::collection::vec(any::<(u8, u8, u8, u8)>(), 1..300),
        cut in any::<prop::sample::Index>(),
    ) {
        let all = inputs(&seeds);
        let cut = cut.index(all.len());
        let mut whole = machine();
        let expected = run(&mut whole, &all, 0, true);

        let mut first = machine();
        let mut got = run(&mut first, &all[..cut], 0, false);
        let image = first.snapshot().expect("serialises");
        let mut restored = machine();
        restored.restore(&image).expect("restores");
        prop_assert_eq!(restored.snapshot().expect("serialises"), image, "restore is exact");
        got.extend(run(&mut restored, &all[cut..], cut as u64, false));
        prop_assert_eq!(got, expected, "the same outputs, byte for byte");
        prop_assert_eq!(restored.risk().snapshot().hash(), whole.risk().snapshot().hash());
        prop_assert_eq!(
            tachyon_engine::hash::state_hash(&restored.matching().engine().snapshot()),
            tachyon_engine::hash::state_hash(&whole.matching().engine().snapshot())
        );
    }
}

/// A long fixed stream reaches the interesting paths: funded and refused orders, fills
/// with fees, transfers that move funds and ones refused.
#[test]
fn a_long_stream_trades_charges_fees_and_refuses_what_it_must() {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let seeds: Vec<(u8, u8, u8, u8)> = (0..3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            (b[0], b[1], b[2], b[3])
        })
        .collect();
    let all = inputs(&seeds);
    let mut m = machine();
    let mut out: Outputs<ShardOutput> = Outputs::default();
    m.apply(&all, 0, &mut out);
    let records: Vec<&ShardOutput> = out.records().iter().map(|(_, r)| r).collect();
    let fees = records.iter().map(|r| r.fees.len()).sum::<usize>();
    let refused = records
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| matches!(e, tachyon_proto::Event::Rejected(r) if r.reason == tachyon_proto::RejectReason::InsufficientFunds))
        .count();
    let moved = records.iter().filter(|r| r.transfer.is_some_and(|t| t.error.is_none() && !t.replayed)).count();
    let failed = records.iter().filter(|r| r.transfer.is_some_and(|t| t.error.is_some())).count();
    assert!(
        fees > 50 && refused > 50 && moved > 50 && failed > 5,
        "fees {fees} refused {refused} moved {moved} failed {failed}"
    );
    m.risk().check_conservation().expect("conserved");
}
