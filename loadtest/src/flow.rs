//! The order flow: what each request does.
//!
//! Many accounts, symbols chosen with Zipf popularity, a random-walk mid price per
//! symbol, and a configurable mix of passive limit orders (resting a few ticks from the
//! mid), aggressive orders (IOC limits through the mid, or market orders), cancels and
//! amends of the account's own resting orders. Reproducible from the seed for a given
//! thread count.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tachyon_proto::fixed::Step;

/// A tradable symbol as the load tester needs it.
#[derive(Clone, Debug)]
pub struct Instrument {
    pub name: String,
    pub tick: Step,
    pub lot: Step,
    /// Smallest order size, in lots.
    pub min_lots: u64,
}

/// The symbols under load, their popularity and their (shared) mid prices in ticks.
#[derive(Debug)]
pub struct Market {
    pub instruments: Vec<Instrument>,
    /// Cumulative Zipf probabilities, one per instrument.
    cdf: Vec<f64>,
    mids: Vec<AtomicI64>,
}

/// Mid prices never walk below this many ticks.
const MIN_MID_TICKS: i64 = 1_000;

impl Market {
    /// A market over `instruments` (most popular first) with Zipf exponent `zipf` and
    /// starting mids in ticks.
    ///
    /// # Errors
    /// No instruments, or a mid per instrument missing.
    pub fn new(instruments: Vec<Instrument>, zipf: f64, mids: &[i64]) -> Result<Self> {
        ensure!(!instruments.is_empty(), "no symbols to trade");
        ensure!(mids.len() == instruments.len(), "one starting mid per symbol");
        let weights: Vec<f64> = (1..=instruments.len()).map(|rank| 1.0 / (rank as f64).powf(zipf)).collect();
        let sum: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / sum;
                acc
            })
            .collect();
        let mids = mids.iter().map(|&m| AtomicI64::new(m.max(MIN_MID_TICKS))).collect();
        Ok(Self { instruments, cdf, mids })
    }

    fn pick(&self, rng: &mut SmallRng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.instruments.len() - 1)
    }

    /// Moves the symbol's mid by -1, 0 or +1 tick and returns it.
    fn walk(&self, symbol: usize, rng: &mut SmallRng) -> i64 {
        let step = rng.random_range(-1..=1);
        let mid = &self.mids[symbol];
        let now = mid.fetch_add(step, Ordering::Relaxed) + step;
        if now < MIN_MID_TICKS {
            mid.store(MIN_MID_TICKS, Ordering::Relaxed);
            return MIN_MID_TICKS;
        }
        now
    }
}

/// Percentages of each kind of request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    pub passive: u32,
    pub aggressive: u32,
    pub cancel: u32,
    pub amend: u32,
}

impl Default for Mix {
    /// Roughly balanced: what rests is taken or cancelled about as fast as it arrives,
    /// so the book stays a steady size during long runs.
    fn default() -> Self {
        Self { passive: 45, aggressive: 15, cancel: 35, amend: 5 }
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    /// `passive=45,aggressive=15,cancel=35,amend=5` (missing kinds are 0; weights, not
    /// necessarily summing to 100).
    fn from_str(s: &str) -> Result<Self> {
        let mut mix = Self { passive: 0, aggressive: 0, cancel: 0, amend: 0 };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').with_context(|| format!("{part:?}: expected kind=weight"))?;
            let weight: u32 = weight.parse().with_context(|| format!("{part:?}: weight"))?;
            match kind {
                "passive" => mix.passive = weight,
                "aggressive" => mix.aggressive = weight,
                "cancel" => mix.cancel = weight,
                "amend" => mix.amend = weight,
                other => bail!("unknown kind {other:?} (passive, aggressive, cancel, amend)"),
            }
        }
        ensure!(mix.passive + mix.aggressive > 0, "the mix must place orders (passive or aggressive > 0)");
        Ok(mix)
    }
}

impl Mix {
    /// The same mix without cancels and amends (the batch endpoint only places orders).
    pub fn places_only(self) -> Self {
        Self { cancel: 0, amend: 0, ..self }
    }

    /// The same mix with amends sent as cancels (WebSocket order entry has no amend).
    pub fn without_amend(self) -> Self {
        Self { cancel: self.cancel + self.amend, amend: 0, ..self }
    }
}

/// One request's worth of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Place an order: `body` is the JSON object of `POST /v1/orders`.
    Place {
        account: usize,
        symbol: usize,
        lots: u64,
        body: String,
        aggressive: bool,
    },
    Cancel {
        account: usize,
        order_id: String,
    },
    /// Lower an order's quantity: `body` is the JSON object of `PATCH /v1/orders/{id}`.
    Amend {
        account: usize,
        order_id: String,
        body: String,
    },
}

impl Action {
    pub fn account(&self) -> usize {
        match self {
            Self::Place { account, .. } | Self::Cancel { account, .. } | Self::Amend { account, .. } => *account,
        }
    }
}

/// Resting orders remembered per account (the oldest are forgotten beyond this).
const OPEN_PER_ACCOUNT: usize = 1024;

#[derive(Debug, Default)]
struct Resting {
    /// Order id, remaining lots and symbol, oldest first.
    orders: VecDeque<(String, u64, usize)>,
}

/// A thread's order flow over its own accounts.
#[derive(Debug)]
pub struct Flow {
    rng: SmallRng,
    market: Arc<Market>,
    mix: Mix,
    accounts: Vec<Resting>,
    /// Largest order, in lots above the symbol's minimum.
    max_extra_lots: u64,
}

impl Flow {
    /// A flow for `accounts` accounts, seeded.
    pub fn new(market: Arc<Market>, mix: Mix, accounts: usize, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            market,
            mix,
            accounts: (0..accounts.max(1)).map(|_| Resting::default()).collect(),
            max_extra_lots: 9,
        }
    }

    /// The next request.
    pub fn next_action(&mut self) -> Action {
        let account = self.rng.random_range(0..self.accounts.len());
        let total = self.mix.passive + self.mix.aggressive + self.mix.cancel + self.mix.amend;
        let roll = self.rng.random_range(0..total);
        let wants_cancel = roll >= self.mix.passive + self.mix.aggressive;
        if wants_cancel {
            let is_amend = roll >= self.mix.passive + self.mix.aggressive + self.mix.cancel;
            if let Some(action) = self.modify(account, is_amend) {
                return action;
            }
        }
        self.place(account, roll >= self.mix.passive && !wants_cancel)
    }

    /// A place action only (for batches): passive or aggressive by the mix.
    pub fn next_place(&mut self, account: usize) -> Action {
        let roll = self.rng.random_range(0..self.mix.passive + self.mix.aggressive);
        self.place(account, roll >= self.mix.passive)
    }

    /// Picks an account uniformly.
    pub fn pick_account(&mut self) -> usize {
        self.rng.random_range(0..self.accounts.len())
    }

    fn place(&mut self, account: usize, aggressive: bool) -> Action {
        let market = Arc::clone(&self.market);
        let symbol = market.pick(&mut self.rng);
        let inst = &market.instruments[symbol];
        let mid = market.walk(symbol, &mut self.rng);
        let buy = self.rng.random_bool(0.5);
        let lots = inst.min_lots + self.rng.random_range(0..=self.max_extra_lots) * inst.min_lots;
        let mut body = String::with_capacity(160);
        let side = if buy { "buy" } else { "sell" };
        let _ = write!(
            body,
            r#"{{"symbol":"{}","side":"{side}","quantity":"{}""#,
            inst.name,
            inst.lot.format_trimmed(lots)
        );
        if aggressive && self.rng.random_ratio(1, 10) {
            body.push_str(r#","type":"market"}"#);
        } else if aggressive {
            let reach = self.rng.random_range(1..=5);
            let price = if buy { mid + reach } else { mid - reach };
            let _ =
                write!(body, r#","type":"limit","price":"{}","time_in_force":"ioc"}}"#, inst.tick.format_fixed(price));
        } else {
            let away = self.rng.random_range(1..=20);
            let price = if buy { mid - away } else { mid + away };
            let _ = write!(body, r#","type":"limit","price":"{}"}}"#, inst.tick.format_fixed(price));
        }
        Action::Place { account, symbol, lots, body, aggressive }
    }

    fn modify(&mut self, account: usize, amend: bool) -> Option<Action> {
        let resting = &mut self.accounts[account].orders;
        // Market makers re-quote their oldest orders first.
        let (order_id, lots, symbol) = resting.pop_front()?;
        if amend && lots > 1 {
            // Lowering the quantity keeps time priority; the order stays open, smaller.
            let new_lots = self.rng.random_range(1..lots);
            resting.push_back((order_id.clone(), new_lots, symbol));
            let quantity = self.market.instruments[symbol].lot.format_trimmed(new_lots);
            let body = format!(r#"{{"quantity":"{quantity}"}}"#);
            return Some(Action::Amend { account, order_id, body });
        }
        Some(Action::Cancel { account, order_id })
    }

    /// Remembers a resting order of `account` (from a response) for later cancels/amends.
    pub fn rested(&mut self, account: usize, order_id: String, lots: u64, symbol: usize) {
        let resting = &mut self.accounts[account].orders;
        if resting.len() == OPEN_PER_ACCOUNT {
            resting.pop_front();
        }
        resting.push_back((order_id, lots, symbol));
    }
}

/// The lots of a quantity string for `inst` (0 if it does not parse).
pub fn lots_of(inst: &Instrument, quantity: &str) -> u64 {
    inst.lot.qty(quantity).map_or(0, |q| q.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(a: &Action) -> &'static str {
        match a {
            Action::Place { aggressive: false, .. } => "passive",
            Action::Place { aggressive: true, .. } => "aggressive",
            Action::Cancel { .. } => "cancel",
            Action::Amend { .. } => "amend",
        }
    }

    fn market() -> Arc<Market> {
        let inst = |name: &str, tick: &str, lot: &str| Instrument {
            name: name.into(),
            tick: Step::parse(tick).expect("step"),
            lot: Step::parse(lot).expect("step"),
            min_lots: 1,
        };
        Arc::new(
            Market::new(
                vec![
                    inst("BTC-USD", "0.01", "0.0001"),
                    inst("ETH-USD", "0.01", "0.001"),
                    inst("SOL-USD", "0.001", "0.01"),
                ],
                1.1,
                &[3_000_000, 200_000, 100_000],
            )
            .expect("market"),
        )
    }

    #[test]
    fn the_same_seed_gives_the_same_flow() {
        let run = |seed| {
            let mut f = Flow::new(market(), Mix::default(), 10, seed);
            (0..200)
                .map(|i| {
                    let a = f.next_action();
                    if let Action::Place { account, symbol, aggressive: false, .. } = &a {
                        f.rested(*account, format!("o{i}"), 5, *symbol);
                    }
                    a
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn the_mix_and_popularity_hold() {
        let mut f = Flow::new(market(), Mix::default(), 4, 1);
        let (mut kinds, mut symbols) = (std::collections::HashMap::new(), [0u32; 3]);
        for i in 0..20_000 {
            let a = f.next_action();
            *kinds.entry(kind(&a)).or_insert(0u32) += 1;
            if let Action::Place { account, symbol, aggressive, body, .. } = &a {
                symbols[*symbol] += 1;
                assert!(body.starts_with(r#"{"symbol":""#) && body.ends_with('}'), "{body}");
                let _: serde_json::Value = serde_json::from_str(body).expect("valid JSON");
                if !aggressive {
                    f.rested(*account, format!("o{i}"), 5, *symbol);
                }
            }
        }
        // Zipf: the most popular symbol gets the most orders.
        assert!(symbols[0] > symbols[1] && symbols[1] > symbols[2], "{symbols:?}");
        let share = |k: &str| f64::from(kinds[k]) / 20_000.0;
        assert!((share("passive") - 0.45).abs() < 0.03, "{kinds:?}");
        assert!((share("cancel") - 0.35).abs() < 0.03, "{kinds:?}");
        assert!(share("amend") > 0.02, "{kinds:?}");
    }

    #[test]
    fn mixes_parse() {
        let m: Mix = "passive=50, aggressive=50".parse().expect("valid");
        assert_eq!(m, Mix { passive: 50, aggressive: 50, cancel: 0, amend: 0 });
        assert!("cancel=10".parse::<Mix>().is_err());
        assert!("passive=x".parse::<Mix>().is_err());
        assert!("bogus=1".parse::<Mix>().is_err());
        assert_eq!(Mix::default().without_amend().cancel, 40);
    }
}
