//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed logout token when a
//! user's session at the provider ends; every authgate session of that provider session
//! (`sid`) or user (`sub`) ends on every replica.
//!
//! Sessions are not indexed; instead a logout leaves markers in the shared cache
//! (`logout:sid:<hash>` and `logout:sub:<hash>`, holding the logout time, kept for
//! `sessionMaxAge`), and loading a session checks them (see `crate::session`). A replayed
//! logout token (same `jti`) is refused atomically across replicas.

use super::bearer::{Verdict, verify_signed};
use super::discovery::Discovery;
use super::jwks::Jwks;
use crate::cache::{Cache, Kind, token_key};
use crate::config::Config;
use crate::session::now;
use std::sync::Arc;
use std::time::Duration;

/// The event a logout token must carry.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The path on `httpAddress` that receives logout tokens.
pub const PATH: &str = "/backchannel-logout";

/// The logout marker for a provider session id.
pub fn sid_marker(sid: &str) -> String {
    format!("sid:{}", token_key(sid))
}

/// The logout marker for a user.
pub fn sub_marker(sub: &str) -> String {
    format!("sub:{}", token_key(sub))
}

pub struct BackchannelLogout {
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    cache: Cache,
    client_id: String,
    session_max_age: Duration,
    leeway: u64,
}

impl std::fmt::Debug for BackchannelLogout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackchannelLogout").finish_non_exhaustive()
    }
}

/// Why a logout token was refused (the `error_description` of the 400).
pub type Refusal = &'static str;

impl BackchannelLogout {
    pub fn new(config: &Config, discovery: Arc<Discovery>, jwks: Arc<Jwks>, cache: Cache) -> Self {
        BackchannelLogout {
            discovery,
            jwks,
            cache,
            client_id: config.client_id.clone(),
            session_max_age: config.session_max_age.get(),
            leeway: config.clock_skew_seconds,
        }
    }

    /// Verifies a logout token and ends the sessions it names.
    pub async fn handle(&self, logout_token: &str) -> Result<(), Refusal> {
        let claims = match verify_signed(&self.discovery, &self.jwks, &self.client_id, logout_token, self.leeway).await
        {
            Verdict::Valid(claims) => claims,
            Verdict::Invalid(reason) => return Err(reason),
            Verdict::Unavailable(_) => return Err("identity provider keys unavailable"),
        };
        // §2.4: events with the back-channel logout member, no nonce, a jti, sid or sub.
        let has_event = claims.get("events").and_then(|e| e.as_object()).is_some_and(|e| e.contains_key(LOGOUT_EVENT));
        if !has_event {
            return Err("not a logout token (no back-channel logout event)");
        }
        if claims.contains_key("nonce") {
            return Err("a logout token must not carry a nonce");
        }
        let Some(jti) = claims.get("jti").and_then(|j| j.as_str()) else { return Err("missing jti") };
        let sid = claims.get("sid").and_then(|s| s.as_str());
        let sub = claims.get("sub").and_then(|s| s.as_str());
        if sid.is_none() && sub.is_none() {
            return Err("neither sid nor sub");
        }
        // Accepted once across all replicas.
        let exp = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
        let ttl = Duration::from_secs(exp.saturating_sub(now()).max(300));
        match self.cache.claim(Kind::Replay, &format!("logout:{}", token_key(jti)), b"1", ttl).await {
            Ok(true) => {}
            Ok(false) => return Err("logout token replayed"),
            Err(_) => return Err("cache unavailable"),
        }
        let stamp = now().to_string();
        for marker in sid.map(sid_marker).into_iter().chain(sub.filter(|_| sid.is_none()).map(sub_marker)) {
            if self.cache.set_json(Kind::Logout, &marker, &stamp, self.session_max_age).await.is_err() {
                return Err("cache unavailable");
            }
        }
        tracing::info!(by_sid = sid.is_some(), "back-channel logout: sessions ended");
        Ok(())
    }
}
