//! Criterion benchmark of the risk core (`tachyon_risk::Risk`): inputs per second on one
//! core for a funded flow over 1,000 accounts on BTC-USD (maker 10 / taker 20 bps).
//!
//! One cycle is 7 inputs, as a risk shard sees them: hold a limit buy, hold a limit sell,
//! the buy's acceptance, the sell's acceptance with a partial fill against the buy
//! (settling both sides and both fees), an amend up of the buy (held again), its outcome,
//! and the buy's cancel (released). Accounts are pre-funded far beyond what the run
//! spends, so every hold succeeds and the state stays at a steady size. After each input
//! the core's changed balances and fees are taken, as the runtime takes them for its
//! output records. The same flow on
//! the reference model (`risk::reference`) is the baseline.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tachyon_proto::balance::{BalanceUpdate, FillFee};
use tachyon_proto::symbol::DEFAULT_SYMBOLS;
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, SymbolId, SymbolSpec, TradeId};
use tachyon_risk::reference::ReferenceRisk;
use tachyon_risk::{
    AmendHold, AssetId, FeeRates, Fill, Leg, OrderHold, Outcome, Request, Risk, RiskConfig, RiskSnapshot, Settlement,
    Transfer, TransferId, TransferKind,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNTS: usize = 1_000;
const SYMBOL: SymbolId = SymbolId(1);

enum Input {
    Request(Request),
    Settle(Vec<Settlement>),
}

/// The risk core and its reference model, driven the same way.
trait Core {
    fn request(&mut self, r: &Request) -> Outcome;
    fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome;
    fn snapshot(&self) -> RiskSnapshot;
    /// Takes what the input changed, as the runtime does after each one.
    fn drain(&mut self) {}
}

impl Core for Risk {
    fn request(&mut self, r: &Request) -> Outcome {
        Risk::request(self, r)
    }
    fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome {
        Risk::settle(self, partition, seq, batch)
    }
    fn snapshot(&self) -> RiskSnapshot {
        Risk::snapshot(self)
    }
    fn drain(&mut self) {
        CHANGES.with_borrow_mut(|(balances, fees)| {
            balances.clear();
            fees.clear();
            self.drain_changes(balances, fees);
        });
    }
}

thread_local! {
    /// The balance updates and fees of one input (reused, like the runtime's buffers).
    static CHANGES: std::cell::RefCell<(Vec<BalanceUpdate>, Vec<FillFee>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl Core for ReferenceRisk {
    fn request(&mut self, r: &Request) -> Outcome {
        ReferenceRisk::request(self, r)
    }
    fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome {
        ReferenceRisk::settle(self, partition, seq, batch)
    }
    fn snapshot(&self) -> RiskSnapshot {
        ReferenceRisk::snapshot(self)
    }
}

fn config() -> RiskConfig {
    let spec = SymbolSpec::from_def(&DEFAULT_SYMBOLS[0]).expect("valid");
    let fees = [FeeRates { maker_bps: 10, taker_bps: 20 }];
    RiskConfig::build(&[], &[spec], &fees, &[], 0, 1).expect("fits")
}

fn accounts() -> Vec<AccountId> {
    (0..ACCOUNTS).map(|i| AccountId::parse(&format!("acct-{i}")).expect("valid")).collect()
}

fn fund(core: &mut impl Core, accounts: &[AccountId]) {
    for (i, &account) in accounts.iter().enumerate() {
        for asset in [AssetId(0), AssetId(1)] {
            let transfer_id = TransferId::parse(&format!("d{i}-{}", asset.0)).expect("valid");
            let t = Transfer { kind: TransferKind::Deposit, transfer_id, account, asset, amount: 1 << 58 };
            core.request(&Request::Transfer(t));
        }
    }
}

fn cycle(accounts: &[AccountId], i: usize) -> Vec<Input> {
    let buyer = accounts[i % ACCOUNTS];
    let seller = accounts[(i * 7 + 3) % ACCOUNTS];
    let (buy, sell) = (OrderId(2 * i as u64 + 1), OrderId(2 * i as u64 + 2));
    let price = Price(3_000_000 + (i % 50) as i64);
    let order = |order_id, account, side| OrderHold {
        order_id,
        account,
        symbol: SYMBOL,
        side,
        price: Some(price),
        qty: Qty(5_000),
        funds: None,
    };
    let fill = Fill {
        symbol: SYMBOL,
        trade_id: TradeId(i as u64),
        price,
        qty: Qty(2_000),
        taker_side: Side::Sell,
        buy: Leg { order_id: buy, account: buyer, remaining: Qty(3_000) },
        sell: Leg { order_id: sell, account: seller, remaining: Qty(3_000) },
    };
    vec![
        Input::Request(Request::Order(order(buy, buyer, Side::Buy))),
        Input::Request(Request::Order(order(sell, seller, Side::Sell))),
        Input::Settle(vec![Settlement::Accepted { order_id: buy, account: buyer }]),
        Input::Settle(vec![Settlement::Accepted { order_id: sell, account: seller }, Settlement::Fill(fill)]),
        Input::Request(Request::Amend(AmendHold { order_id: buy, account: buyer, price: None, qty: Some(Qty(6_000)) })),
        Input::Settle(vec![Settlement::Amended {
            order_id: buy,
            account: buyer,
            price,
            qty: Qty(6_000),
            remaining: Qty(4_000),
        }]),
        Input::Settle(vec![
            Settlement::Cancelled { order_id: buy, account: buyer },
            Settlement::Cancelled { order_id: sell, account: seller },
        ]),
    ]
}

/// Runs the flow on `core` under `name`; checks it conserved funds and released every hold.
fn run(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, mut core: impl Core) {
    let accounts = accounts();
    fund(&mut core, &accounts);
    // Order ids repeat every 4,096 cycles; each cycle's orders are done by its end.
    let inputs: Vec<Input> = (0..4_096).flat_map(|i| cycle(&accounts, i)).collect();
    let mut seq = 0u64;
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            for input in &inputs {
                let outcome = match input {
                    Input::Request(r) => core.request(r),
                    Input::Settle(batch) => {
                        seq += 1;
                        core.settle(0, seq, batch)
                    }
                };
                core.drain();
                black_box(outcome);
            }
        });
    });
    let end = core.snapshot();
    end.check_conservation().expect("the bench conserves funds");
    assert!(end.orders.is_empty(), "every cycle releases its holds");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("risk");
    run(&mut group, "funded_flow_1000_accounts", Risk::new(config()));
    // The baseline: the same flow on the reference model (BTreeMaps, i128).
    run(&mut group, "reference_funded_flow_1000_accounts", ReferenceRisk::new(config()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
