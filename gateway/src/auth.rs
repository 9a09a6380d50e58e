//! API keys.
//!
//! A key names its account, its scope and its id, and proves them:
//! `tk2.<account>.<scope>.<key_id>.<tag>`, where `scope` is `trade` or `read`, `key_id` 16
//! hex digits (random at minting) and `tag` HMAC-SHA256 of the other parts under the
//! deployment's key secret, base64url without padding. Any gateway holding the same secret
//! verifies any key with no lookup, which is what lets `tachyon keys mint` and many
//! gateways agree without a database; a revoked key is refused by its id
//! ([`crate::keys::Revocations`]).
//!
//! Keys of the first format, `tk1.<account>.<tag>` (HMAC of the account alone), keep
//! working: they have scope `trade` and an id derived from the account under the secret
//! ([`KeyRing::legacy_id`]), so `tachyon keys list` shows them and `tachyon keys revoke`
//! revokes them like any other. Migrating is minting a `tk2` key, handing it over and
//! revoking the old one.
//!
//! The secret is 32 random bytes, created on first use in the data directory
//! (`api-keys.secret`, mode 0600, written atomically) or supplied by the deployment.
//! Keys are secrets: [`ApiKey`] prints as `tk1.<account>.<redacted>` in `Debug` and
//! `Display`, so a key cannot reach a log by accident; only [`ApiKey::expose`] yields it.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tachyon_proto::AccountId;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The key formats' prefixes: the first (account only) and the current one.
const PREFIX_V1: &str = "tk1";
const PREFIX: &str = "tk2";
/// Length of the key secret.
pub const SECRET_BYTES: usize = 32;
/// File name of the secret inside the data directory.
pub const SECRET_FILE: &str = "api-keys.secret";

/// Why a key or a key secret was refused.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("the API key is malformed")]
    Malformed,
    #[error("scope must be trade or read, not {0:?}")]
    BadScope(String),
    #[error("a key id is 16 hexadecimal digits, not {0:?}")]
    BadKeyId(String),
    #[error("the API key is not valid")]
    Invalid,
    #[error("the key secret must be {SECRET_BYTES} bytes, found {0}")]
    BadSecret(usize),
    #[error("key secret file: {0}")]
    Io(#[from] std::io::Error),
    #[error("no randomness available for a new key secret: {0}")]
    Random(String),
}

/// What a key may do: `trade` everything its account may, `read` only the private GETs
/// and the `orders` channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Trade,
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trade => "trade",
            Self::Read => "read",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "trade" => Ok(Self::Trade),
            "read" => Ok(Self::Read),
            other => Err(AuthError::BadScope(other.to_string())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's id: names the key (in `keys list`, `keys revoke`, logs) without being secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, AuthError> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(AuthError::BadKeyId(s.to_string()));
        }
        u64::from_str_radix(s, 16).map(Self).map_err(|_| AuthError::BadKeyId(s.to_string()))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who a genuine key speaks for, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account: AccountId,
    pub scope: Scope,
    pub key_id: KeyId,
}

/// A minted API key. Redacted when printed; [`ApiKey::expose`] gives the key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    account: AccountId,
    key_id: KeyId,
    key: String,
}

impl ApiKey {
    /// The account the key belongs to.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The key, to hand to its owner (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, key_id {})", self.account, self.key_id)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.<redacted>", self.account)
    }
}

/// Mints and verifies API keys under one secret.
#[derive(Clone)]
pub struct KeyRing {
    /// HMAC-SHA256 keyed with the secret: the key schedule runs once here, and every tag
    /// starts from a copy of it.
    keyed: HmacSha256,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyRing(<secret redacted>)")
    }
}

impl KeyRing {
    /// A key ring with the given secret.
    ///
    /// # Errors
    /// [`AuthError::BadSecret`] unless the secret is exactly 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() != SECRET_BYTES {
            return Err(AuthError::BadSecret(secret.len()));
        }
        Ok(Self { keyed: HmacSha256::new_from_slice(secret).expect("HMAC accepts a key of any length") })
    }

    /// The key ring of a data directory: its secret file, created with a fresh random
    /// secret (mode 0600, written atomically) if there is none yet.
    ///
    /// # Errors
    /// I/O errors, a secret file of the wrong size, or no system randomness.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(SECRET_FILE);
        match fs::read(&path) {
            Ok(bytes) => return Self::from_secret(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs::create_dir_all(data_dir)?;
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::getrandom(&mut secret).map_err(|e| AuthError::Random(e.to_string()))?;
        let tmp = data_dir.join(format!("{SECRET_FILE}.tmp"));
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&secret)?;
        file.sync_all()?;
        // If another process created the secret meanwhile, keep theirs: keys already
        // minted under it must stay valid.
        match fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                return Self::from_secret(&fs::read(&path)?);
            }
            Err(e) => return Err(e.into()),
        }
        fs::remove_file(&tmp)?;
        fs::File::open(data_dir)?.sync_all()?;
        Self::from_secret(&secret)
    }

    fn mac(&self, domain: &[u8], parts: &[&str]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(domain);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b":");
            }
            mac.update(part.as_bytes());
        }
        mac
    }

    fn tag_v1(&self, account: &str) -> HmacSha256 {
        self.mac(b"tachyon-api-key-v1:", &[account])
    }

    fn tag_v2(&self, account: &str, scope: Scope, key_id: &str) -> HmacSha256 {
        self.mac(b"tachyon-api-key-v2:", &[account, scope.as_str(), key_id])
    }

    /// A new key for `account` with `scope` and a random id.
    ///
    /// # Errors
    /// [`AuthError::Random`] without system randomness.
    pub fn mint_scoped(&self, account: AccountId, scope: Scope) -> Result<ApiKey, AuthError> {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| AuthError::Random(e.to_string()))?;
        Ok(self.mint_with_id(account, scope, KeyId(u64::from_le_bytes(id))))
    }

    /// The key for `account` with `scope` and `key_id` (deterministic).
    pub fn mint_with_id(&self, account: AccountId, scope: Scope, key_id: KeyId) -> ApiKey {
        let (name, id) = (account.to_string(), key_id.to_string());
        let tag = URL_SAFE_NO_PAD.encode(self.tag_v2(&name, scope, &id).finalize().into_bytes());
        ApiKey { account, key_id, key: format!("{PREFIX}.{name}.{scope}.{id}.{tag}") }
    }

    /// The first-format (`tk1`) key of `account`: scope `trade`, id
    /// [`KeyRing::legacy_id`]. Deterministic; still accepted, for keys handed out before
    /// scopes existed (and tests).
    pub fn mint(&self, account: AccountId) -> ApiKey {
        let tag = URL_SAFE_NO_PAD.encode(self.tag_v1(&account.to_string()).finalize().into_bytes());
        ApiKey { account, key_id: self.legacy_id(account), key: format!("{PREFIX_V1}.{account}.{tag}") }
    }

    /// The id of `account`'s first-format key: derived from the account under the secret,
    /// so it can be listed and revoked, and never equal to another account's.
    pub fn legacy_id(&self, account: AccountId) -> KeyId {
        self.legacy_id_of(&account.to_string())
    }

    fn legacy_id_of(&self, account: &str) -> KeyId {
        let digest = self.mac(b"tachyon-api-key-v1-id:", &[account]).finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(u64::from_le_bytes(id))
    }

    /// Who a key speaks for, if the key is genuine (either format). The tag is compared in
    /// constant time. Revocation is not checked here.
    ///
    /// # Errors
    /// [`AuthError::Malformed`] for something that is not a key of either format,
    /// [`AuthError::Invalid`] for a well-formed key that this secret did not mint.
    pub fn verify(&self, key: &str) -> Result<Identity, AuthError> {
        // At most five dot-separated fields, without allocating (this runs on every request).
        let mut fields = [""; 5];
        let mut count = 0;
        for field in key.split('.') {
            *fields.get_mut(count).ok_or(AuthError::Malformed)? = field;
            count += 1;
        }
        match &fields[..count] {
            [PREFIX_V1, account, tag] => {
                let id = AccountId::parse(account).map_err(|_| AuthError::Malformed)?;
                let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| AuthError::Malformed)?;
                self.tag_v1(account).verify_slice(&tag).map_err(|_| AuthError::Invalid)?;
                Ok(Identity { account: id, scope: Scope::Trade, key_id: self.legacy_id_of(account) })
            }
            [PREFIX, account, scope, key_id, tag] => {
                let id = AccountId::parse(account).map_err(|_| AuthError::Malformed)?;
                let scope: Scope = scope.parse().map_err(|_| AuthError::Malformed)?;
                let parsed: KeyId = key_id.parse().map_err(|_| AuthError::Malformed)?;
                let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| AuthError::Malformed)?;
                self.tag_v2(account, scope, key_id).verify_slice(&tag).map_err(|_| AuthError::Invalid)?;
                Ok(Identity { account: id, scope, key_id: parsed })
            }
            _ => Err(AuthError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AccountId {
        AccountId::parse("alice").expect("valid")
    }

    #[test]
    fn minted_keys_verify_and_name_their_account() {
        let ring = KeyRing::from_secret(&[7u8; SECRET_BYTES]).expect("valid secret");
        let key = ring.mint(alice());
        assert!(key.expose().starts_with("tk1.alice."));
        let identity = ring.verify(key.expose()).expect("genuine");
        assert_eq!(
            (identity.account, identity.scope, identity.key_id),
            (alice(), Scope::Trade, ring.legacy_id(alice()))
        );
        assert_eq!(ring.mint(alice()), key, "minting is deterministic");
        let bob = AccountId::parse("bob_2-x").expect("valid");
        assert_eq!(ring.verify(ring.mint(bob).expose()).expect("genuine").account, bob);
        assert_ne!(ring.legacy_id(alice()), ring.legacy_id(bob));
    }

    #[test]
    fn scoped_keys_carry_their_scope_and_id() {
        let ring = KeyRing::from_secret(&[7u8; SECRET_BYTES]).expect("valid secret");
        let read = ring.mint_scoped(alice(), Scope::Read).expect("randomness");
        let trade = ring.mint_scoped(alice(), Scope::Trade).expect("randomness");
        assert_ne!(read.key_id(), trade.key_id(), "ids are random");
        assert!(read.expose().starts_with(&format!("tk2.alice.read.{}.", read.key_id())));
        let identity = ring.verify(read.expose()).expect("genuine");
        assert_eq!((identity.account, identity.scope, identity.key_id), (alice(), Scope::Read, read.key_id()));
        assert_eq!(ring.verify(trade.expose()).expect("genuine").scope, Scope::Trade);
        // Promoting a read key to trade, or moving it to another id, breaks its tag.
        for forged in [
            read.expose().replace(".read.", ".trade."),
            read.expose().replace(&read.key_id().to_string(), &trade.key_id().to_string()),
            read.expose().replace("tk2.alice.", "tk2.bob."),
        ] {
            assert!(matches!(ring.verify(&forged), Err(AuthError::Invalid)), "{forged}");
        }
        for garbage in
            ["tk2.alice.admin.0000000000000000.AAAA", "tk2.alice.read.00.AAAA", "tk2.alice.read.0000000000000000"]
        {
            assert!(matches!(ring.verify(garbage), Err(AuthError::Malformed)), "{garbage:?}");
        }
        assert_eq!("00000000000000ff".parse::<KeyId>().expect("valid"), KeyId(255));
        assert!("00000000000000FF".parse::<KeyId>().is_err() && "ff".parse::<KeyId>().is_err());
    }

    #[test]
    fn forged_altered_and_foreign_keys_are_refused() {
        let ring = KeyRing::from_secret(&[7u8; SECRET_BYTES]).expect("valid secret");
        let other = KeyRing::from_secret(&[8u8; SECRET_BYTES]).expect("valid secret");
        let key = ring.mint(alice()).expose().to_owned();
        // Another account's name with alice's tag.
        let swapped = key.replace("tk1.alice.", "tk1.bob.");
        assert!(matches!(ring.verify(&swapped), Err(AuthError::Invalid)));
        // One character of the tag changed.
        let mut altered = key.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert!(matches!(ring.verify(&altered), Err(AuthError::Invalid | AuthError::Malformed)));
        assert!(matches!(other.verify(&key), Err(AuthError::Invalid)));
        for garbage in ["", "tk1", "tk1.alice", "tk2.alice.AAAA", "tk1.al ice.AAAA", "tk1.alice.!!!", "tk1.alice.AA.BB"]
        {
            assert!(matches!(ring.verify(garbage), Err(AuthError::Malformed)), "{garbage:?}");
        }
    }

    #[test]
    fn keys_and_secrets_never_print() {
        let ring = KeyRing::from_secret(&[7u8; SECRET_BYTES]).expect("valid secret");
        let key = ring.mint(alice());
        let tag = key.expose().rsplit('.').next().expect("has a tag").to_owned();
        for shown in [format!("{key}"), format!("{key:?}"), format!("{ring:?}")] {
            assert!(!shown.contains(&tag), "{shown}");
        }
        assert_eq!(key.to_string(), "alice.<redacted>");
        let scoped = ring.mint_scoped(alice(), Scope::Read).expect("randomness");
        let tag = scoped.expose().rsplit('.').next().expect("has a tag").to_owned();
        assert!(!format!("{scoped:?} {scoped}").contains(&tag));
    }

    #[test]
    fn the_data_dir_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = KeyRing::load_or_create(dir.path()).expect("creates");
        let key = first.mint(alice());
        let again = KeyRing::load_or_create(dir.path()).expect("loads");
        assert_eq!(again.verify(key.expose()).expect("same secret").account, alice());
        let secret = fs::read(dir.path().join(SECRET_FILE)).expect("secret file");
        assert_eq!(secret.len(), SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().expect("tempdir");
        let stranger = KeyRing::load_or_create(other.path()).expect("creates");
        assert!(matches!(stranger.verify(key.expose()), Err(AuthError::Invalid)), "a fresh secret is random");
        fs::write(other.path().join(SECRET_FILE), b"short").expect("write");
        assert!(matches!(KeyRing::load_or_create(other.path()), Err(AuthError::BadSecret(5))));
    }
}
