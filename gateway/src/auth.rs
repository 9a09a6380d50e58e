//! API keys.
//!
//! A key names its account and proves it: `tk1.<account>.<tag>`, where `tag` is
//! HMAC-SHA256 of the account under the deployment's key secret, base64url without
//! padding. Any gateway holding the same secret verifies any key with no lookup, which is
//! what lets `tachyon keys mint` and many gateways agree without a database. Rotating the
//! secret revokes every key at once; revoking single keys needs a denylist (not yet).
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

/// The key format's prefix and version.
const PREFIX: &str = "tk1";
/// Length of the key secret.
pub const SECRET_BYTES: usize = 32;
/// File name of the secret inside the data directory.
pub const SECRET_FILE: &str = "api-keys.secret";

/// Why a key or a key secret was refused.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("the API key is malformed")]
    Malformed,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the key secret must be {SECRET_BYTES} bytes, found {0}")]
    BadSecret(usize),
    #[error("key secret file: {0}")]
    Io(#[from] std::io::Error),
    #[error("no randomness available for a new key secret: {0}")]
    Random(String),
}

/// A minted API key. Redacted when printed; [`ApiKey::expose`] gives the key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    account: AccountId,
    key: String,
}

impl ApiKey {
    /// The account the key belongs to.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The key, to hand to its owner (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({PREFIX}.{}.<redacted>)", self.account)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}.{}.<redacted>", self.account)
    }
}

/// Mints and verifies API keys under one secret.
#[derive(Clone)]
pub struct KeyRing {
    secret: [u8; SECRET_BYTES],
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
        let secret: [u8; SECRET_BYTES] = secret.try_into().map_err(|_| AuthError::BadSecret(secret.len()))?;
        Ok(Self { secret })
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
        Ok(Self { secret })
    }

    fn tag(&self, account: AccountId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts a key of any length");
        mac.update(b"tachyon-api-key-v1:");
        mac.update(account.to_string().as_bytes());
        mac
    }

    /// A key for `account`. Deterministic: minting twice gives the same key.
    pub fn mint(&self, account: AccountId) -> ApiKey {
        let tag = URL_SAFE_NO_PAD.encode(self.tag(account).finalize().into_bytes());
        ApiKey { account, key: format!("{PREFIX}.{account}.{tag}") }
    }

    /// The account a key belongs to, if the key is genuine. The tag is compared in
    /// constant time.
    ///
    /// # Errors
    /// [`AuthError::Malformed`] for something that is not a key of this format,
    /// [`AuthError::Invalid`] for a well-formed key that this secret did not mint.
    pub fn verify(&self, key: &str) -> Result<AccountId, AuthError> {
        let mut parts = key.split('.');
        let (Some(PREFIX), Some(account), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let account = AccountId::parse(account).map_err(|_| AuthError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| AuthError::Malformed)?;
        self.tag(account).verify_slice(&tag).map_err(|_| AuthError::Invalid)?;
        Ok(account)
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
        assert_eq!(ring.verify(key.expose()).expect("genuine"), alice());
        assert_eq!(ring.mint(alice()), key, "minting is deterministic");
        let bob = AccountId::parse("bob_2-x").expect("valid");
        assert_eq!(ring.verify(ring.mint(bob).expose()).expect("genuine"), bob);
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
        assert_eq!(key.to_string(), "tk1.alice.<redacted>");
    }

    #[test]
    fn the_data_dir_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = KeyRing::load_or_create(dir.path()).expect("creates");
        let key = first.mint(alice());
        let again = KeyRing::load_or_create(dir.path()).expect("loads");
        assert_eq!(again.verify(key.expose()).expect("same secret"), alice());
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
