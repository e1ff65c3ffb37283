//! `Authorization: Bearer <JWT>` verification.
//!
//! Accepted: asymmetric signatures only (RS*, PS*, ES256/384, EdDSA) with a key from the
//! provider's JWKS; `alg: none` and HMAC (HS*, which a public key must never verify) are
//! refused before any key is looked up. Checked: `iss` = the discovered issuer, `aud`
//! contains `audience` (default: the client id), `exp` and `nbf` with 30 s leeway.
//! A verified token's claims are cached under the SHA-256 of the token, for at most its
//! remaining lifetime and [`CACHE_TTL`], so repeated calls skip the signature check.

use super::OidcError;
use super::discovery::Discovery;
use super::jwks::{Jwks, KeyLookup};
use crate::cache::{Cache, Kind, token_key};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Claims of a verified token.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Longest time a verified token's claims are reused without checking the signature again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The verdict on a bearer token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Valid(Claims),
    /// Not acceptable; the reason is a short code for logs, metrics and `error_description`.
    Invalid(&'static str),
    /// Could not be checked (provider or keys unreachable): an internal failure, not a denial.
    Unavailable(OidcError),
}

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

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl BearerVerifier {
    /// `leeway`: clock skew tolerated on `exp`/`nbf`, in seconds (`clockSkewSeconds`).
    pub fn new(discovery: Arc<Discovery>, jwks: Arc<Jwks>, audience: &str, cache: Cache, leeway: u64) -> Self {
        BearerVerifier { jwks, discovery, audience: audience.to_owned(), cache, leeway }
    }

    pub async fn verify(&self, token: &str) -> Verdict {
        // Three non-empty base64url segments, before anything else touches it.
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 3
            || segments
                .iter()
                .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Verdict::Invalid("malformed_token");
        }
        let id = token_key(token);
        if let Ok(Some(claims)) = self.cache.get_json::<Claims>(Kind::Token, &id).await
            && claims.get("exp").and_then(serde_json::Value::as_u64).is_some_and(|exp| exp + self.leeway > now())
        {
            return Verdict::Valid(claims);
        }

        let claims = match verify_signed(&self.discovery, &self.jwks, &self.audience, token, self.leeway).await {
            Verdict::Valid(claims) => claims,
            other => return other,
        };
        let exp = claims.get("exp").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let ttl = Duration::from_secs(exp.saturating_sub(now())).min(CACHE_TTL);
        if !ttl.is_zero() {
            // Best effort: a cache failure only costs a signature check next time.
            let _ = self.cache.set_json(Kind::Token, &id, &claims, ttl).await;
        }
        Verdict::Valid(claims)
    }
}

/// Verifies a JWT issued by the provider: allowed algorithm, key from the JWKS, signature,
/// `iss`, `aud` contains `audience`, `exp`/`nbf` with leeway. Used for bearer tokens and ID tokens.
pub async fn verify_signed(discovery: &Discovery, jwks: &Jwks, audience: &str, token: &str, leeway: u64) -> Verdict {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        // Includes `alg: none`, which is not an algorithm jsonwebtoken knows.
        Err(_) => return Verdict::Invalid("malformed_token"),
    };
    if !ALLOWED.contains(&header.alg) {
        return Verdict::Invalid("algorithm_not_allowed");
    }
    let metadata = match discovery.metadata() {
        Ok(metadata) => metadata,
        Err(error) => return Verdict::Unavailable(error),
    };
    let key = match jwks.key(header.kid.as_deref()).await {
        KeyLookup::Found(key) => key,
        KeyLookup::Unknown => return Verdict::Invalid("unknown_signing_key"),
        KeyLookup::Unavailable(error) => return Verdict::Unavailable(error),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[metadata.issuer.as_str()]);
    validation.set_audience(&[audience]);
    validation.leeway = leeway;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => Verdict::Valid(data.claims),
        Err(error) => Verdict::Invalid(match error.kind() {
            ErrorKind::ExpiredSignature => "token_expired",
            ErrorKind::ImmatureSignature => "token_not_yet_valid",
            ErrorKind::InvalidAudience => "wrong_audience",
            ErrorKind::InvalidIssuer => "wrong_issuer",
            ErrorKind::InvalidSignature => "bad_signature",
            ErrorKind::MissingRequiredClaim(_) => "missing_claim",
            _ => "invalid_token",
        }),
    }
}
