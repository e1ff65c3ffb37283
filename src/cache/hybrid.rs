//! Hybrid store: a bounded memory L1 in front of the Redis store (L2), with cross-replica
//! invalidation over Redis pub/sub (the seed's "future enhancement").
//!
//! Read: L1, else L2, then L1 is filled with the value and the **remaining** L2 TTL (capped
//! at `hybridL1MaxTTL`). Write: L2 then L1. Delete: L2 and L1. Every write and delete
//! publishes the key on `<keyPrefix>:invalidate`; every replica drops its L1 copy on
//! receipt. Atomic operations (`set_if_absent`, lock scripts) go to L2 only.
//!
//! Staleness bound: while the invalidation subscription is up, a change made through any
//! replica reaches every other replica's L1 within the pub/sub delivery time (about a
//! millisecond on a LAN, measured in the tests). L1 is **only read while subscribed**:
//! when the subscription drops, reads go to L2 until it is back, and L1 is emptied on
//! resubscribing (messages sent meanwhile are lost). The one window left is a subscriber
//! socket that died silently; `hybridL1MaxTTL` bounds how long an L1 copy can be served in
//! that case. A fill racing with an invalidation is discarded (a generation counter), so
//! an L1 never keeps a value older than one it was told about.
//!
//! Known absences: keys under one of the `remember_absent` prefixes (the logout markers)
//! are absent on nearly every read, and an absent key is not a value L1 could hold, so
//! every request would pay a Redis round trip to learn "not revoked". For those keys L1
//! also remembers that L2 had no value, under the same rules: only while subscribed,
//! dropped by the invalidation that any write of the key publishes, discarded when an
//! invalidation raced with the read, and for at most half of `hybridL1MaxTTL` (the other
//! half is the absence epoch's, below). Only keys whose every write publishes qualify
//! (`set`, not `set_if_absent`).
//!
//! Absence epoch ([`Store::absence_epoch`]): while subscribed, a counter that moves after
//! every write of a remembered-absent key made here, after every invalidation of one (or
//! of everything) received, and whenever the subscription comes up or goes down. A reader
//! that saw the logout markers of a session absent at one epoch knows they are still
//! absent while it holds, for at most half of `hybridL1MaxTTL`: with the known-absent
//! entry's half, an absence heard of no write is never relied on for longer than
//! `hybridL1MaxTTL` (the silent-subscriber window), as any L1 copy.
//!
//! Because L1 answers without I/O ([`Store::fetch_local`]), the circuit breaker in front
//! of this store is not consulted for L1 hits: they neither count as Redis successes nor
//! are refused while it is open. During a Redis pause the subscription socket stays up
//! and no replica can write, so L1 keeps serving sessions and known absences.

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::{AbsenceEpoch, CacheError, Store, Tier};
use crate::retry::Backoff;
use async_trait::async_trait;
use redis::{PushInfo, PushKind, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a known absence is trusted, by L1 and then by the absence epoch (see the
/// module doc): together, `hybridL1MaxTTL`.
fn half(l1_max_ttl: Duration) -> Duration {
    (l1_max_ttl / 2).max(Duration::from_millis(1))
}

/// Message meaning "drop everything" (after `clear`).
const ALL_KEYS: &str = "*";

/// The hybrid backend.
pub struct HybridStore {
    l1: MemoryStore,
    l2: Arc<RedisStore>,
    /// Identifies this process's own invalidation messages.
    instance: String,
    channel: String,
    l1_max_ttl: Duration,
    /// Keys L2 did not have, for the `remember_absent` prefixes (see the module doc).
    absent: moka::sync::Cache<String, ()>,
    remember_absent: Vec<String>,
    /// Bumped by every invalidation received; a fill that saw another value is discarded.
    generation: AtomicU64,
    /// Moves whenever a remembered-absent key may have become present (the module doc).
    absence_generation: AtomicU64,
    subscribed: AtomicBool,
    invalidations_received: AtomicU64,
}

impl std::fmt::Debug for HybridStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridStore").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl HybridStore {
    /// Builds the store and starts its invalidation subscriber (reconnecting with backoff
    /// for as long as the store lives).
    pub fn start(l1: MemoryStore, l2: Arc<RedisStore>, l1_max_ttl: Duration) -> Arc<Self> {
        Self::start_remembering_absent(l1, l2, l1_max_ttl, Vec::new())
    }

    /// Like [`HybridStore::start`]; L1 also remembers that keys starting with one of
    /// `prefixes` are absent from L2 (see the module doc for which keys qualify).
    pub fn start_remembering_absent(
        l1: MemoryStore,
        l2: Arc<RedisStore>,
        l1_max_ttl: Duration,
        prefixes: Vec<String>,
    ) -> Arc<Self> {
        let absent =
            moka::sync::Cache::builder().max_capacity(l1.capacity_entries()).time_to_live(half(l1_max_ttl)).build();
        let store = Arc::new(HybridStore {
            absent,
            remember_absent: prefixes,
            // Random per store: tells this replica's own invalidations from the others'.
            instance: format!("{:016x}", fastrand::u64(..)),
            channel: l2.invalidation_channel(),
            l1,
            l2,
            l1_max_ttl,
            generation: AtomicU64::new(0),
            absence_generation: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            invalidations_received: AtomicU64::new(0),
        });
        tokio::spawn(subscriber(Arc::downgrade(&store)));
        store
    }

    pub fn l1(&self) -> &MemoryStore {
        &self.l1
    }

    /// Whether the invalidation subscription is up (and so L1 is in use).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// Invalidation messages received from other replicas.
    pub fn invalidations_received(&self) -> u64 {
        self.invalidations_received.load(Ordering::Relaxed)
    }

    fn message(&self, key: &str) -> String {
        format!("{}\n{key}", self.instance)
    }

    fn l1_ttl(&self, remaining: Duration) -> Duration {
        remaining.min(self.l1_max_ttl)
    }

    /// Handles one invalidation message.
    fn invalidate(&self, payload: &str) {
        let Some((sender, key)) = payload.split_once('\n') else { return };
        if sender == self.instance {
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.invalidations_received.fetch_add(1, Ordering::Relaxed);
        if key == ALL_KEYS {
            self.forget_all();
        } else {
            self.forget(key);
        }
        if key == ALL_KEYS || self.remembers_absence(key) {
            self.absence_changed();
        }
    }

    /// Called once a remembered-absent key may have become present and L1 no longer says
    /// otherwise.
    fn absence_changed(&self) {
        self.absence_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops what L1 knows of `key`, value or absence.
    fn forget(&self, key: &str) {
        self.l1.invalidate(key);
        self.absent.invalidate(key);
    }

    fn forget_all(&self) {
        self.l1.invalidate_all();
        self.absent.invalidate_all();
    }

    fn remembers_absence(&self, key: &str) -> bool {
        self.remember_absent.iter().any(|prefix| key.starts_with(prefix.as_str()))
    }

    /// Remembers that L2 had no `key`, unless an invalidation arrived meanwhile.
    fn fill_absent(&self, key: &str, generation_before: u64) {
        if self.is_subscribed()
            && self.remembers_absence(key)
            && self.generation.load(Ordering::SeqCst) == generation_before
        {
            self.absent.insert(key.to_owned(), ());
            // An invalidation that raced with the insert must win.
            if self.generation.load(Ordering::SeqCst) != generation_before {
                self.absent.invalidate(key);
            }
        }
    }

    /// Known absences remembered (for tests and `/healthz`-style figures).
    pub fn known_absent(&self) -> u64 {
        self.absent.run_pending_tasks();
        self.absent.entry_count()
    }

    /// Fills L1 after an L2 read or write, unless an invalidation arrived meanwhile.
    fn fill(&self, key: &str, value: &[u8], ttl: Duration, generation_before: u64) {
        if !self.is_subscribed() {
            return;
        }
        self.absent.invalidate(key);
        if self.generation.load(Ordering::SeqCst) == generation_before {
            self.l1.set_local(key, value, self.l1_ttl(ttl));
        } else {
            self.l1.invalidate(key);
        }
    }
}

/// Keeps the invalidation subscription up while the store lives.
async fn subscriber(store: Weak<HybridStore>) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        let Some(strong) = store.upgrade() else { return };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let subscription = strong.l2.subscribe(&strong.channel, tx).await;
        let _subscription = match subscription {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::debug!(%error, "hybrid cache: invalidation subscription failed; L1 bypassed");
                drop(strong);
                backoff.wait().await;
                continue;
            }
        };
        // Messages sent while we were not subscribed are lost: start L1 afresh.
        strong.generation.fetch_add(1, Ordering::SeqCst);
        strong.forget_all();
        strong.absence_changed();
        strong.subscribed.store(true, Ordering::SeqCst);
        tracing::debug!(channel = %strong.channel, "hybrid cache: invalidation subscription up");
        backoff.reset();
        drop(strong);

        while let Some(push) = rx.recv().await {
            let Some(strong) = store.upgrade() else { return };
            match push.kind {
                PushKind::Message => {
                    if let Some(payload) = push.data.get(1).and_then(text) {
                        strong.invalidate(&payload);
                    }
                }
                PushKind::Disconnection => break,
                _ => {}
            }
        }
        let Some(strong) = store.upgrade() else { return };
        strong.subscribed.store(false, Ordering::SeqCst);
        strong.absence_changed();
        tracing::warn!("hybrid cache: invalidation subscription lost; reading from redis until it is back");
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[async_trait]
impl Store for HybridStore {
    fn tier(&self) -> Tier {
        Tier::Redis
    }

    fn fetch_local(&self, key: &str) -> Option<Option<Vec<u8>>> {
        if !self.is_subscribed() {
            return None;
        }
        if let Some(value) = self.l1.get_local(key) {
            return Some(Some(value));
        }
        self.absent.contains_key(key).then_some(None)
    }

    fn absence_epoch(&self) -> Option<AbsenceEpoch> {
        if !self.is_subscribed() {
            return None;
        }
        Some(AbsenceEpoch {
            generation: self.absence_generation.load(Ordering::SeqCst),
            trusted_for: half(self.l1_max_ttl),
        })
    }

    async fn fetch(&self, key: &str) -> Result<Option<(Vec<u8>, Tier)>, CacheError> {
        if let Some(known) = self.fetch_local(key) {
            return Ok(known.map(|value| (value, Tier::Memory)));
        }
        let before = self.generation.load(Ordering::SeqCst);
        match self.l2.get_with_ttl(key).await? {
            Some((value, ttl)) => {
                self.fill(key, &value, ttl, before);
                Ok(Some((value, Tier::Redis)))
            }
            None => {
                self.fill_absent(key, before);
                Ok(None)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.fetch(key).await?.map(|(value, _)| value))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        if self.is_subscribed()
            && let Some(found) = self.l1.get_with_ttl(key).await?
        {
            return Ok(Some(found));
        }
        let before = self.generation.load(Ordering::SeqCst);
        let found = self.l2.get_with_ttl(key).await?;
        if let Some((value, ttl)) = &found {
            self.fill(key, value, *ttl, before);
        }
        Ok(found)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let before = self.generation.load(Ordering::SeqCst);
        self.l2.set_and_publish(key, value, ttl, &self.channel, &self.message(key)).await?;
        self.fill(key, value, ttl, before);
        if self.remembers_absence(key) {
            self.absence_changed();
        }
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let created = self.l2.set_if_absent(key, value, ttl).await?;
        // Not published, so never remembered absent; moved anyway should that change.
        if created && self.remembers_absence(key) {
            self.absence_changed();
        }
        Ok(created)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.forget(key);
        self.l2.delete_and_publish(key, &self.channel, &self.message(key)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        if self.is_subscribed() && self.l1.exists(key).await? {
            return Ok(true);
        }
        self.l2.exists(key).await
    }

    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError> {
        let deleted = self.l2.compare_and_delete(key, expected).await?;
        if deleted {
            self.forget(key);
            self.l2.publish(&self.channel, &self.message(key)).await?;
        }
        Ok(deleted)
    }

    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        self.l2.compare_and_expire(key, expected, ttl).await
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.forget_all();
        self.l2.clear().await?;
        self.l2.publish(&self.channel, &self.message(ALL_KEYS)).await
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.l2.health().await
    }
}
