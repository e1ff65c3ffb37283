//! Detects replicas of one deployment that disagree on `cacheMode` or `keyPrefix`.
//!
//! Such replicas share Redis but not each other's guarantees: a `redis` replica's writes
//! do not publish invalidations, so a `hybrid` replica's L1 keeps a session that was logged
//! out; replicas with different key prefixes do not see each other's sessions or logout
//! markers at all. Nothing fails visibly, so each replica takes a roll call: every
//! [`INTERVAL`] it writes its mode and prefix into one Redis hash per deployment, reads the
//! others', and logs an error (once per change) when a live one differs.
//!
//! A deployment is one OpenID client at one provider (`providerURL` + `clientID`): replicas
//! of different applications may share a Redis with different prefixes, as they should.
//! The hash is `authgate-deployment:<16 hex digits of SHA-256(providerURL, clientID)>`,
//! outside the key prefix (so that prefixes can be compared) and holding no secret. An
//! ACL that forbids that key only disables the check (logged at debug level).

use super::redis::RedisStore;
use crate::config::CacheMode;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often each replica answers the roll call.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// An entry not refreshed for this long belongs to a replica that is gone.
const STALE_AFTER: Duration = Duration::from_secs(20);

/// What this replica knows of the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// Other live replicas of this deployment seen in the last roll call.
    pub seen: usize,
    /// Those that disagree, as `"<mode> <prefix>"` each.
    pub disagreeing: Vec<String>,
}

/// The roll call of one replica.
#[derive(Debug)]
pub struct RollCall {
    key: String,
    me: String,
    mine: String,
    status: Mutex<PeerStatus>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `"<mode> <prefix>"`, the part of an entry replicas must agree on.
fn setting(mode: CacheMode, prefix: &str) -> String {
    format!("{} {prefix}", mode.as_str())
}

impl RollCall {
    pub fn new(provider_url: &str, client_id: &str, mode: CacheMode, prefix: &str) -> Self {
        let digest = Sha256::digest(format!("{provider_url}\n{client_id}").as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        RollCall {
            key: format!("authgate-deployment:{hex}"),
            me: format!("{:016x}", fastrand::u64(..)),
            mine: setting(mode, prefix),
            status: Mutex::new(PeerStatus::default()),
        }
    }

    pub fn status(&self) -> PeerStatus {
        self.status.lock().expect("peer status lock").clone()
    }

    /// One roll call: announce, read the others, log a change of disagreement.
    pub async fn answer(&self, redis: &RedisStore) {
        let entry = format!("{} {}", unix_now(), self.mine);
        let fields = match redis.roll_call(&self.key, &self.me, &entry, STALE_AFTER * 2).await {
            Ok(fields) => fields,
            Err(error) => {
                tracing::debug!(%error, "replica roll call failed; mode and prefix agreement not checked");
                return;
            }
        };
        let now = unix_now();
        let mut seen = 0;
        let mut disagreeing = Vec::new();
        for (replica, entry) in &fields {
            if *replica == self.me {
                continue;
            }
            let Some((at, theirs)) = entry.split_once(' ') else { continue };
            if at.parse::<u64>().map_or(true, |at| now.saturating_sub(at) > STALE_AFTER.as_secs()) {
                continue;
            }
            seen += 1;
            if theirs != self.mine {
                disagreeing.push(theirs.to_owned());
            }
        }
        disagreeing.sort();
        let mut status = self.status.lock().expect("peer status lock");
        if disagreeing != status.disagreeing && !disagreeing.is_empty() {
            tracing::error!(
                this_replica = %self.mine,
                other_replicas = ?disagreeing,
                "replicas of this deployment disagree on redis.cacheMode or redis.keyPrefix: \
                 a redis replica's writes do not invalidate a hybrid replica's L1, and replicas \
                 with different prefixes do not see each other's sessions or logouts"
            );
        } else if disagreeing.is_empty() && !status.disagreeing.is_empty() {
            tracing::info!("replicas of this deployment agree on redis.cacheMode and redis.keyPrefix again");
        }
        *status = PeerStatus { seen, disagreeing };
    }

    /// Answers the roll call every [`INTERVAL`] while `redis` lives. A replica that stops
    /// answering drops out of the others' counts after `STALE_AFTER`.
    pub fn spawn(self: &Arc<Self>, redis: Weak<RedisStore>) {
        let roll_call = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let (Some(redis), Some(roll_call)) = (redis.upgrade(), roll_call.upgrade()) else { return };
                roll_call.answer(&redis).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_deployment_and_no_secret_in_it() {
        let a = RollCall::new("https://idp.example", "app", CacheMode::Hybrid, "authgate");
        let b = RollCall::new("https://idp.example", "app", CacheMode::Redis, "other");
        let c = RollCall::new("https://idp.example", "another-app", CacheMode::Hybrid, "authgate");
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert!(!a.key.contains("idp.example") && !a.key.contains("app"));
        assert_ne!(a.me, b.me);
    }
}
