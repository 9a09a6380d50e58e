//! The canonical image of a risk shard's state: snapshots, restore and the state hash.
//!
//! Accounts sorted by id (each with the assets it ever held, in asset order), held orders
//! by order id, transfers by transfer id, the per-asset ledger and, per matching
//! partition, the last output sequence settled. Both the risk core and its reference model
//! produce it, so they are compared field by field; the hash is FNV-1a over its rkyv bytes
//! (canonical order in, same bytes out).

use rkyv::rancor;
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, SymbolId};

use crate::command::{Balance, Transfer};
use crate::config::AssetId;

/// One account's balances.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AccountSnapshot {
    pub id: AccountId,
    pub balances: Vec<(AssetId, Balance)>,
}

/// One held order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HoldSnapshot {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub remaining: Qty,
    pub amount: u64,
    pub funds: bool,
    pub accepted: bool,
    pub amends: u32,
}

/// A transfer applied, with the balance right after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TransferSnapshot {
    pub transfer: Transfer,
    pub balance: Balance,
}

/// One asset's flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AssetLedger {
    pub deposits: u128,
    pub withdrawals: u128,
    /// Collected by the exchange's fee account.
    pub fees: u64,
    /// Moved by trades from / to accounts of other risk shards.
    pub transit_in: u128,
    pub transit_out: u128,
    pub overdraft: u128,
}

/// The whole state of one risk shard.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RiskSnapshot {
    /// Inputs applied (bookkeeping: not part of the hash).
    pub commands: u64,
    pub accounts: Vec<AccountSnapshot>,
    pub orders: Vec<HoldSnapshot>,
    pub transfers: Vec<TransferSnapshot>,
    pub ledger: Vec<AssetLedger>,
    /// Per matching partition (by index): the last output sequence settled; trailing
    /// zeros dropped.
    pub sources: Vec<u64>,
}

/// FNV-1a, 64-bit.
pub(crate) fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl RiskSnapshot {
    /// Serialises the snapshot.
    ///
    /// # Errors
    /// If rkyv fails (it cannot for these plain types; passed on rather than unwrapped).
    pub fn to_bytes(&self) -> Result<Vec<u8>, rancor::Error> {
        rkyv::to_bytes::<rancor::Error>(self).map(|b| b.to_vec())
    }

    /// Reads a snapshot, validating it.
    ///
    /// # Errors
    /// A corrupt or truncated image.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, rancor::Error> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Self, rancor::Error>(&aligned)
    }

    /// The state hash: the canonical image without the input count.
    pub fn hash(&self) -> u64 {
        let unnumbered = Self { commands: 0, ..self.clone() };
        unnumbered.to_bytes().map_or(0, fnv)
    }

    /// Per asset: (`available + hold` of every account, deposits − withdrawals + transit
    /// in − out + overdraft − fees), which the conservation law says are equal.
    pub fn conservation(&self) -> Vec<(i128, i128)> {
        let mut held = vec![0i128; self.ledger.len()];
        for a in &self.accounts {
            for &(asset, b) in &a.balances {
                if let Some(h) = held.get_mut(usize::from(asset.0)) {
                    *h += i128::from(b.available) + i128::from(b.hold);
                }
            }
        }
        let signed = |x: u128| i128::try_from(x).unwrap_or(i128::MAX);
        self.ledger
            .iter()
            .zip(held)
            .map(|(l, h)| {
                let expected = signed(l.deposits) - signed(l.withdrawals) + signed(l.transit_in)
                    - signed(l.transit_out)
                    + signed(l.overdraft)
                    - i128::from(l.fees);
                (h, expected)
            })
            .collect()
    }

    /// The conservation law (see [`crate::Risk::check_conservation`]).
    ///
    /// # Errors
    /// The first asset where it fails.
    pub fn check_conservation(&self) -> Result<(), String> {
        for (asset, (held, expected)) in self.conservation().into_iter().enumerate() {
            if held != expected {
                return Err(format!("asset {asset}: accounts hold {held}, the ledger says {expected}"));
            }
        }
        Ok(())
    }

    /// Every account's balances summed with `hold` checked against its orders': an
    /// account's `hold` of an asset is exactly what its orders hold in it.
    ///
    /// # Errors
    /// The first account and asset where they differ.
    pub fn check_holds(&self, held_asset: impl Fn(&HoldSnapshot) -> Option<AssetId>) -> Result<(), String> {
        let mut sums: std::collections::BTreeMap<(u128, u16), u64> = std::collections::BTreeMap::new();
        for o in &self.orders {
            let asset = held_asset(o).ok_or_else(|| format!("order {} on an unknown symbol", o.order_id.0))?;
            *sums.entry((o.account.to_raw(), asset.0)).or_default() += o.amount;
        }
        for a in &self.accounts {
            for &(asset, b) in &a.balances {
                let orders = sums.remove(&(a.id.to_raw(), asset.0)).unwrap_or(0);
                if orders != b.hold {
                    return Err(format!("{} asset {}: hold {} but its orders hold {orders}", a.id, asset.0, b.hold));
                }
            }
        }
        match sums.into_iter().find(|(_, v)| *v > 0) {
            Some(((_, asset), v)) => Err(format!("orders hold {v} of asset {asset} that no balance shows")),
            None => Ok(()),
        }
    }
}
