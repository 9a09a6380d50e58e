//! API keys for the generator's accounts: minted from a data directory's secret (the same
//! HMAC the server checks) or read from a file.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tachyon_gateway::auth::{KeyRing, SECRET_FILE};
use tachyon_proto::AccountId;

/// Keys for accounts `lt-0001` … `lt-<n>`, minted with the secret in `data_dir` (which
/// must already exist: the server creates it on first start).
///
/// # Errors
/// No readable secret in `data_dir`.
pub fn mint(data_dir: &Path, accounts: usize) -> Result<Vec<String>> {
    let ring = ring(data_dir)?;
    (1..=accounts)
        .map(|i| {
            let account = AccountId::parse(&format!("lt-{i:04}"))?;
            Ok(ring.mint(account).expose().to_owned())
        })
        .collect()
}

/// The key of one named account, minted with the secret in `data_dir`.
///
/// # Errors
/// No readable secret, or an invalid account name.
pub fn mint_for(data_dir: &Path, account: &str) -> Result<String> {
    let account = AccountId::parse(account)?;
    Ok(ring(data_dir)?.mint(account).expose().to_owned())
}

fn ring(data_dir: &Path) -> Result<KeyRing> {
    let path = data_dir.join(SECRET_FILE);
    let secret = fs::read(&path).with_context(|| {
        format!("reading {} (start the server on this data dir once first, or give --keys-file)", path.display())
    })?;
    KeyRing::from_secret(&secret).with_context(|| format!("{}", path.display()))
}

/// Keys read from a file, one per line (blank lines and `#` comments skipped), at most
/// `accounts` of them.
///
/// # Errors
/// An unreadable or empty file.
pub fn from_file(path: &Path, accounts: Option<usize>) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(accounts.unwrap_or(usize::MAX))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        bail!("{} holds no keys", path.display());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_verify_with_the_servers_key_ring() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(mint(dir.path(), 2).is_err(), "no secret yet");
        let ring = KeyRing::load_or_create(dir.path()).expect("secret");
        let keys = mint(dir.path(), 3).expect("minted");
        assert_eq!(keys.len(), 3);
        assert_eq!(ring.verify(&keys[2]).expect("valid").account.to_string(), "lt-0003");
        let file = dir.path().join("keys.txt");
        fs::write(&file, format!("# keys\n{}\n\n{}\n", keys[0], keys[1])).expect("written");
        assert_eq!(from_file(&file, None).expect("read"), keys[..2].to_vec());
        assert_eq!(from_file(&file, Some(1)).expect("read").len(), 1);
    }
}
