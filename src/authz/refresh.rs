//! Token refresh near expiry, once across all replicas.
//!
//! Single flight inside this replica (striped mutexes, so the table needs no cleanup), a
//! Redis lock with a lease renewed while the refresh runs across replicas, and after any
//! wait the session is read again instead of refreshed again, so a rotating refresh token
//! is redeemed exactly once.

use crate::cache::{Cache, Kind, token_key};
use crate::claims::str_claim;
use crate::clock::{after, now};
use crate::oidc::Verdict;
use crate::oidc::client::{ExpectedNonce, RpClient, TokenError};
use crate::reason::Reason;
use crate::retry::Backoff;
use crate::session::{SessionRecord, Sessions, random_token};
use std::sync::Arc;
use std::time::Duration;

/// Lease of the cross-replica refresh lock; renewed every third of it while a refresh runs.
pub const REFRESH_LEASE: Duration = Duration::from_secs(10);
/// Longest wait for another replica's refresh of the same session.
pub const REFRESH_WAIT: Duration = Duration::from_secs(15);
/// How often a waiting replica looks whether the lock holder has finished.
const LOCK_POLL: Duration = Duration::from_millis(50);
/// Local single-flight stripes.
const STRIPES: usize = 64;
/// The access-token lifetime assumed when the provider does not say.
const DEFAULT_EXPIRES_IN: u64 = 300;

pub struct Refresher {
    client: Arc<RpClient>,
    sessions: Sessions,
    cache: Cache,
    grace_seconds: u64,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").field("grace_seconds", &self.grace_seconds).finish_non_exhaustive()
    }
}

/// The stripe of a session: from the hash's bytes, so every stripe is used.
fn stripe_of(key: &str, stripes: usize) -> usize {
    let prefix = key.get(..16).and_then(|hex| u64::from_str_radix(hex, 16).ok()).unwrap_or(0);
    usize::try_from(prefix % stripes as u64).unwrap_or(0)
}

impl Refresher {
    /// `grace_seconds`: `refreshGracePeriodSeconds`.
    pub fn new(client: Arc<RpClient>, sessions: Sessions, cache: Cache, grace_seconds: u64) -> Self {
        Refresher {
            client,
            sessions,
            cache,
            grace_seconds,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
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
        let _local = self.stripes[stripe_of(&key, self.stripes.len())].lock().await;
        let changed =
            |record: &SessionRecord| record.refresh_token != seen.refresh_token || !self.needs_refresh(record);

        let current = self.sessions.load(id).await.map_err(|_| Reason::CacheUnavailable)?;
        let Some(current) = current else { return Ok(None) };
        if changed(&current) {
            return Ok(Some(current));
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
                Ok(Some(record)) if changed(&record) => return Ok(Some(record)),
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
        let Some(mut record) = self.sessions.load(id).await.map_err(|_| Reason::CacheUnavailable)? else {
            return Ok(None);
        };
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
        record.access_token = tokens.access_token;
        // Rotation: the provider may send a new refresh token; otherwise keep ours.
        if tokens.refresh_token.is_some() {
            record.refresh_token = tokens.refresh_token;
        }
        record.access_expires_at = after(tokens.expires_in.unwrap_or(DEFAULT_EXPIRES_IN));
        self.sessions.save(id, &record).await.map_err(|_| Reason::CacheUnavailable)?;
        tracing::debug!(at = now(), "session tokens refreshed");
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_spread_over_every_stripe() {
        let used: std::collections::HashSet<usize> =
            (0..2000).map(|i| stripe_of(&token_key(&i.to_string()), STRIPES)).collect();
        assert_eq!(used.len(), STRIPES, "hex keys must not confine sessions to 16 stripes");
    }
}
