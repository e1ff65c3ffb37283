//! `Authorization: Bearer <JWT>` verification (see [`super::jwt`] for what is checked),
//! with a verified-token cache: a verified token's claims are kept under the SHA-256 of the
//! token, for at most its remaining lifetime and [`CACHE_TTL`], so repeated calls skip the
//! signature check.

use super::Verdict;
use super::discovery::Discovery;
use super::jwks::Jwks;
use super::jwt::{verify_signed, well_formed};
use crate::cache::{Cache, Kind, token_key};
use crate::claims::{Claims, u64_claim};
use crate::clock::now;
use crate::reason::Reason;
use std::sync::Arc;
use std::time::Duration;

/// Longest time a verified token's claims are reused without checking the signature again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

pub struct BearerVerifier {
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    audience: String,
    cache: Cache,
    leeway: u64,
}

impl std::fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerVerifier").field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl BearerVerifier {
    /// `leeway`: clock skew tolerated on `exp`/`nbf`, in seconds (`clockSkewSeconds`).
    pub fn new(discovery: Arc<Discovery>, jwks: Arc<Jwks>, audience: &str, cache: Cache, leeway: u64) -> Self {
        BearerVerifier { jwks, discovery, audience: audience.to_owned(), cache, leeway }
    }

    pub async fn verify(&self, token: &str) -> Verdict {
        if !well_formed(token) {
            return Verdict::Invalid(Reason::MalformedToken);
        }
        let id = token_key(token);
        if let Ok(Some(claims)) = self.cache.get_json::<Claims>(Kind::Token, &id).await
            && u64_claim(&claims, "exp").is_some_and(|exp| exp.saturating_add(self.leeway) > now())
        {
            return Verdict::Valid(claims);
        }

        let claims = match verify_signed(&self.discovery, &self.jwks, &self.audience, token, self.leeway).await {
            Verdict::Valid(claims) => claims,
            other => return other,
        };
        let exp = u64_claim(&claims, "exp").unwrap_or(0);
        let ttl = Duration::from_secs(exp.saturating_sub(now())).min(CACHE_TTL);
        if !ttl.is_zero() {
            // Best effort: a cache failure only costs a signature check next time.
            let _ = self.cache.set_json(Kind::Token, &id, &claims, ttl).await;
        }
        Verdict::Valid(claims)
    }
}
