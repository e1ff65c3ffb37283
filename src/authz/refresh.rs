//! Token refresh near expiry, once across all replicas.
//!
//! Single flight per session inside this replica (a lock per session being refreshed, so
//! one session's slow refresh never holds up another's), a Redis lock with a lease renewed
//! while the refresh runs across replicas, and after any wait the session is read again
//! instead of refreshed again, so a rotating refresh token is redeemed exactly once.

use crate::cache::{Cache, Kind, token_key};
use crate::claims::str_claim;
use crate::clock::{after, now};
use crate::oidc::Verdict;
use crate::oidc::client::{ExpectedNonce, RpClient, TokenError};
use crate::reason::Reason;
use crate::retry::Backoff;
use crate::session::{SessionRecord, Sessions, random_token};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Lease of the cross-replica refresh lock; renewed every third of it while a refresh runs.
pub const REFRESH_LEASE: Duration = Duration::from_secs(10);
/// Longest wait for another replica's refresh of the same session.
pub const REFRESH_WAIT: Duration = Duration::from_secs(15);
/// How often a waiting replica looks whether the lock holder has finished.
const LOCK_POLL: Duration = Duration::from_millis(50);

pub struct Refresher {
    client: Arc<RpClient>,
    sessions: Sessions,
    cache: Cache,
    grace_seconds: u64,
    in_flight: InFlight,
}

/// One lock per session whose refresh is under way; an entry lives only while someone
/// holds or waits for it.
#[derive(Default)]
struct InFlight(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// Holds a session's refresh lock; the entry goes when the last user lets go.
struct Flight {
    map: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl InFlight {
    async fn lock(&self, key: &str) -> Flight {
        let lock = self.0.lock().expect("in-flight lock").entry(key.to_owned()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        Flight { map: self.0.clone(), key: key.to_owned(), lock, guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("in-flight lock").len()
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().expect("in-flight lock");
        // Ours and the map's: nobody else holds or waits for this session.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").field("grace_seconds", &self.grace_seconds).finish_non_exhaustive()
    }
}

impl Refresher {
    /// `grace_seconds`: `refreshGracePeriodSeconds`.
    pub fn new(client: Arc<RpClient>, sessions: Sessions, cache: Cache, grace_seconds: u64) -> Self {
        Refresher { client, sessions, cache, grace_seconds, in_flight: InFlight::default() }
    }

    /// Whether a session's tokens are within `refreshGracePeriodSeconds` of expiring.
    pub(crate) fn needs_refresh(&self, record: &SessionRecord) -> bool {
        record.refresh_token.is_some() && record.access_expires_at <= after(self.grace_seconds)
    }

    /// Refreshes a session's tokens, once across all replicas.
    ///
    /// `Ok(Some)`: the session to use (refreshed by us or by someone else). `Ok(None)`: the
    /// session ended (the provider refused the refresh token; the session is deleted).
    /// `Err`: the refresh could not be done now (provider or cache down).
    pub(crate) async fn refresh(&self, id: &str, seen: SessionRecord) -> Result<Option<SessionRecord>, Reason> {
        let key = token_key(id);
        let _flight = self.in_flight.lock(&key).await;
        let changed =
            |record: &SessionRecord| record.refresh_token != seen.refresh_token || !self.needs_refresh(record);

        let current = self.sessions.load(id).await.map_err(|_| Reason::CacheUnavailable)?;
        let Some(current) = current else { return Ok(None) };
        if changed(&current) {
            return Ok(Some(std::sync::Arc::unwrap_or_clone(current)));
        }

        // Across replicas: take the lock, or wait for whoever holds it to finish.
        let lock_id = format!("refresh:{key}");
        let owner = random_token(16);
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut poll = Backoff::new(LOCK_POLL, LOCK_POLL);
        loop {
            match self.cache.claim(Kind::Lock, &lock_id, owner.as_bytes(), REFRESH_LEASE).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return Err(Reason::CacheUnavailable),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Reason::RefreshLockTimeout);
            }
            poll.wait().await;
            match self.sessions.load(id).await {
                Ok(Some(record)) if changed(&record) => return Ok(Some(std::sync::Arc::unwrap_or_clone(record))),
                Ok(None) => return Ok(None),
                Ok(Some(_)) => {}
                Err(_) => return Err(Reason::CacheUnavailable),
            }
        }
        // Keep the lease alive while the provider answers.
        let renew = {
            let cache = self.cache.clone();
            let (lock_id, owner) = (lock_id.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_LEASE / 3).await;
                    if !matches!(cache.renew(Kind::Lock, &lock_id, owner.as_bytes(), REFRESH_LEASE).await, Ok(true)) {
                        return;
                    }
                }
            })
        };
        let result = self.refresh_holding_lock(id).await;
        renew.abort();
        let _ = self.cache.release(Kind::Lock, &lock_id, owner.as_bytes()).await;
        result
    }

    async fn refresh_holding_lock(&self, id: &str) -> Result<Option<SessionRecord>, Reason> {
        // Someone may have finished between our last read and taking the lock.
        let Some(record) = self.sessions.load(id).await.map_err(|_| Reason::CacheUnavailable)? else {
            return Ok(None);
        };
        let mut record = std::sync::Arc::unwrap_or_clone(record);
        let Some(refresh_token) = record.refresh_token.clone() else { return Ok(Some(record)) };
        if !self.needs_refresh(&record) {
            return Ok(Some(record));
        }
        let tokens = match self.client.exchange_refresh_token(&refresh_token).await {
            Ok(tokens) => tokens,
            Err(TokenError::Rejected(error)) => {
                tracing::info!(%error, "refresh token refused: session ended");
                let _ = self.sessions.delete(id).await;
                return Ok(None);
            }
            Err(TokenError::Unavailable(reason)) => return Err(reason),
        };
        if let Some(id_token) = tokens.id_token.clone()
            && let Verdict::Valid(claims) =
                self.client.verify_id_token(&id_token, ExpectedNonce::Any, Some(&tokens.access_token)).await
        {
            // OIDC Core §12.2: a refreshed ID token names the same user of the same issuer.
            let same = |name: &str| str_claim(&claims, name) == str_claim(&record.claims, name);
            if !(same("iss") && same("sub")) {
                tracing::warn!("refreshed ID token names another user: session ended");
                let _ = self.sessions.delete(id).await;
                return Ok(None);
            }
            record.claims = claims;
            record.id_token = id_token;
        }
        record.access_expires_at = tokens.access_expires_at();
        record.access_token = tokens.access_token;
        // Rotation: the provider may send a new refresh token; otherwise keep ours.
        if tokens.refresh_token.is_some() {
            record.refresh_token = tokens.refresh_token;
        }
        self.sessions.save(id, &record).await.map_err(|_| Reason::CacheUnavailable)?;
        tracing::debug!(at = now(), "session tokens refreshed");
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L4: one session's refresh never holds up another's, and nothing is left behind.
    #[tokio::test]
    async fn l4_sessions_do_not_share_a_refresh_lock() {
        let in_flight = InFlight::default();
        let a = in_flight.lock("session-a").await;
        // Another session proceeds at once while a's refresh is under way.
        let b = tokio::time::timeout(Duration::from_millis(100), in_flight.lock("session-b")).await;
        assert!(b.is_ok(), "session b waited for session a");
        drop(b);
        // The same session waits.
        let again = tokio::time::timeout(Duration::from_millis(50), in_flight.lock("session-a")).await;
        assert!(again.is_err(), "a second refresh of the same session must wait");
        drop(a);
        assert_eq!(in_flight.len(), 0, "finished flights leave no entries");
    }
}
