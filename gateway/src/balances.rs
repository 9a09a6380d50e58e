//! Balances as the gateway serves them (balances on): every account's balances, the fees
//! and the ledger totals, kept from the risk stage's outputs.
//!
//! Each executions record of a command that moved funds lists the balances it left
//! (absolute values), the fees its fills charged, and a transfer's result; applying them
//! in order keeps this view equal to the risk core's state at that record, so `GET
//! /v1/balances` answers from the risk state without a database. The ledger's totals
//! follow from the same records: deposits and withdrawals from transfers that moved
//! funds, fees from fills, and the sum of every account's `available + hold`.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tachyon_proto::balance::{TransferKind, TransferRecord};
use tachyon_proto::fixed::Step;
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::AccountId;

/// Every transfer amount is below 10^18 units of its asset's scale (below 10^10 at scale
/// 8): far above any real transfer, and the largest bound a decimal-string pattern can state
/// for every scale.
pub const MAX_AMOUNT_UNITS: u64 = 1_000_000_000_000_000_000;

/// An asset as configured: its name and scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    pub name: String,
    pub scale: u32,
}

/// The assets of the exchange, in the risk core's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalanceConfig {
    pub assets: Vec<AssetInfo>,
}

impl BalanceConfig {
    /// The index of the asset named `name`.
    pub fn asset(&self, name: &str) -> Option<u16> {
        self.assets.iter().position(|a| a.name == name).and_then(|i| u16::try_from(i).ok())
    }

    /// Renders `amount` of asset `asset` with all of its decimal places.
    pub fn format(&self, asset: u16, amount: u64) -> String {
        let scale = self.assets.get(usize::from(asset)).map_or(0, |a| a.scale);
        Step::new(1, scale).map_or_else(|_| amount.to_string(), |s| s.format_fixed(amount.min(i64::MAX as u64) as i64))
    }

    /// Parses a positive amount of `asset`, exactly on its scale and below
    /// [`MAX_AMOUNT_UNITS`] units of it.
    pub fn parse(&self, asset: u16, text: &str) -> Option<u64> {
        let scale = self.assets.get(usize::from(asset))?.scale;
        let steps = Step::new(1, scale).ok()?.steps(text).ok()?;
        u64::try_from(steps).ok().filter(|&a| a > 0 && a < MAX_AMOUNT_UNITS)
    }

    pub fn name(&self, asset: u16) -> &str {
        self.assets.get(usize::from(asset)).map_or("", |a| a.name.as_str())
    }
}

/// One balance in the API (`GET /v1/balances`, transfer answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalanceJson {
    pub asset: String,
    pub available: String,
    pub hold: String,
    pub total: String,
}

/// The answer to a deposit or withdrawal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferJson {
    pub transfer_id: String,
    pub account_id: String,
    pub asset: String,
    pub amount: String,
    pub balance: BalanceJson,
}

/// A deposit or withdrawal request (`POST /v1/admin/deposits|withdrawals`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account_id": "alice", "asset": "USD", "amount": "1000.00", "transfer_id": "dep-1"}))]
pub struct TransferRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,20}$")]
    pub account_id: String,
    /// A configured asset (another → 404 `unknown_asset`).
    #[schema(pattern = "^[A-Z0-9]{1,15}$")]
    pub asset: String,
    /// A positive decimal string with at most the asset's scale of decimal places (else
    /// 400 `invalid_amount`).
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub amount: String,
    /// Unique per exchange: the same id and body again return the first result.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub transfer_id: String,
}

/// Fees collected in one asset (`GET /v1/admin/fees`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeeJson {
    pub asset: String,
    pub amount: String,
}

/// One asset's ledger (`GET /v1/admin/ledger`): `balances + fees = deposits - withdrawals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerJson {
    pub asset: String,
    pub deposits: String,
    pub withdrawals: String,
    /// Every account's `available + hold` (the fee account not included).
    pub balances: String,
    pub fees: String,
}

#[derive(Default)]
struct State {
    /// account → asset → (available, hold).
    accounts: std::collections::HashMap<AccountId, BTreeMap<u16, (u64, u64)>>,
    /// Per asset: deposits, withdrawals, fees, Σ balances.
    deposits: Vec<u128>,
    withdrawals: Vec<u128>,
    fees: Vec<u128>,
    totals: Vec<u128>,
}

/// The balances view (see the module docs).
pub struct Balances {
    pub config: BalanceConfig,
    state: RwLock<State>,
}

impl std::fmt::Debug for Balances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balances").field("config", &self.config).finish_non_exhaustive()
    }
}

fn grow(v: &mut Vec<u128>, asset: u16) -> &mut u128 {
    let i = usize::from(asset);
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    &mut v[i]
}

impl Balances {
    pub fn new(config: BalanceConfig) -> Self {
        Self { config, state: RwLock::new(State::default()) }
    }

    /// Applies one executions record's funds.
    pub fn apply(&self, output: &ShardOutput) {
        if !output.has_funds() {
            return;
        }
        let mut s = self.state.write();
        for b in &output.balances {
            let entry = s.accounts.entry(b.account).or_default().entry(b.asset).or_insert((0, 0));
            let before = u128::from(entry.0) + u128::from(entry.1);
            *entry = (b.available, b.hold);
            let total = grow(&mut s.totals, b.asset);
            *total = (*total + u128::from(b.available) + u128::from(b.hold)).saturating_sub(before);
        }
        for f in &output.fees {
            *grow(&mut s.fees, f.asset) += u128::from(f.fee);
        }
        if let Some(t) = output.transfer.filter(|t| t.error.is_none() && !t.replayed) {
            let sums = match t.kind {
                TransferKind::Deposit => &mut s.deposits,
                TransferKind::Withdrawal => &mut s.withdrawals,
            };
            *grow(sums, t.asset) += u128::from(t.amount);
        }
    }

    fn render(&self, asset: u16, available: u64, hold: u64) -> BalanceJson {
        BalanceJson {
            asset: self.config.name(asset).to_owned(),
            available: self.config.format(asset, available),
            hold: self.config.format(asset, hold),
            total: self.config.format(asset, available.saturating_add(hold)),
        }
    }

    /// An account's balances, one per asset it ever held, in asset order.
    pub fn of(&self, account: AccountId) -> Vec<BalanceJson> {
        let s = self.state.read();
        s.accounts.get(&account).map_or_else(Vec::new, |assets| {
            assets.iter().map(|(&asset, &(available, hold))| self.render(asset, available, hold)).collect()
        })
    }

    /// The answer to a transfer.
    pub fn transfer_json(&self, t: &TransferRecord) -> TransferJson {
        TransferJson {
            transfer_id: t.transfer_id.to_string(),
            account_id: t.account.to_string(),
            asset: self.config.name(t.asset).to_owned(),
            amount: self.config.format(t.asset, t.amount),
            balance: self.render(t.asset, t.available, t.hold),
        }
    }

    /// Fees collected, per asset.
    pub fn fees(&self) -> Vec<FeeJson> {
        let s = self.state.read();
        (0..self.config.assets.len() as u16)
            .map(|a| FeeJson {
                asset: self.config.name(a).to_owned(),
                amount: self.config.format(a, s.fees.get(usize::from(a)).copied().unwrap_or(0) as u64),
            })
            .collect()
    }

    /// The ledger, per asset.
    pub fn ledger(&self) -> Vec<LedgerJson> {
        let s = self.state.read();
        let at = |v: &Vec<u128>, a: u16| v.get(usize::from(a)).copied().unwrap_or(0).min(u128::from(u64::MAX)) as u64;
        (0..self.config.assets.len() as u16)
            .map(|a| LedgerJson {
                asset: self.config.name(a).to_owned(),
                deposits: self.config.format(a, at(&s.deposits, a)),
                withdrawals: self.config.format(a, at(&s.withdrawals, a)),
                balances: self.config.format(a, at(&s.totals, a)),
                fees: self.config.format(a, at(&s.fees, a)),
            })
            .collect()
    }
}
