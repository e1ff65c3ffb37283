//! In-process store for markers whose silent loss would be a security failure: replay
//! claims (a lost claim accepts a one-time token twice) and logout markers (a lost marker
//! brings a logged-out session back). Used in memory mode, where there is no Redis to hold
//! them.
//!
//! Unlike [`super::memory::MemoryStore`] it never evicts a live entry: it holds at most
//! `capacity` entries, drops only expired ones, and when full of live ones refuses the
//! write with an error, which the callers fail closed on (the one-time token is refused,
//! the logout answers 503). Consistency: linearizable for one process. TTL: an entry is
//! never returned after its TTL.

use super::{AbsenceEpoch, CacheError, Store, Tier};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct MarkerStore {
    entries: RwLock<HashMap<String, (Vec<u8>, Instant)>>,
    capacity: usize,
    /// Moves after every write (see [`Store::absence_epoch`]): this process is the only
    /// writer, so a reader that saw a key absent at one generation knows it still is while
    /// the generation has not moved.
    generation: AtomicU64,
}

impl std::fmt::Debug for MarkerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkerStore").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl MarkerStore {
    pub fn new(capacity: usize) -> Self {
        MarkerStore { entries: RwLock::new(HashMap::new()), capacity: capacity.max(1), generation: AtomicU64::new(0) }
    }

    /// Called after every write that can make a key present, once readers can see it
    /// (deletes only make keys absent, which a reader relying on absence need not hear of).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn live(&self, key: &str) -> Option<(Vec<u8>, Instant)> {
        let entries = self.entries.read().expect("marker lock");
        entries.get(key).filter(|(_, expires)| *expires > Instant::now()).cloned()
    }

    /// Makes room for one more entry, or says there is none.
    fn room(entries: &mut HashMap<String, (Vec<u8>, Instant)>, capacity: usize, key: &str) -> Result<(), CacheError> {
        if entries.len() < capacity || entries.contains_key(key) {
            return Ok(());
        }
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        if entries.len() < capacity {
            Ok(())
        } else {
            Err(CacheError::Rejected(format!("marker store full ({capacity} live entries)")))
        }
    }
}

#[async_trait]
impl Store for MarkerStore {
    fn tier(&self) -> Tier {
        Tier::Memory
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.live(key).map(|(value, _)| value))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        Ok(self.live(key).map(|(value, expires)| (value, expires.saturating_duration_since(Instant::now()))))
    }

    fn absence_epoch(&self) -> Option<AbsenceEpoch> {
        Some(AbsenceEpoch { generation: self.generation.load(Ordering::SeqCst), trusted_for: Duration::MAX })
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        {
            let mut entries = self.entries.write().expect("marker lock");
            Self::room(&mut entries, self.capacity, key)?;
            entries.insert(key.to_owned(), (value.to_vec(), Instant::now() + ttl));
        }
        self.changed();
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let mut entries = self.entries.write().expect("marker lock");
        let now = Instant::now();
        if entries.get(key).is_some_and(|(_, expires)| *expires > now) {
            return Ok(false);
        }
        Self::room(&mut entries, self.capacity, key)?;
        entries.insert(key.to_owned(), (value.to_vec(), now + ttl));
        drop(entries);
        self.changed();
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed = self.entries.write().expect("marker lock").remove(key);
        Ok(removed.is_some_and(|(_, expires)| expires > Instant::now()))
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.live(key).is_some())
    }

    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError> {
        let mut entries = self.entries.write().expect("marker lock");
        let holds = entries.get(key).is_some_and(|(value, expires)| value == expected && *expires > Instant::now());
        if holds {
            entries.remove(key);
        }
        Ok(holds)
    }

    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let mut entries = self.entries.write().expect("marker lock");
        let now = Instant::now();
        match entries.get_mut(key) {
            Some((value, expires)) if value == expected && *expires > now => {
                *expires = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.entries.write().expect("marker lock").clear();
        Ok(())
    }

    async fn health(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L7: markers are never evicted to make room; a full store refuses instead.
    #[tokio::test]
    async fn l7_a_full_store_refuses_rather_than_forgets() {
        let store = MarkerStore::new(3);
        let ttl = Duration::from_secs(60);
        for i in 0..3 {
            assert!(store.set_if_absent(&format!("replay:{i}"), b"1", ttl).await.unwrap());
        }
        assert!(store.set_if_absent("replay:3", b"1", ttl).await.is_err(), "no room: an error, not an eviction");
        for i in 0..3 {
            assert!(!store.set_if_absent(&format!("replay:{i}"), b"1", ttl).await.unwrap(), "still claimed");
        }
        // Expired entries make room.
        store.set("short", b"1", Duration::from_millis(1)).await.unwrap_err();
        store.delete("replay:0").await.unwrap();
        store.set("short", b"1", Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store.set_if_absent("replay:4", b"1", ttl).await.unwrap());
    }
}
