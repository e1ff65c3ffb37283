//! `Authorization: Bearer <JWT>` verification (see [`super::jwt`] for the signature and
//! claim checks), the token-kind checks, and the verified-token cache.
//!
//! A bearer token must be an access token: a token carrying the back-channel logout
//! `events` claim, an ID token's `nonce` (unless `bearerAllowNonce`), `at_hash` or
//! `c_hash`, or a `typ` header naming another kind (or not among `bearerTokenTypes`) is
//! refused, so an ID token leaked through `id_token_hint` or a template header, or a
//! logout token captured from a proxy log, opens nothing.
//!
//! A verified token's claims are cached under the SHA-256 of the token, for at most its
//! remaining lifetime and [`CACHE_TTL`], so repeated calls skip the signature check. The
//! entry is sealed (AES-256-GCM, its own key, bound to its cache key): whoever can write to
//! Redis cannot mint an identity by writing an entry for a token of their choosing; such
//! an entry is rejected, counted and logged, and the token verified from scratch.

use super::Verdict;
use super::discovery::Discovery;
use super::jwks::Jwks;
use super::jwt::{verify_signed, well_formed};
use crate::cache::{Cache, Kind, token_key};
use crate::claims::{Claims, u64_claim};
use crate::clock::now;
use crate::config::Config;
use crate::reason::Reason;
use crate::session::{Cipher, OpenedCache};
use std::sync::Arc;
use std::time::Duration;

/// Longest time a verified token's claims are reused without checking the signature again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Hot tokens whose opened cache entry is kept (see `OpenedCache`).
const OPENED_TOKENS: u64 = 10_000;

/// `typ` values that name a token that is not an access token.
const OTHER_KINDS: [&str; 4] = ["logout+jwt", "id_token+jwt", "secevent+jwt", "jwt-refresh"];

pub struct BearerVerifier {
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    audience: String,
    cache: Cache,
    cipher: Cipher,
    /// Hot tokens' opened cache entries: see [`OpenedCache`].
    opened: OpenedCache<Claims>,
    leeway: u64,
    /// Accepted `typ` values, normalised; empty: any but [`OTHER_KINDS`].
    token_types: Vec<String>,
    allow_nonce: bool,
}

impl std::fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerVerifier").field("audience", &self.audience).finish_non_exhaustive()
    }
}

/// `typ` as RFC 7515 §4.1.9 compares it: case-insensitive, `application/` optional.
fn normalise_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
}

impl BearerVerifier {
    /// Verifies for `audience` (`Config::expected_audience`), with `clockSkewSeconds`,
    /// `bearerTokenTypes` and `bearerAllowNonce`; `cipher` seals the cache entries.
    pub fn new(config: &Config, discovery: Arc<Discovery>, jwks: Arc<Jwks>, cache: Cache, cipher: Cipher) -> Self {
        BearerVerifier {
            discovery,
            jwks,
            audience: config.expected_audience().to_owned(),
            cache,
            cipher,
            opened: OpenedCache::new(OPENED_TOKENS, CACHE_TTL),
            leeway: config.clock_skew_seconds,
            token_types: config.bearer_token_types.iter().map(|t| normalise_typ(t)).collect(),
            allow_nonce: config.bearer_allow_nonce,
        }
    }

    pub async fn verify(&self, token: &str) -> Verdict {
        if !well_formed(token) {
            return Verdict::Invalid(Reason::MalformedToken);
        }
        let id = token_key(token);
        if let Some(claims) = self.cached(&id).await
            && u64_claim(&claims, "exp").is_some_and(|exp| exp.saturating_add(self.leeway) > now())
        {
            return Verdict::Valid(claims);
        }
        if let Err(reason) = self.is_access_token_header(token) {
            return Verdict::Invalid(reason);
        }
        let claims = match verify_signed(&self.discovery, &self.jwks, &self.audience, token, self.leeway).await {
            Verdict::Valid(claims) => claims,
            other => return other,
        };
        if let Err(reason) = self.is_access_token_claims(&claims) {
            return Verdict::Invalid(reason);
        }
        let exp = u64_claim(&claims, "exp").unwrap_or(0);
        let ttl = Duration::from_secs(exp.saturating_sub(now())).min(CACHE_TTL);
        if !ttl.is_zero() {
            let json = serde_json::to_vec(&claims).expect("claims serialize");
            // Best effort: a cache failure only costs a signature check next time.
            let _ = self.cache.set_raw(Kind::Token, &id, &self.cipher.seal(&json, id.as_bytes()), ttl).await;
        }
        Verdict::Valid(claims)
    }

    /// The claims cached for a token, if an entry exists and is ours.
    async fn cached(&self, id: &str) -> Option<Claims> {
        let sealed = self.cache.get_raw(Kind::Token, id).await.ok()??;
        let claims = self.opened.get_or_open(id, sealed, |sealed| {
            self.cipher.open(sealed, id.as_bytes()).and_then(|plain| serde_json::from_slice(&plain).ok())
        });
        if claims.is_none() {
            self.cache.record_rejected(Kind::Token);
            tracing::warn!("a verified-token cache entry failed its seal (written by someone else?): ignored");
        }
        claims
    }

    fn is_access_token_header(&self, token: &str) -> Result<(), Reason> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::MalformedToken)?;
        let typ = header.typ.as_deref().map(normalise_typ);
        let acceptable = match (&typ, self.token_types.is_empty()) {
            (Some(typ), true) => !OTHER_KINDS.contains(&typ.as_str()),
            (None, true) => true,
            (Some(typ), false) => self.token_types.contains(typ),
            (None, false) => false,
        };
        if acceptable { Ok(()) } else { Err(Reason::NotAnAccessToken) }
    }

    fn is_access_token_claims(&self, claims: &Claims) -> Result<(), Reason> {
        let id_token_only = ["at_hash", "c_hash", "s_hash"].iter().any(|c| claims.contains_key(*c));
        let nonce = claims.contains_key("nonce") && !self.allow_nonce;
        if claims.contains_key("events") || id_token_only || nonce { Err(Reason::NotAnAccessToken) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_compares_like_rfc_7515() {
        assert_eq!(normalise_typ("application/AT+JWT"), "at+jwt");
        assert_eq!(normalise_typ(" JWT "), "jwt");
    }
}
