//! API keys for machines: `aloft_<id>_<secret>`. The id names the key (listed, revoked, shown in the audit
//! trail as `apikey:<id>`); the secret is shown once at creation and only its SHA-256 is stored. A secret of
//! 32 random base62 characters (190 bits) needs no slow hash: nobody can guess one to match a digest.

use crate::error::ApiKeyError;
use rand::Rng;
use sha2::{Digest, Sha256};

const PREFIX: &str = "aloft_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A new key: what to give the caller once (`key`) and what to store (`id`, `secret_hash`).
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub secret_hash: String,
}

fn random(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

pub fn generate() -> NewKey {
    // Ids are lowercase so they read well in names and URLs.
    let id = random(ID_LEN, ID_ALPHABET);
    let secret = random(SECRET_LEN, ALPHABET);
    NewKey {
        key: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `credential` looks like an API key (rather than a JWT).
pub fn is_api_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// The id and secret of a key, or why it is not one (never echoing the secret).
pub fn parse(credential: &str) -> Result<(&str, &str), ApiKeyError> {
    let rest = credential.strip_prefix(PREFIX).ok_or(ApiKeyError::Prefix)?;
    let (id, secret) = rest.split_once('_').ok_or(ApiKeyError::Shape)?;
    if id.len() != ID_LEN || secret.len() != SECRET_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiKeyError::Malformed);
    }
    Ok((id, secret))
}

/// Compares digests without an early exit, so timing says nothing about how much matched.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_only_its_secret_matches_the_hash() {
        let key = generate();
        assert!(is_api_key(&key.key));
        let (id, secret) = parse(&key.key).expect("parses");
        assert_eq!(id, key.id);
        assert!(digests_equal(&hash_secret(secret), &key.secret_hash));
        assert!(!digests_equal(&hash_secret("guess"), &key.secret_hash));
        assert!(!key.secret_hash.contains(secret));
        assert!(parse("aloft_short_x").is_err());
        assert!(parse("eyJhbGciOi.x.y").is_err());
    }
}
