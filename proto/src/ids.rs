//! Identifiers.
//!
//! All ids are fixed-size and `Copy`, so commands and events never allocate:
//! - [`OrderId`] and [`TradeId`] are `u64` (the gateway stamps order ids; the engine numbers
//!   trades per symbol). The API renders them as decimal strings.
//! - [`AccountId`] packs an account name of 1–20 characters of `[A-Za-z0-9_-]` into a
//!   `u128`, reversibly: no registry is needed to map names to numbers and back.
//! - [`ClientOrderId`] holds up to 36 characters of `[A-Za-z0-9_-]` inline.
//! - [`SymbolId`] is the permanent numeric id a symbol has in the configuration.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An order id, unique per exchange; stamped by the gateway.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct OrderId(pub u64);

/// A trade id, unique per symbol; assigned by the engine in match order, starting at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct TradeId(pub u64);

/// A symbol's permanent numeric id, from the configuration.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct SymbolId(pub u32);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(OrderId, TradeId, SymbolId);

/// Why a string is not a valid account or client order id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may only contain letters, digits, '_' and '-'")]
    BadCharacter,
}

/// The id alphabet shared by account ids and client order ids.
const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";

const fn alphabet_index(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        b'_' => Some(62),
        b'-' => Some(63),
        _ => None,
    }
}

/// An account, e.g. `alice`: 1–20 characters of `[A-Za-z0-9_-]`, packed into a `u128`.
///
/// Layout: bits 120..125 hold the length, character `i` sits in bits `6i..6i+6`. The
/// packing is a bijection between valid names and the values [`AccountId::parse`] yields,
/// so equal names give equal ids and the name can always be recovered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct AccountId(u128);

impl AccountId {
    /// Longest account name.
    pub const MAX_LEN: usize = 20;

    /// Parses and packs an account name.
    ///
    /// # Errors
    /// [`IdError`] if the name is empty, longer than 20 characters or has a character
    /// outside `[A-Za-z0-9_-]`.
    pub fn parse(name: &str) -> Result<Self, IdError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() {
            return Err(IdError::Empty);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        let mut packed = (bytes.len() as u128) << 120;
        for (i, &c) in bytes.iter().enumerate() {
            let v = alphabet_index(c).ok_or(IdError::BadCharacter)?;
            packed |= u128::from(v) << (6 * i);
        }
        Ok(Self(packed))
    }

    /// The packed value (stable; used in snapshots and storage keys).
    pub fn to_raw(self) -> u128 {
        self.0
    }

    /// Rebuilds an id from [`AccountId::to_raw`], checking that it is a valid packing.
    ///
    /// # Errors
    /// [`IdError`] if `raw` is not the packing of a valid name.
    pub fn from_raw(raw: u128) -> Result<Self, IdError> {
        let len = (raw >> 120) as usize;
        if len == 0 {
            return Err(IdError::Empty);
        }
        if len > Self::MAX_LEN || raw >> (6 * len) != (len as u128) << (120 - 6 * len) {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        Ok(Self(raw))
    }

    fn len(self) -> usize {
        (self.0 >> 120) as usize
    }

    fn char_at(self, i: usize) -> char {
        char::from(ALPHABET[((self.0 >> (6 * i)) & 63) as usize])
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.len() {
            fmt::Write::write_char(f, self.char_at(i))?;
        }
        Ok(())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A client's own order id: up to 36 characters of `[A-Za-z0-9_-]`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ClientOrderId {
    len: u8,
    bytes: [u8; ClientOrderId::MAX_LEN],
}

impl ClientOrderId {
    /// Longest client order id.
    pub const MAX_LEN: usize = 36;

    /// Validates a client order id.
    ///
    /// # Errors
    /// [`IdError`] if it is empty, longer than 36 characters or has a character outside
    /// `[A-Za-z0-9_-]`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let src = s.as_bytes();
        if src.is_empty() {
            return Err(IdError::Empty);
        }
        if src.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        if src.iter().any(|&c| alphabet_index(c).is_none()) {
            return Err(IdError::BadCharacter);
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self { len: src.len() as u8, bytes })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII from the alphabet gets in (checked by `parse` and on archive access).
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientOrderId({})", self.as_str())
    }
}

impl FromStr for ClientOrderId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn account_round_trips() {
        let a = AccountId::parse("alice").expect("valid");
        assert_eq!(a.to_string(), "alice");
        assert_eq!(AccountId::from_raw(a.to_raw()), Ok(a));
        assert_ne!(a, AccountId::parse("alicf").expect("valid"));
        assert_ne!(AccountId::parse("a").expect("valid"), AccountId::parse("a0").expect("valid"));
    }

    #[test]
    fn account_rejects_bad_names() {
        assert_eq!(AccountId::parse(""), Err(IdError::Empty));
        assert_eq!(AccountId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(AccountId::parse("é"), Err(IdError::BadCharacter));
        assert_eq!(AccountId::parse(&"x".repeat(21)), Err(IdError::TooLong { max: 20 }));
        assert!(AccountId::from_raw(0).is_err());
        assert!(AccountId::from_raw(u128::MAX).is_err());
        // Length 1 but a second character present: not a canonical packing.
        assert!(AccountId::from_raw((1u128 << 120) | (5 << 6)).is_err());
    }

    #[test]
    fn client_order_id_limits() {
        assert_eq!(ClientOrderId::parse("my-1").expect("valid").as_str(), "my-1");
        assert!(ClientOrderId::parse(&"a".repeat(36)).is_ok());
        assert_eq!(ClientOrderId::parse(&"a".repeat(37)), Err(IdError::TooLong { max: 36 }));
        assert_eq!(ClientOrderId::parse("a.b"), Err(IdError::BadCharacter));
        assert_eq!(ClientOrderId::parse(""), Err(IdError::Empty));
    }

    proptest! {
        #[test]
        fn account_packing_is_a_bijection(name in "[A-Za-z0-9_-]{1,20}", other in "[A-Za-z0-9_-]{1,20}") {
            let a = AccountId::parse(&name).expect("valid by construction");
            prop_assert_eq!(a.to_string(), name.clone());
            prop_assert_eq!(AccountId::from_raw(a.to_raw()), Ok(a));
            let b = AccountId::parse(&other).expect("valid by construction");
            prop_assert_eq!(a == b, name == other);
        }
    }
}
