//! Sessions: the encrypted record in the cache, the opaque cookie value that names it, and
//! whether a back-channel logout has ended it.
//!
//! The cookie holds 32 random bytes (base64url); the cache key is the SHA-256 of that value,
//! so neither Redis keys nor Redis values reveal a usable session id or token. The record
//! is sealed with the [`Cipher`] (AES-256-GCM), bound to its cache key as associated data.
//!
//! Logout markers: sessions are not indexed by provider session; a back-channel logout
//! leaves a marker per provider session (`logout:sid:<hash>`) or user (`logout:sub:<hash>`)
//! holding the logout time, kept for `sessionMaxAge`, and [`Sessions::load`] checks them.
//! Whoever can delete keys in Redis can remove a marker: its *absence* grants access, so no
//! seal can protect it (see `docs/security.md`).

mod cipher;

pub use cipher::{Cipher, Purpose, random_token};

use crate::cache::{Cache, CacheError, Kind, token_key};
use crate::claims::{Claims, str_claim};
use crate::clock::now;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
#[derive(Debug, Clone)]
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
            self.cache.record_rejected(Kind::Session);
            tracing::warn!(
                "a session record failed to decrypt (key rotated away, tampered, or copied from another key)"
            );
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
        if let Some(sid) = str_claim(&record.claims, "sid")
            && self.cache.get_json::<String>(Kind::Logout, &sid_marker(sid)).await?.is_some()
        {
            return Ok(true);
        }
        if let Some(sub) = str_claim(&record.claims, "sub")
            && let Some(at) = self.cache.get_json::<String>(Kind::Logout, &sub_marker(sub)).await?
        {
            return Ok(at.parse::<u64>().is_ok_and(|at| at >= record.created_at));
        }
        Ok(false)
    }

    /// Ends, on every replica, every session of a provider session (`sid`), or, without a
    /// `sid`, every session of a user (`sub`) created until now (back-channel logout). The
    /// marker lives for `sessionMaxAge`, as long as any session it could end; it is written
    /// to the shared store or not at all (an error).
    pub async fn end_provider_session(&self, sid: Option<&str>, sub: Option<&str>) -> Result<(), CacheError> {
        let marker = match (sid, sub) {
            (Some(sid), _) => sid_marker(sid),
            (None, Some(sub)) => sub_marker(sub),
            (None, None) => return Ok(()),
        };
        self.cache.set_json(Kind::Logout, &marker, &now().to_string(), self.max_age).await
    }

    /// Ends a session on every replica (the cache's delete reaches every hybrid L1), or
    /// fails when the shared store cannot take the delete.
    pub async fn delete(&self, id: &str) -> Result<(), CacheError> {
        self.cache.delete(Kind::Session, &token_key(id)).await.map(|_| ())
    }
}

/// The logout marker for a provider session id.
fn sid_marker(sid: &str) -> String {
    format!("sid:{}", token_key(sid))
}

/// The logout marker for a user.
fn sub_marker(sub: &str) -> String {
    format!("sub:{}", token_key(sub))
}
