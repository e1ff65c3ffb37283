//! The AES-256-GCM ciphers that seal what authgate must be able to trust again later:
//! session records, login-flow cookies, verified-token entries in the cache.
//!
//! Each [`Purpose`] has its own key, derived (HKDF-SHA256, its own `info`) from
//! `sessionEncryptionKey`, so a value sealed for one purpose never opens as another: an
//! attacker can make authgate seal as many flow cookies as they like (one per login they
//! start, with plaintext they partly know), and none of that touches the key of the
//! session records. `previousSessionEncryptionKeys` still open what older keys sealed, so
//! keys can be rotated without logging everyone out.

use crate::config::Config;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const NONCE_LEN: usize = 12;

/// Random bytes, base64url: session ids, `state`, `nonce`, PKCE verifiers.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    B64.encode(buf)
}

/// What a cipher seals; each purpose has a key of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Session records in the cache.
    SessionRecord,
    /// Login-flow cookies (state, nonce, PKCE verifier, return path).
    FlowCookie,
    /// Verified bearer-token entries in the cache.
    VerifiedToken,
}

impl Purpose {
    /// HKDF salt and info. Session records keep the derivation they were first sealed
    /// with, so an upgrade does not log anyone out.
    fn derivation(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Purpose::SessionRecord => (b"authgate session key v1", b"aes-256-gcm"),
            Purpose::FlowCookie => (b"authgate key v2", b"flow-cookie aes-256-gcm v1"),
            Purpose::VerifiedToken => (b"authgate key v2", b"verified-token aes-256-gcm v1"),
        }
    }
}

/// AES-256-GCM with the current key and any previous ones, for one purpose.
pub struct Cipher {
    keys: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher").field("keys", &self.keys.len()).finish()
    }
}

fn derive(secret: &str, purpose: Purpose) -> Aes256Gcm {
    let (salt, info) = purpose.derivation();
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(salt), secret.as_bytes());
    let mut key = [0u8; 32];
    hkdf.expand(info, &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(&key.into())
}

/// A memo of opened sealed values: the value opened from one store key is kept next to
/// the exact sealed bytes it came from, and reused only when the store answers those very
/// bytes again. Opening (AES-GCM, then JSON) is most of what a cached request costs; a memo
/// of a pure function changes no answer: replaced or tampered bytes are opened again.
/// Lives in process memory only.
pub struct OpenedCache<T> {
    entries: moka::sync::Cache<String, std::sync::Arc<(Vec<u8>, T)>>,
}

impl<T> Clone for OpenedCache<T> {
    fn clone(&self) -> Self {
        OpenedCache { entries: self.entries.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static> OpenedCache<T> {
    /// At most `capacity` entries (the hot ones), none older than `ttl`.
    pub fn new(capacity: u64, ttl: std::time::Duration) -> Self {
        OpenedCache { entries: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build() }
    }

    /// The value `sealed` (read from the store under `key`) opens to: the memo's if it was
    /// opened from these same bytes, else `open(sealed)` (remembered when it succeeds).
    pub fn get_or_open(&self, key: &str, sealed: Vec<u8>, open: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if let Some(opened) = self.entries.get(key)
            && opened.0 == sealed
        {
            return Some(opened.1.clone());
        }
        let value = open(&sealed)?;
        self.entries.insert(key.to_owned(), std::sync::Arc::new((sealed, value.clone())));
        Some(value)
    }

    pub fn forget(&self, key: &str) {
        self.entries.invalidate(key);
    }
}

impl Cipher {
    pub fn new(config: &Config, purpose: Purpose) -> Self {
        let mut keys = vec![derive(config.session_encryption_key.expose(), purpose)];
        keys.extend(config.previous_session_encryption_keys.iter().map(|k| derive(k.expose(), purpose)));
        Cipher { keys }
    }

    /// `nonce || ciphertext+tag`, under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self.keys[0]
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    /// Opens what any of the keys sealed; `None` for anything tampered, truncated or foreign.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| key.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad }).ok())
    }

    /// Seals a value into cookie-safe text.
    pub fn seal_text(&self, value: &impl Serialize, aad: &str) -> String {
        let json = serde_json::to_vec(value).expect("cookie values serialize");
        B64.encode(self.seal(&json, aad.as_bytes()))
    }

    pub fn open_text<T: for<'de> Deserialize<'de>>(&self, text: &str, aad: &str) -> Option<T> {
        let sealed = B64.decode(text.trim()).ok()?;
        serde_json::from_slice(&self.open(&sealed, aad.as_bytes())?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(key: &str, previous: &[&str]) -> Config {
        Config {
            session_encryption_key: Secret::new(key),
            previous_session_encryption_keys: previous.iter().map(|k| Secret::new(*k)).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn seals_and_opens_with_rotation() {
        let old = Cipher::new(&config("old-key-old-key-old-key-old-key-1", &[]), Purpose::SessionRecord);
        let sealed = old.seal(b"record", b"aad");
        let rotated = Cipher::new(
            &config("new-key-new-key-new-key-new-key-2", &["old-key-old-key-old-key-old-key-1"]),
            Purpose::SessionRecord,
        );
        assert_eq!(rotated.open(&sealed, b"aad").unwrap(), b"record");
        let forgotten = Cipher::new(&config("new-key-new-key-new-key-new-key-2", &[]), Purpose::SessionRecord);
        assert!(forgotten.open(&sealed, b"aad").is_none());
    }

    #[test]
    fn refuses_tampering_truncation_and_other_aad() {
        let cipher = Cipher::new(&config("a-key-a-key-a-key-a-key-a-key-a-k", &[]), Purpose::SessionRecord);
        let mut sealed = cipher.seal(b"record", b"aad");
        assert!(cipher.open(&sealed, b"other").is_none());
        assert!(cipher.open(&sealed[..10], b"aad").is_none());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(cipher.open(&sealed, b"aad").is_none());
        assert!(cipher.open_text::<String>("%%%not base64%%%", "x").is_none());
    }

    /// L8: what is sealed for one purpose never opens as another.
    #[test]
    fn l8_purposes_have_keys_of_their_own() {
        let config = config("one-key-for-all-one-key-for-all-1", &[]);
        let flow = Cipher::new(&config, Purpose::FlowCookie);
        let sealed = flow.seal(b"{}", b"aad");
        assert!(flow.open(&sealed, b"aad").is_some());
        for other in [Purpose::SessionRecord, Purpose::VerifiedToken] {
            assert!(Cipher::new(&config, other).open(&sealed, b"aad").is_none(), "{other:?}");
        }
    }
}
