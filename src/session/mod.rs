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
//!
//! The hot path: a session in use is opened once ([`OpenedCache`]: the record, and its
//! marker keys), and its markers are read again only when the store's absence epoch has
//! moved since they were last seen absent ([`crate::cache::AbsenceEpoch`]: in memory mode
//! any marker write, in hybrid mode any marker write or invalidation heard by this
//! replica, or `hybridL1MaxTTL`). So a session request in memory and hybrid mode reads one
//! cache entry; in redis mode, where no replica hears of the others' writes, every request
//! reads the markers from Redis.

mod cipher;

pub use cipher::{Cipher, OpenedCache, Purpose, random_token};

use crate::cache::{AbsenceEpoch, Cache, CacheError, Kind, token_key};
use crate::claims::{Claims, str_claim};
use crate::clock::now;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// A session record as opened from one sealed value, with what every request needs of it.
#[derive(Debug)]
struct OpenedSession {
    record: Arc<SessionRecord>,
    /// The logout markers that could end it (`sid`, `sub`).
    sid_marker: Option<String>,
    sub_marker: Option<String>,
    /// The absence epoch at which both markers were last seen absent, plus one (0: never),
    /// and when (milliseconds since `Sessions::started`). Two atomics, not one lock: a reader
    /// that sees them torn sees an older time or another generation, and reads the markers.
    clear_generation: AtomicU64,
    clear_at_ms: AtomicU64,
}

impl OpenedSession {
    fn new(record: SessionRecord) -> Self {
        OpenedSession {
            sid_marker: str_claim(&record.claims, "sid").map(sid_marker),
            sub_marker: str_claim(&record.claims, "sub").map(sub_marker),
            record: Arc::new(record),
            clear_generation: AtomicU64::new(0),
            clear_at_ms: AtomicU64::new(0),
        }
    }
}
/// Where sessions live.
#[derive(Clone)]
pub struct Sessions {
    cache: Cache,
    cipher: Arc<Cipher>,
    max_age: Duration,
    /// Hot sessions' opened records (a refreshed, replaced or tampered record is opened
    /// again, a deleted one never reached): see [`OpenedCache`].
    opened: OpenedCache<Arc<OpenedSession>>,
    /// The origin of `OpenedSession::clear_at_ms`.
    started: Instant,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(cache: Cache, cipher: Arc<Cipher>, max_age: Duration) -> Self {
        Sessions { cache, cipher, max_age, opened: OpenedCache::new(OPENED_SESSIONS, max_age), started: Instant::now() }
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
    pub async fn load(&self, id: &str) -> Result<Option<Arc<SessionRecord>>, CacheError> {
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
            serde_json::from_slice::<SessionRecord>(&plain).ok().map(|record| Arc::new(OpenedSession::new(record)))
        });
        let Some(session) = opened else { return Ok(None) };
        if session.record.created_at + self.max_age.as_secs() <= now() {
            return Ok(None);
        }
        // Read before the markers: a marker written meanwhile moves it past what is kept.
        let epoch = self.cache.absence_epoch(Kind::Logout);
        if epoch.is_some_and(|epoch| self.known_clear(&session, epoch)) {
            return Ok(Some(session.record.clone()));
        }
        if self.logged_out(&session).await? {
            let _ = self.cache.delete(Kind::Session, &key).await;
            return Ok(None);
        }
        if let Some(epoch) = epoch {
            session.clear_at_ms.store(self.millis_since_start(), Ordering::SeqCst);
            session.clear_generation.store(epoch.generation + 1, Ordering::SeqCst);
        }
        Ok(Some(session.record.clone()))
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this session's markers were seen absent at `epoch`, recently enough.
    fn known_clear(&self, session: &OpenedSession, epoch: AbsenceEpoch) -> bool {
        if session.clear_generation.load(Ordering::SeqCst) != epoch.generation + 1 {
            return false;
        }
        let age = self.millis_since_start().saturating_sub(session.clear_at_ms.load(Ordering::SeqCst));
        u128::from(age) < epoch.trusted_for.as_millis()
    }

    /// Whether a back-channel logout ended this session: a marker for its provider session
    /// (`sid`), or for its user (`sub`) newer than the session.
    async fn logged_out(&self, session: &OpenedSession) -> Result<bool, CacheError> {
        if let Some(marker) = &session.sid_marker
            && self.cache.get_json::<String>(Kind::Logout, marker).await?.is_some()
        {
            return Ok(true);
        }
        if let Some(marker) = &session.sub_marker
            && let Some(at) = self.cache.get_json::<String>(Kind::Logout, marker).await?
        {
            return Ok(at.parse::<u64>().is_ok_and(|at| at >= session.record.created_at));
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

    fn sessions_over(cache: &Cache) -> Sessions {
        let config = crate::config::Config {
            session_encryption_key: crate::config::Secret::new("9f2c4e7a1b3d5f60718293a4b5c6d7e8f9a0b1c2"),
            ..Default::default()
        };
        let cipher = Arc::new(Cipher::new(&config, Purpose::SessionRecord));
        Sessions::new(cache.clone(), cipher, Duration::from_secs(3600))
    }

    fn sessions() -> (Sessions, Cache) {
        let cache = Cache::new(Arc::new(MemoryStore::new(1000, 1 << 20)));
        (sessions_over(&cache), cache)
    }

    /// Memory mode: logout markers in the never-evicting marker store, whose epoch moves
    /// with every marker written.
    #[tokio::test]
    async fn markers_are_read_again_only_after_a_marker_was_written() {
        // Memory mode as the server builds it.
        let system = crate::cache::CacheSystem::start(&crate::config::Config::default()).unwrap();
        let cache = system.cache().clone();
        let sessions = sessions_over(&cache);
        let reads = || cache.stats().requests(Kind::Logout);
        let mut alice = record("alice");
        alice.claims.insert("sid".into(), serde_json::json!("s1"));
        let id = sessions.create(&alice).await.unwrap();
        let bob = sessions.create(&record("bob")).await.unwrap();

        assert!(sessions.load(&id).await.unwrap().is_some());
        assert_eq!(reads(), 2, "sid and sub markers");
        assert!(sessions.load(&bob).await.unwrap().is_some());
        assert_eq!(reads(), 3, "bob has only a sub marker");
        for _ in 0..5 {
            assert!(sessions.load(&id).await.unwrap().is_some());
        }
        assert_eq!(reads(), 3, "nothing written: nothing read");

        // A logout for another provider session moves the epoch: both sessions look again,
        // and stay.
        sessions.end_provider_session(Some("other"), None).await.unwrap();
        assert!(sessions.load(&id).await.unwrap().is_some());
        assert!(sessions.load(&bob).await.unwrap().is_some());
        assert_eq!(reads(), 6);

        sessions.end_provider_session(Some("s1"), None).await.unwrap();
        assert_eq!(sessions.load(&id).await.unwrap(), None, "its provider session ended");
        sessions.end_provider_session(None, Some("bob")).await.unwrap();
        assert_eq!(sessions.load(&bob).await.unwrap(), None, "its user was logged out");
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
