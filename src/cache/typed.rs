//! [`Cache`]: the typed cache the rest of authgate uses, in front of one [`Store`]: values
//! of a [`Kind`], keys that never hold a raw secret, hit counters per kind and tier.

use super::{AbsenceEpoch, CacheError, Store, Tier, value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// What a cached value is; part of its key and of its envelope, and a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An encrypted session record.
    Session,
    /// Metadata of a verified bearer token (keyed by the token's hash).
    Token,
    /// A replay marker: this token's `jti` was seen.
    Replay,
    /// A refresh lock (lease) held by one replica.
    Lock,
    /// A logout marker: sessions of this `sid`/`sub` are over.
    Logout,
}

/// How many kinds there are (the size of the per-kind counters).
const KINDS: usize = 5;

impl Kind {
    pub const ALL: [Kind; KINDS] = [Kind::Session, Kind::Token, Kind::Replay, Kind::Lock, Kind::Logout];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Token => "token",
            Kind::Replay => "replay",
            Kind::Lock => "lock",
            Kind::Logout => "logout",
        }
    }

    /// The byte stored in the value envelope. Never reuse a retired tag (6 and 7 are).
    pub fn tag(self) -> u8 {
        match self {
            Kind::Session => 1,
            Kind::Token => 2,
            Kind::Replay => 3,
            Kind::Lock => 4,
            Kind::Logout => 5,
        }
    }

    fn index(self) -> usize {
        self.tag() as usize - 1
    }
}

/// A key for a secret (a token, a session id, a `state`): its SHA-256 in hex, so no raw
/// secret ever appears in a Redis key, a log line or `redis-cli --scan` output.
pub fn token_key(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// Lookups and hits per kind and tier, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct CacheStats {
    requests: [AtomicU64; KINDS],
    memory_hits: [AtomicU64; KINDS],
    redis_hits: [AtomicU64; KINDS],
    rejected: [AtomicU64; KINDS],
}

impl CacheStats {
    fn record(&self, kind: Kind, hit: Option<Tier>) {
        self.requests[kind.index()].fetch_add(1, Ordering::Relaxed);
        match hit {
            Some(Tier::Memory) => self.memory_hits[kind.index()].fetch_add(1, Ordering::Relaxed),
            Some(Tier::Redis) => self.redis_hits[kind.index()].fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }

    pub fn requests(&self, kind: Kind) -> u64 {
        self.requests[kind.index()].load(Ordering::Relaxed)
    }

    /// Values of `kind` rejected by their seal (see [`Cache::record_rejected`]).
    pub fn rejected(&self, kind: Kind) -> u64 {
        self.rejected[kind.index()].load(Ordering::Relaxed)
    }

    pub fn hits(&self, kind: Kind, tier: Tier) -> u64 {
        match tier {
            Tier::Memory => self.memory_hits[kind.index()].load(Ordering::Relaxed),
            Tier::Redis => self.redis_hits[kind.index()].load(Ordering::Relaxed),
        }
    }
}

/// Typed access to the configured stores.
///
/// Revocation never fails open, so operations are routed by what losing them would cost:
/// - replay claims and logout markers ([`Kind::is_revocation`]) go to `revocations`: the
///   shared store with no memory fallback (an error when Redis cannot take them), or in
///   memory mode a store that never evicts them;
/// - every delete goes to `shared` (a session deleted only from one replica's fallback
///   would live on in Redis);
/// - everything else goes to `general`, which may fall back to memory while Redis is down.
#[derive(Clone)]
pub struct Cache {
    general: Arc<dyn Store>,
    shared: Arc<dyn Store>,
    revocations: Arc<dyn Store>,
    stats: Arc<CacheStats>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

fn set_span(kind: Kind) -> tracing::Span {
    tracing::info_span!("cache", otel.name = "authgate.cache.set", kind = kind.as_str())
}

fn key(kind: Kind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

impl Kind {
    /// Whether every write of this kind's keys is a plain `set` (so the hybrid store
    /// publishes it), which lets a hybrid L1 remember that such a key is absent. Logout
    /// markers are read on every session request and almost always absent.
    pub fn absence_is_published(self) -> bool {
        matches!(self, Kind::Logout)
    }

    /// Whether losing this kind's entries would undo a revocation (see [`Cache`]).
    pub fn is_revocation(self) -> bool {
        matches!(self, Kind::Replay | Kind::Logout)
    }
}

impl Cache {
    /// Everything in one store (tests, benchmarks).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Cache::routed(store.clone(), store.clone(), store)
    }

    /// Routed as the type's documentation says.
    pub fn routed(general: Arc<dyn Store>, shared: Arc<dyn Store>, revocations: Arc<dyn Store>) -> Self {
        Cache { general, shared, revocations, stats: Arc::new(CacheStats::default()) }
    }

    fn store(&self, kind: Kind) -> &dyn Store {
        if kind.is_revocation() { &*self.revocations } else { &*self.general }
    }

    /// The store's absence epoch for keys of `kind` (see [`Store::absence_epoch`]); `None`
    /// for kinds whose absence is not tracked.
    pub fn absence_epoch(&self, kind: Kind) -> Option<AbsenceEpoch> {
        if !kind.absence_is_published() {
            return None;
        }
        self.store(kind).absence_epoch()
    }

    /// Counts a value that was read back but failed its seal or MAC (written by someone
    /// else, or copied from another key); the caller treats it as absent.
    pub fn record_rejected(&self, kind: Kind) {
        self.stats.rejected[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    async fn fetch(&self, kind: Kind, id: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let span = tracing::info_span!(
            "cache",
            otel.name = "authgate.cache.get",
            kind = kind.as_str(),
            hit = tracing::field::Empty
        );
        let found = self.store(kind).fetch(&key(kind, id)).instrument(span.clone()).await?;
        span.record("hit", found.as_ref().map_or("miss", |(_, tier)| tier.as_str()));
        self.stats.record(kind, found.as_ref().map(|(_, tier)| *tier));
        Ok(found.map(|(bytes, _)| bytes))
    }

    /// A JSON value of `kind`; a value that cannot be decoded reads as absent (and is logged).
    pub async fn get_json<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<Option<T>, CacheError> {
        let Some(bytes) = self.fetch(kind, id).await? else { return Ok(None) };
        match value::decode_json(kind, &bytes) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(kind = kind.as_str(), %error, "ignoring unreadable cached value");
                Ok(None)
            }
        }
    }

    pub async fn set_json<T: Serialize>(
        &self,
        kind: Kind,
        id: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.store(kind).set(&key(kind, id), &value::encode_json(kind, value)?, ttl).instrument(set_span(kind)).await
    }

    /// Raw bytes of `kind` (e.g. an encrypted record); unreadable envelopes read as absent.
    pub async fn get_raw(&self, kind: Kind, id: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let Some(bytes) = self.fetch(kind, id).await? else { return Ok(None) };
        match value::decode_raw(kind, bytes) {
            Ok(payload) => Ok(Some(payload)),
            Err(error) => {
                tracing::warn!(kind = kind.as_str(), %error, "ignoring unreadable cached value");
                Ok(None)
            }
        }
    }

    pub async fn set_raw(&self, kind: Kind, id: &str, payload: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.store(kind).set(&key(kind, id), &value::encode_raw(kind, payload), ttl).instrument(set_span(kind)).await
    }

    /// Claims `id` for `ttl` if nobody has: `true` for exactly one caller across replicas
    /// sharing Redis (replay detection, locks).
    pub async fn claim(&self, kind: Kind, id: &str, owner: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let span = tracing::info_span!("cache", otel.name = "authgate.cache.claim", kind = kind.as_str());
        self.store(kind).set_if_absent(&key(kind, id), &value::encode_raw(kind, owner), ttl).instrument(span).await
    }

    /// Releases a claim only if `owner` still holds it.
    pub async fn release(&self, kind: Kind, id: &str, owner: &[u8]) -> Result<bool, CacheError> {
        self.store(kind).compare_and_delete(&key(kind, id), &value::encode_raw(kind, owner)).await
    }

    /// Extends a claim only if `owner` still holds it.
    pub async fn renew(&self, kind: Kind, id: &str, owner: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        self.store(kind).compare_and_expire(&key(kind, id), &value::encode_raw(kind, owner), ttl).await
    }

    /// Deletes on the shared store, or fails: a delete is never "done" in one replica's
    /// memory only.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool, CacheError> {
        let span = tracing::info_span!("cache", otel.name = "authgate.cache.delete", kind = kind.as_str());
        let store = if kind.is_revocation() { &*self.revocations } else { &*self.shared };
        store.delete(&key(kind, id)).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::memory::MemoryStore;

    #[test]
    fn token_keys_hide_the_token() {
        let key = token_key("eyJhbGciOiJSUzI1NiJ9.secret.sig");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("secret"));
        assert_eq!(key, token_key("eyJhbGciOiJSUzI1NiJ9.secret.sig"));
    }

    #[tokio::test]
    async fn counts_requests_and_hits_per_kind() {
        let cache = Cache::new(Arc::new(MemoryStore::new(100, 1 << 20)));
        cache.set_json(Kind::Token, "k", &vec![1, 2, 3], Duration::from_secs(5)).await.unwrap();
        assert_eq!(cache.get_json::<Vec<u8>>(Kind::Token, "k").await.unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(cache.get_json::<Vec<u8>>(Kind::Token, "missing").await.unwrap(), None);
        assert_eq!(cache.stats().requests(Kind::Token), 2);
        assert_eq!(cache.stats().hits(Kind::Token, Tier::Memory), 1);
        assert_eq!(cache.stats().requests(Kind::Session), 0);
    }

    #[tokio::test]
    async fn a_value_of_another_kind_reads_as_absent() {
        let store = Arc::new(MemoryStore::new(100, 1 << 20));
        let cache = Cache::new(store.clone());
        store.set("token:k", &value::encode_json(Kind::Logout, &1).unwrap(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(cache.get_json::<u32>(Kind::Token, "k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn claims_are_owned() {
        let cache = Cache::new(Arc::new(MemoryStore::new(100, 1 << 20)));
        assert!(cache.claim(Kind::Lock, "r", b"a", Duration::from_secs(5)).await.unwrap());
        assert!(!cache.claim(Kind::Lock, "r", b"b", Duration::from_secs(5)).await.unwrap());
        assert!(!cache.release(Kind::Lock, "r", b"b").await.unwrap());
        assert!(cache.renew(Kind::Lock, "r", b"a", Duration::from_secs(9)).await.unwrap());
        assert!(cache.release(Kind::Lock, "r", b"a").await.unwrap());
        assert!(cache.claim(Kind::Lock, "r", b"b", Duration::from_secs(5)).await.unwrap());
    }
}
