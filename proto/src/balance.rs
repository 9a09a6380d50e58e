//! Balances on the wire: what the risk stage reports with each command it applied.
//!
//! Amounts are integers on their asset's scale; assets are indices into the configured
//! asset list (every process of one exchange has the same list). A shard output of a
//! command that moved funds lists the balances it left ([`BalanceUpdate`], absolute, so a
//! reader never needs the history), the fee each side of each fill paid ([`FillFee`]),
//! and for a deposit or withdrawal its result ([`TransferRecord`]).

use std::fmt;

use crate::ids::{AccountId, TradeId};

/// A transfer's idempotency key: 1–64 characters of `[A-Za-z0-9_-]`, unique per exchange.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct TransferId {
    len: u8,
    bytes: [u8; TransferId::MAX_LEN],
}

/// Why a transfer id is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transfer_id must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct BadTransferId;

impl TransferId {
    pub const MAX_LEN: usize = 64;

    /// Validates a transfer id.
    ///
    /// # Errors
    /// [`BadTransferId`] when empty, too long or with a character outside the alphabet.
    pub fn parse(s: &str) -> Result<Self, BadTransferId> {
        let src = s.as_bytes();
        if src.is_empty()
            || src.len() > Self::MAX_LEN
            || !src.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(BadTransferId);
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self { len: src.len() as u8, bytes })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII from the alphabet gets in (`parse`, and the wire decoder re-checks).
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Whether a decoded id is one `parse` would produce.
    pub fn is_canonical(&self) -> bool {
        Self::parse(self.as_str()).is_ok_and(|p| p == *self)
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({})", self.as_str())
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a transfer moves funds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum TransferKind {
    Deposit,
    Withdrawal,
}

/// One account's balance of one asset after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct BalanceUpdate {
    pub account: AccountId,
    pub asset: u16,
    pub available: u64,
    pub hold: u64,
}

/// The fee one side of a fill paid, in the symbol's QUOTE asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct FillFee {
    pub trade_id: TradeId,
    pub account: AccountId,
    pub asset: u16,
    pub fee: u64,
}

/// Why a transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum TransferError {
    InsufficientFunds,
    DuplicateTransferId,
    InvalidAmount,
    UnknownAsset,
}

/// A deposit or withdrawal and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct TransferRecord {
    pub kind: TransferKind,
    pub transfer_id: TransferId,
    pub account: AccountId,
    pub asset: u16,
    pub amount: u64,
    /// The balance right after it first applied (a replayed id reports that one again).
    pub available: u64,
    pub hold: u64,
    /// The same id and body came before: nothing moved this time.
    pub replayed: bool,
    pub error: Option<TransferError>,
}
