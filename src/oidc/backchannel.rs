//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed logout token when a
//! user's session at the provider ends; every authgate session of that provider session
//! (`sid`) or user (`sub`) ends on every replica, through the session store's logout
//! markers (`crate::session`). A replayed logout token (same `jti`) is refused atomically
//! across replicas.

use super::Verdict;
use super::discovery::Discovery;
use super::jwks::Jwks;
use super::jwt::verify_signed;
use crate::cache::{Cache, Kind, token_key};
use crate::claims::{str_claim, u64_claim};
use crate::clock::now;
use crate::config::Config;
use crate::reason::Reason;
use crate::session::Sessions;
use std::sync::Arc;
use std::time::Duration;

/// The event a logout token must carry.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The path on `httpAddress` that receives logout tokens.
pub const PATH: &str = "/backchannel-logout";

pub struct BackchannelLogout {
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    cache: Cache,
    sessions: Sessions,
    client_id: String,
    leeway: u64,
    replay_detection: bool,
}

impl std::fmt::Debug for BackchannelLogout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackchannelLogout").finish_non_exhaustive()
    }
}

/// Why a logout token was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not acceptable (400: the provider must not retry it).
    Invalid(Reason),
    /// It could not be handled now (5xx: the provider should retry).
    Unavailable(Reason),
}

impl BackchannelLogout {
    pub fn new(config: &Config, discovery: Arc<Discovery>, jwks: Arc<Jwks>, cache: Cache, sessions: Sessions) -> Self {
        BackchannelLogout {
            discovery,
            jwks,
            cache,
            sessions,
            client_id: config.client_id.clone(),
            leeway: config.clock_skew_seconds,
            replay_detection: !config.disable_replay_detection,
        }
    }

    /// Verifies a logout token and ends the sessions it names.
    pub async fn handle(&self, logout_token: &str) -> Result<(), Refusal> {
        let claims = match verify_signed(&self.discovery, &self.jwks, &self.client_id, logout_token, self.leeway).await
        {
            Verdict::Valid(claims) => claims,
            Verdict::Invalid(reason) => return Err(Refusal::Invalid(reason)),
            Verdict::Unavailable(_) => return Err(Refusal::Unavailable(Reason::IdpUnavailable)),
        };
        // §2.4: events with the back-channel logout member, no nonce, a jti, sid or sub.
        let has_event = claims.get("events").and_then(|e| e.as_object()).is_some_and(|e| e.contains_key(LOGOUT_EVENT));
        if !has_event {
            return Err(Refusal::Invalid(Reason::NotALogoutToken));
        }
        if claims.contains_key("nonce") {
            return Err(Refusal::Invalid(Reason::NonceInLogoutToken));
        }
        let Some(jti) = str_claim(&claims, "jti") else { return Err(Refusal::Invalid(Reason::MissingJti)) };
        let sid = str_claim(&claims, "sid");
        let sub = str_claim(&claims, "sub");
        if sid.is_none() && sub.is_none() {
            return Err(Refusal::Invalid(Reason::NoSidOrSub));
        }
        // Accepted once across all replicas.
        if self.replay_detection {
            // Kept while the token could still be accepted: until `exp` plus the leeway.
            let exp = u64_claim(&claims, "exp").unwrap_or(0);
            let ttl = Duration::from_secs(exp.saturating_add(self.leeway).saturating_sub(now()).max(300));
            match self.cache.claim(Kind::Replay, &format!("logout:{}", token_key(jti)), b"1", ttl).await {
                Ok(true) => {}
                Ok(false) => return Err(Refusal::Invalid(Reason::LogoutTokenReplayed)),
                Err(_) => return Err(Refusal::Unavailable(Reason::CacheUnavailable)),
            }
        }
        if self.sessions.end_provider_session(sid, sub).await.is_err() {
            return Err(Refusal::Unavailable(Reason::CacheUnavailable));
        }
        tracing::info!(by_sid = sid.is_some(), "back-channel logout: sessions ended");
        Ok(())
    }
}
