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

pub use cipher::{Cipher, OpenedCache, Purpose, random_token};

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

/// Hot sessions whose opened record is kept (see [`Sessions::load`]).
const OPENED_SESSIONS: u64 = 10_000;

/// Where sessions live.
#[derive(Clone)]
pub struct Sessions {
    cache: Cache,
    cipher: std::sync::Arc<Cipher>,
    max_age: Duration,
    /// Hot sessions' opened records (a refreshed, replaced or tampered record is opened
    /// again, a deleted one never reached): see [`OpenedCache`].
    opened: OpenedCache<std::sync::Arc<SessionRecord>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(cache: Cache, cipher: std::sync::Arc<Cipher>, max_age: Duration) -> Self {
        Sessions { cache, cipher, max_age, opened: OpenedCache::new(OPENED_SESSIONS, max_age) }
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
    /// all read as "no session". Shared: a hot session's record is not copied per request.
    pub async fn load(&self, id: &str) -> Result<Option<std::sync::Arc<SessionRecord>>, CacheError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Ok(None);
        }
        let key = token_key(id);
        let Some(sealed) = self.cache.get_raw(Kind::Session, &key).await? else { return Ok(None) };
        let opened = self.opened.get_or_open(&key, sealed, |sealed| {
            let Some(plain) = self.cipher.open(sealed, key.as_bytes()) else {
                self.cache.record_rejected(Kind::Session);
                tracing::warn!(
                    "a session record failed to decrypt (key rotated away, tampered, or copied from another key)"
                );
                return None;
            };
            serde_json::from_slice::<SessionRecord>(&plain).ok().map(std::sync::Arc::new)
        });
        let Some(record) = opened else { return Ok(None) };
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
        let key = token_key(id);
        self.opened.forget(&key);
        self.cache.delete(Kind::Session, &key).await.map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::memory::MemoryStore;

    fn sessions() -> (Sessions, Cache) {
        let cache = Cache::new(std::sync::Arc::new(MemoryStore::new(1000, 1 << 20)));
        let config = crate::config::Config {
            session_encryption_key: crate::config::Secret::new("9f2c4e7a1b3d5f60718293a4b5c6d7e8f9a0b1c2"),
            ..Default::default()
        };
        let cipher = std::sync::Arc::new(Cipher::new(&config, Purpose::SessionRecord));
        (Sessions::new(cache.clone(), cipher, Duration::from_secs(3600)), cache)
    }

    fn record(sub: &str) -> SessionRecord {
        let mut claims = Claims::new();
        claims.insert("sub".into(), serde_json::json!(sub));
        SessionRecord {
            claims,
            id_token: "id".into(),
            access_token: format!("access-{sub}"),
            refresh_token: None,
            access_expires_at: now() + 300,
            created_at: now(),
        }
    }

    /// The opened-record memo answers only for the exact bytes the store holds: a record
    /// replaced in the store (a refresh, or anyone writing to Redis) is opened again, and
    /// bytes that do not open are no session, whatever was opened before.
    #[tokio::test]
    async fn an_opened_record_is_reused_only_for_the_same_sealed_bytes() {
        let (sessions, cache) = sessions();
        let id = sessions.create(&record("alice")).await.unwrap();
        assert_eq!(sessions.load(&id).await.unwrap().unwrap().access_token, "access-alice");
        assert_eq!(sessions.load(&id).await.unwrap().unwrap().access_token, "access-alice", "memo hit");

        sessions.save(&id, &record("bob")).await.unwrap();
        assert_eq!(sessions.load(&id).await.unwrap().unwrap().access_token, "access-bob", "replaced: opened again");

        cache
            .set_raw(Kind::Session, &token_key(&id), b"not a sealed record at all", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(sessions.load(&id).await.unwrap(), None, "tampered: no session");
        assert_eq!(cache.stats().rejected(Kind::Session), 1);

        let id = sessions.create(&record("carol")).await.unwrap();
        assert!(sessions.load(&id).await.unwrap().is_some());
        sessions.delete(&id).await.unwrap();
        assert_eq!(sessions.load(&id).await.unwrap(), None, "deleted: gone");
    }
}
