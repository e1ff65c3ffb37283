//! Sessions: the encrypted record in the cache, the opaque cookie that names it, and the
//! AES-256-GCM cipher both the records and the login-flow cookies are sealed with.
//!
//! The cookie holds 32 random bytes (base64url); the cache key is the SHA-256 of that value,
//! so neither Redis keys nor Redis values reveal a usable session id or token. The record
//! is sealed with a key derived (HKDF-SHA256) from `sessionEncryptionKey`, bound to its
//! cache key as associated data; `previousSessionEncryptionKeys` still open older records.

use crate::cache::{Cache, CacheError, Kind, token_key};
use crate::config::Config;
use crate::oidc::bearer::Claims;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const NONCE_LEN: usize = 12;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Random bytes, base64url: session ids, `state`, `nonce`, PKCE verifiers.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    B64.encode(buf)
}

/// AES-256-GCM with the current key and any previous ones.
pub struct Cipher {
    keys: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher").field("keys", &self.keys.len()).finish()
    }
}

fn derive(secret: &str) -> Aes256Gcm {
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"authgate session key v1"), secret.as_bytes());
    let mut key = [0u8; 32];
    hkdf.expand(b"aes-256-gcm", &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(&key.into())
}

impl Cipher {
    pub fn new(config: &Config) -> Self {
        let mut keys = vec![derive(config.session_encryption_key.expose())];
        keys.extend(config.previous_session_encryption_keys.iter().map(|k| derive(k.expose())));
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

/// What a session remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// ID-token claims (plus userinfo, when fetched).
    pub claims: Claims,
    pub id_token: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires (epoch seconds).
    pub access_expires_at: u64,
    /// When the session was created; `sessionMaxAge` counts from here (absolute, not sliding).
    pub created_at: u64,
}

/// Where sessions live.
#[derive(Debug)]
pub struct Sessions {
    cache: Cache,
    cipher: std::sync::Arc<Cipher>,
    max_age: Duration,
}

impl Sessions {
    pub fn new(cache: Cache, cipher: std::sync::Arc<Cipher>, max_age: Duration) -> Self {
        Sessions { cache, cipher, max_age }
    }

    /// Stores a new session; returns the id for the cookie.
    pub async fn create(&self, record: &SessionRecord) -> Result<String, CacheError> {
        let id = random_token(32);
        self.save(&id, record).await?;
        Ok(id)
    }

    /// Replaces a session's record (after a refresh), keeping its absolute expiry.
    pub async fn save(&self, id: &str, record: &SessionRecord) -> Result<(), CacheError> {
        let key = token_key(id);
        let remaining = (record.created_at + self.max_age.as_secs()).saturating_sub(now());
        if remaining == 0 {
            return Ok(());
        }
        let sealed = self.cipher.seal(&serde_json::to_vec(record).expect("records serialize"), key.as_bytes());
        self.cache.set_raw(Kind::Session, &key, &sealed, Duration::from_secs(remaining)).await
    }

    /// The live session a cookie names, if any. Tampered, foreign, expired or unknown ids
    /// all read as "no session".
    pub async fn load(&self, id: &str) -> Result<Option<SessionRecord>, CacheError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Ok(None);
        }
        let key = token_key(id);
        let Some(sealed) = self.cache.get_raw(Kind::Session, &key).await? else { return Ok(None) };
        let Some(plain) = self.cipher.open(&sealed, key.as_bytes()) else {
            tracing::warn!("a session record failed to decrypt (key rotated away, or tampered)");
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<SessionRecord>(&plain) else { return Ok(None) };
        if record.created_at + self.max_age.as_secs() <= now() {
            return Ok(None);
        }
        if self.logged_out(&record).await? {
            let _ = self.cache.delete(Kind::Session, &key).await;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Whether a back-channel logout ended this session: a marker for its provider session
    /// (`sid`), or for its user (`sub`) newer than the session.
    async fn logged_out(&self, record: &SessionRecord) -> Result<bool, CacheError> {
        use crate::oidc::backchannel::{sid_marker, sub_marker};
        if let Some(sid) = record.claims.get("sid").and_then(|s| s.as_str())
            && self.cache.get_json::<String>(Kind::Logout, &sid_marker(sid)).await?.is_some()
        {
            return Ok(true);
        }
        if let Some(sub) = record.claims.get("sub").and_then(|s| s.as_str())
            && let Some(at) = self.cache.get_json::<String>(Kind::Logout, &sub_marker(sub)).await?
        {
            return Ok(at.parse::<u64>().is_ok_and(|at| at >= record.created_at));
        }
        Ok(false)
    }

    /// Ends a session on every replica (the cache's delete reaches every hybrid L1).
    pub async fn delete(&self, id: &str) -> Result<(), CacheError> {
        self.cache.delete(Kind::Session, &token_key(id)).await.map(|_| ())
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
        let old = Cipher::new(&config("old-key-old-key-old-key-old-key-1", &[]));
        let sealed = old.seal(b"record", b"aad");
        let rotated = Cipher::new(&config("new-key-new-key-new-key-new-key-2", &["old-key-old-key-old-key-old-key-1"]));
        assert_eq!(rotated.open(&sealed, b"aad").unwrap(), b"record");
        let forgotten = Cipher::new(&config("new-key-new-key-new-key-new-key-2", &[]));
        assert!(forgotten.open(&sealed, b"aad").is_none());
    }

    #[test]
    fn refuses_tampering_truncation_and_other_aad() {
        let cipher = Cipher::new(&config("a-key-a-key-a-key-a-key-a-key-a-k", &[]));
        let mut sealed = cipher.seal(b"record", b"aad");
        assert!(cipher.open(&sealed, b"other").is_none());
        assert!(cipher.open(&sealed[..10], b"aad").is_none());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(cipher.open(&sealed, b"aad").is_none());
        assert!(cipher.open_text::<String>("%%%not base64%%%", "x").is_none());
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let cipher = Cipher::new(&config("a-key-a-key-a-key-a-key-a-key-a-k", &[]));
        let sealed = cipher.seal(b"eyJhbGciOiJSUzI1NiJ9.access-token", b"k");
        assert!(!sealed.windows(12).any(|w| w == b"access-token"));
    }
}
