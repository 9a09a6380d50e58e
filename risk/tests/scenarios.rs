//! Worked examples of the rules in API.md ("Balances, holds, settlement and fees") on the
//! default BTC-USD market (tick 0.01, lot 0.0001, both assets on 8 decimal places),
//! maker 10 bps, taker 20 bps.

use tachyon_proto::symbol::DEFAULT_SYMBOLS;
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, SymbolId, SymbolSpec, TradeId};
use tachyon_risk::{
    AmendHold, AssetId, Balance, FeeRates, Fill, Leg, OrderHold, Outcome, Request, Risk, RiskConfig, RiskReject,
    Settlement, Transfer, TransferId, TransferKind,
};

const BTC: AssetId = AssetId(0);
const USD: AssetId = AssetId(1);
const BTC_USD: SymbolId = SymbolId(1);
/// One whole unit on scale 8.
const UNIT: u64 = 100_000_000;

/// `whole.cents` on scale 8.
fn usd(whole: u64, cents: u64) -> u64 {
    whole * UNIT + cents * UNIT / 100
}

fn acct(name: &str) -> AccountId {
    AccountId::parse(name).expect("valid")
}

fn risk() -> Risk {
    let spec = SymbolSpec::from_def(&DEFAULT_SYMBOLS[0]).expect("valid");
    let fees = [FeeRates { maker_bps: 10, taker_bps: 20 }];
    Risk::new(RiskConfig::build(&[], &[spec], &fees, &[], 0, 1).expect("fits"))
}

fn deposit(risk: &mut Risk, id: &str, account: &str, asset: AssetId, amount: u64) -> Outcome {
    let transfer_id = TransferId::parse(id).expect("valid");
    let t = Transfer { kind: TransferKind::Deposit, transfer_id, account: acct(account), asset, amount };
    risk.request(&Request::Transfer(t))
}

/// A limit order of `qty` lots at `price` ticks.
fn limit(id: u64, account: &str, side: Side, price: i64, qty: u64) -> Request {
    Request::Order(OrderHold {
        order_id: OrderId(id),
        account: acct(account),
        symbol: BTC_USD,
        side,
        price: Some(Price(price)),
        qty: Qty(qty),
        funds: None,
    })
}

fn bal(risk: &Risk, account: &str, asset: AssetId) -> Balance {
    risk.balance(acct(account), asset).unwrap_or_default()
}

#[test]
fn a_limit_buy_holds_notional_plus_its_largest_fee_and_a_cheaper_fill_releases_the_difference() {
    let mut r = risk();
    deposit(&mut r, "d1", "alice", USD, 40_000 * UNIT);
    deposit(&mut r, "d2", "bob", BTC, UNIT);
    // Buy 0.5 BTC at 30,000.00: 15,000 USD + 20 bps = 15,030 USD held.
    assert_eq!(r.request(&limit(1, "alice", Side::Buy, 3_000_000, 5_000)), Outcome::Forward);
    assert_eq!(bal(&r, "alice", USD), Balance { available: 24_970 * UNIT, hold: 15_030 * UNIT });
    r.settle(0, 1, &[Settlement::Accepted { order_id: OrderId(1), account: acct("alice") }]);
    // Bob's resting sell at 29,000.00 of 0.2 BTC; alice takes it: pays 5,800 + 0.2% = 5,811.6.
    assert_eq!(r.request(&limit(2, "bob", Side::Sell, 2_900_000, 2_000)), Outcome::Forward);
    let fill = Fill {
        symbol: BTC_USD,
        trade_id: TradeId(1),
        price: Price(2_900_000),
        qty: Qty(2_000),
        taker_side: Side::Buy,
        buy: Leg { order_id: OrderId(1), account: acct("alice"), remaining: Qty(3_000) },
        sell: Leg { order_id: OrderId(2), account: acct("bob"), remaining: Qty(0) },
    };
    r.settle(0, 2, &[Settlement::Fill(fill)]);
    // Alice: 0.3 BTC left at 30,000 holds 9,018; paid 5,811.6; released 200.4.
    assert_eq!(bal(&r, "alice", USD), Balance { available: usd(25_170, 40), hold: 9_018 * UNIT });
    assert_eq!(bal(&r, "alice", BTC), Balance { available: UNIT / 5, hold: 0 });
    // Bob (maker, 10 bps): 5,800 − 5.8 USD, and his BTC hold is gone.
    assert_eq!(bal(&r, "bob", USD), Balance { available: usd(5_794, 20), hold: 0 });
    assert_eq!(bal(&r, "bob", BTC), Balance { available: UNIT * 8 / 10, hold: 0 });
    // Fees: 11.6 + 5.8 = 17.4 USD.
    assert_eq!(r.fees()[usize::from(USD.0)], usd(17, 40));
    r.check_conservation().expect("conserved");
    // Cancelling the rest releases all of it.
    r.settle(0, 3, &[Settlement::Cancelled { order_id: OrderId(1), account: acct("alice") }]);
    assert_eq!(bal(&r, "alice", USD), Balance { available: usd(34_188, 40), hold: 0 });
    r.check_conservation().expect("conserved");
}

#[test]
fn an_order_or_withdrawal_above_available_is_refused_and_moves_nothing() {
    let mut r = risk();
    deposit(&mut r, "d1", "alice", USD, 1_000 * UNIT);
    let big = limit(1, "alice", Side::Buy, 3_000_000, 5_000);
    assert_eq!(r.request(&big), Outcome::Rejected(RiskReject::InsufficientFunds));
    let sell = limit(2, "alice", Side::Sell, 3_000_000, 1);
    assert_eq!(r.request(&sell), Outcome::Rejected(RiskReject::InsufficientFunds));
    let transfer_id = TransferId::parse("w1").expect("valid");
    let w = Transfer {
        kind: TransferKind::Withdrawal,
        transfer_id,
        account: acct("alice"),
        asset: USD,
        amount: 1_001 * UNIT,
    };
    assert_eq!(r.request(&Request::Transfer(w)), Outcome::Rejected(RiskReject::InsufficientFunds));
    assert_eq!(bal(&r, "alice", USD), Balance { available: 1_000 * UNIT, hold: 0 });
    assert_eq!(r.held_orders(), 0);
    // The refused id is not spent: with the funds there, the same withdrawal goes through.
    deposit(&mut r, "d2", "alice", USD, UNIT);
    let Outcome::Transferred { balance, replayed: false } = r.request(&Request::Transfer(w)) else { panic!("moves") };
    assert_eq!(balance, Balance::default());
}

#[test]
fn a_transfer_id_again_returns_the_first_result_and_with_another_body_is_refused() {
    let mut r = risk();
    let first = deposit(&mut r, "dep-1", "alice", USD, 100 * UNIT);
    deposit(&mut r, "dep-2", "alice", USD, 5 * UNIT);
    let again = deposit(&mut r, "dep-1", "alice", USD, 100 * UNIT);
    assert_eq!(again, Outcome::Transferred { balance: Balance { available: 100 * UNIT, hold: 0 }, replayed: true });
    assert_eq!(first, Outcome::Transferred { balance: Balance { available: 100 * UNIT, hold: 0 }, replayed: false });
    assert_eq!(deposit(&mut r, "dep-1", "alice", USD, 99 * UNIT), Outcome::Rejected(RiskReject::DuplicateTransferId));
    assert_eq!(bal(&r, "alice", USD).available, 105 * UNIT);
}

#[test]
fn an_amend_up_holds_more_first_and_is_refused_when_short() {
    let mut r = risk();
    deposit(&mut r, "d1", "alice", USD, 20_000 * UNIT);
    r.request(&limit(1, "alice", Side::Buy, 3_000_000, 5_000)); // holds 15,030
    r.settle(0, 1, &[Settlement::Accepted { order_id: OrderId(1), account: acct("alice") }]);
    let up = |qty| {
        Request::Amend(AmendHold { order_id: OrderId(1), account: acct("alice"), price: None, qty: Some(Qty(qty)) })
    };
    // To 0.7 BTC: 21,042 needed, 4,970 available for 6,012 more.
    assert_eq!(r.request(&up(7_000)), Outcome::Rejected(RiskReject::InsufficientFunds));
    assert_eq!(bal(&r, "alice", USD).hold, 15_030 * UNIT);
    // To 0.6 BTC: 18,036, 3,006 more, held before matching sees it.
    assert_eq!(r.request(&up(6_000)), Outcome::Forward);
    assert_eq!(bal(&r, "alice", USD).hold, 18_036 * UNIT);
    let amended = Settlement::Amended {
        order_id: OrderId(1),
        account: acct("alice"),
        price: Price(3_000_000),
        qty: Qty(6_000),
        remaining: Qty(6_000),
    };
    r.settle(0, 2, &[amended]);
    assert_eq!(bal(&r, "alice", USD).hold, 18_036 * UNIT);
    // Down to 0.1 BTC keeps priority and releases all but 3,006.
    assert_eq!(r.request(&up(1_000)), Outcome::Forward);
    let down = Settlement::Amended {
        order_id: OrderId(1),
        account: acct("alice"),
        price: Price(3_000_000),
        qty: Qty(1_000),
        remaining: Qty(1_000),
    };
    r.settle(0, 3, &[down]);
    assert_eq!(bal(&r, "alice", USD), Balance { available: 16_994 * UNIT, hold: 3_006 * UNIT });
    // Bob cannot amend it.
    let bobs = Request::Amend(AmendHold { order_id: OrderId(1), account: acct("bob"), price: None, qty: None });
    assert_eq!(r.request(&bobs), Outcome::Rejected(RiskReject::NotOrderOwner));
}

#[test]
fn a_market_buy_holds_its_funds_and_gets_back_what_it_did_not_spend() {
    let mut r = risk();
    deposit(&mut r, "d1", "alice", USD, 1_000 * UNIT);
    deposit(&mut r, "d2", "bob", BTC, UNIT);
    let no_funds = Request::Order(OrderHold {
        order_id: OrderId(1),
        account: acct("alice"),
        symbol: BTC_USD,
        side: Side::Buy,
        price: None,
        qty: Qty(1_000),
        funds: None,
    });
    assert_eq!(r.request(&no_funds), Outcome::Rejected(RiskReject::InvalidFunds));
    let Request::Order(o) = no_funds else { unreachable!() };
    assert_eq!(r.request(&Request::Order(OrderHold { funds: Some(600 * UNIT), ..o })), Outcome::Forward);
    assert_eq!(bal(&r, "alice", USD), Balance { available: 400 * UNIT, hold: 600 * UNIT });
    r.request(&limit(2, "bob", Side::Sell, 3_000_000, 100));
    // 0.01 BTC at 30,000 = 300 + 0.6 taker fee.
    let fill = Fill {
        symbol: BTC_USD,
        trade_id: TradeId(1),
        price: Price(3_000_000),
        qty: Qty(100),
        taker_side: Side::Buy,
        buy: Leg { order_id: OrderId(1), account: acct("alice"), remaining: Qty(900) },
        sell: Leg { order_id: OrderId(2), account: acct("bob"), remaining: Qty(0) },
    };
    r.settle(0, 1, &[Settlement::Accepted { order_id: OrderId(1), account: acct("alice") }, Settlement::Fill(fill)]);
    assert_eq!(bal(&r, "alice", USD), Balance { available: 400 * UNIT, hold: usd(299, 40) });
    r.settle(0, 2, &[Settlement::Cancelled { order_id: OrderId(1), account: acct("alice") }]);
    assert_eq!(bal(&r, "alice", USD), Balance { available: usd(699, 40), hold: 0 });
    r.check_conservation().expect("conserved");
    // The same batch again (a replayed hop) changes nothing.
    assert_eq!(
        r.settle(0, 2, &[Settlement::Cancelled { order_id: OrderId(1), account: acct("alice") }]),
        Outcome::Duplicate
    );
}
