//! In-process store: bounded, per-entry TTL, safe under concurrency (moka).
//!
//! Consistency: linearizable for one process; nothing is shared with other replicas.
//! TTL: an entry is never returned after its TTL has passed (checked on every read, not
//! only by the background expiry). Bounds: at most `max_entries` entries and about
//! `max_bytes` of keys and values; beyond that moka evicts by TinyLFU (frequency and
//! recency), so a hot session outlives a burst of one-off keys.

use super::{CacheError, Store, Tier};
use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Bookkeeping overhead counted per entry on top of key and value bytes.
const ENTRY_OVERHEAD: u64 = 96;

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, created_at: Instant) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(updated_at))
    }
}

/// The memory backend.
#[derive(Clone)]
pub struct MemoryStore {
    cache: moka::sync::Cache<String, Entry>,
    bytes: Arc<AtomicI64>,
    max_entries: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("entries", &self.entries()).finish()
    }
}

fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
}

impl MemoryStore {
    /// A store of at most `max_entries` entries and about `max_bytes` bytes.
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let max_entries = max_entries.max(1);
        let max_bytes = max_bytes.max(ENTRY_OVERHEAD);
        // moka bounds one weight; making every entry weigh at least max_bytes/max_entries
        // bounds the entry count by the same budget.
        let floor = (max_bytes / max_entries).max(1);
        let bytes = Arc::new(AtomicI64::new(0));
        let listener_bytes = bytes.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &String, entry: &Entry| {
                u32::try_from(entry_bytes(key, &entry.value).max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<String>, entry: Entry, _cause: RemovalCause| {
                listener_bytes.fetch_sub(entry_bytes(&key, &entry.value) as i64, Ordering::Relaxed);
            })
            .build();
        MemoryStore { cache, bytes, max_entries }
    }

    /// The most entries this store holds (its `max_entries`).
    pub fn capacity_entries(&self) -> u64 {
        self.max_entries
    }

    /// Entries currently held (expired ones may count until moka's housekeeping runs).
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Approximate bytes held by keys, values and bookkeeping.
    pub fn size_bytes(&self) -> u64 {
        u64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Runs moka's pending housekeeping (evictions, counts). For tests and stats.
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }

    fn insert(&self, key: &str, value: &[u8], ttl: Duration) {
        self.bytes.fetch_add(entry_bytes(key, value) as i64, Ordering::Relaxed);
        self.cache.insert(key.to_owned(), Entry { value: value.into(), expires_at: Instant::now() + ttl });
    }

    fn live(&self, key: &str) -> Option<Entry> {
        self.cache.get(key).filter(|e| e.live(Instant::now()))
    }

    /// Removes `key` locally; used by the hybrid store's invalidation.
    pub fn invalidate(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Inserts without going through the async interface; the hybrid store fills its L1 with this.
    pub fn set_local(&self, key: &str, value: &[u8], ttl: Duration) {
        self.insert(key, value, ttl);
    }

    /// The live value of `key`, synchronously; the hybrid store reads its L1 with this.
    pub fn get_local(&self, key: &str) -> Option<Vec<u8>> {
        self.live(key).map(|e| e.value.to_vec())
    }

    /// Removes everything; used by the hybrid store when invalidations may have been lost.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn tier(&self) -> Tier {
        Tier::Memory
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.live(key).map(|e| e.value.to_vec()))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        let now = Instant::now();
        Ok(self.live(key).map(|e| (e.value.to_vec(), e.expires_at.saturating_duration_since(now))))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.insert(key, value, ttl);
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let result = self.cache.entry(key.to_owned()).and_compute_with(|existing| match existing {
            Some(entry) if entry.value().live(now) => Op::Nop,
            _ => Op::Put(Entry { value: value.into(), expires_at: now + ttl }),
        });
        let won = matches!(result, CompResult::Inserted(_) | CompResult::ReplacedWith(_));
        if won {
            self.bytes.fetch_add(entry_bytes(key, value) as i64, Ordering::Relaxed);
        }
        Ok(won)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.cache.remove(key).is_some_and(|e| e.live(Instant::now())))
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.live(key).is_some())
    }

    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError> {
        let now = Instant::now();
        let result = self.cache.entry(key.to_owned()).and_compute_with(|existing| match existing {
            Some(entry) if entry.value().live(now) && *entry.value().value == *expected => Op::Remove,
            _ => Op::Nop,
        });
        Ok(matches!(result, CompResult::Removed(_)))
    }

    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let result = self.cache.entry(key.to_owned()).and_compute_with(|existing| match existing {
            Some(entry) if entry.value().live(now) && *entry.value().value == *expected => {
                Op::Put(Entry { value: entry.value().value.clone(), expires_at: now + ttl })
            }
            _ => Op::Nop,
        });
        let renewed = matches!(result, CompResult::ReplacedWith(_));
        if renewed {
            // The listener subtracted the replaced entry; count the (same-sized) new one.
            self.bytes.fetch_add(entry_bytes(key, expected) as i64, Ordering::Relaxed);
        }
        Ok(renewed)
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        Ok(())
    }

    async fn health(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_entries() {
        let store = MemoryStore::new(100, 64 * 1024 * 1024);
        for i in 0..1000 {
            store.set(&format!("k{i}"), b"v", Duration::from_secs(60)).await.unwrap();
        }
        store.sync();
        assert!(store.entries() <= 100, "{} entries", store.entries());
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        let store = MemoryStore::new(1_000_000, 100 * 1024);
        let value = vec![7u8; 1024];
        for i in 0..1000 {
            store.set(&format!("k{i}"), &value, Duration::from_secs(60)).await.unwrap();
        }
        store.sync();
        assert!(store.size_bytes() <= 110 * 1024, "{} bytes", store.size_bytes());
        assert!(store.entries() >= 10);
    }

    #[tokio::test]
    async fn size_follows_replacements_and_deletes() {
        let store = MemoryStore::new(1000, 1 << 20);
        store.set("a", &[0; 100], Duration::from_secs(60)).await.unwrap();
        store.set("a", &[0; 10], Duration::from_secs(60)).await.unwrap();
        store.sync();
        assert_eq!(store.size_bytes(), entry_bytes("a", &[0; 10]));
        store.delete("a").await.unwrap();
        store.sync();
        assert_eq!(store.size_bytes(), 0);
    }
}
