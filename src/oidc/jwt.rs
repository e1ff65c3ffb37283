//! JWT verification with `jsonwebtoken`, for the tokens the relying-party client does not
//! cover: bearer access tokens and back-channel logout tokens.
//!
//! Accepted: asymmetric signatures only ([`ALLOWED`]) with a key from the provider's JWKS;
//! `alg: none` and HMAC (HS*, which a public key must never verify) are refused before any
//! key is looked up. Checked: `iss` = the discovered issuer, `aud` contains the expected
//! audience, `exp` and `nbf` with `clockSkewSeconds` leeway.

use super::Verdict;
use super::discovery::Discovery;
use super::jwks::{Jwks, KeyLookup};
use crate::claims::Claims;
use crate::reason::Reason;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use std::sync::Arc;

/// The signature algorithms authgate accepts, for every token kind.
pub const ALLOWED: [Algorithm; 9] = [
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

/// Three non-empty base64url segments: checked before anything else parses a token.
pub fn well_formed(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
    }
    segments == 3
}

/// The header's algorithm (if allowed) and key id.
pub fn allowed_header(token: &str) -> Result<(Algorithm, Option<String>), Reason> {
    // Includes `alg: none`, which is not an algorithm jsonwebtoken knows.
    let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::MalformedToken)?;
    if !ALLOWED.contains(&header.alg) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    Ok((header.alg, header.kid))
}

/// Verifies a JWT issued by the provider: allowed algorithm, key from the JWKS, signature,
/// `iss`, `aud` contains `audience`, `exp`/`nbf` with `leeway` seconds.
pub async fn verify_signed(
    discovery: &Discovery,
    jwks: &Arc<Jwks>,
    audience: &str,
    token: &str,
    leeway: u64,
) -> Verdict {
    if !well_formed(token) {
        return Verdict::Invalid(Reason::MalformedToken);
    }
    let (alg, kid) = match allowed_header(token) {
        Ok(header) => header,
        Err(reason) => return Verdict::Invalid(reason),
    };
    let metadata = match discovery.metadata() {
        Ok(metadata) => metadata,
        Err(error) => return Verdict::Unavailable(error),
    };
    let keys = match jwks.key(kid.as_deref()).await {
        KeyLookup::Found(keys) => keys,
        KeyLookup::Unknown => return Verdict::Invalid(Reason::UnknownSigningKey),
        KeyLookup::Unavailable(error) => return Verdict::Unavailable(error),
    };
    let Some(key) = keys.decoding_key(kid.as_deref()) else { return Verdict::Invalid(Reason::UnknownSigningKey) };
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[metadata.issuer().as_str()]);
    validation.set_audience(&[audience]);
    validation.leeway = leeway;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    match jsonwebtoken::decode::<Claims>(token, key, &validation) {
        Ok(data) => Verdict::Valid(data.claims),
        Err(error) => Verdict::Invalid(match error.kind() {
            ErrorKind::ExpiredSignature => Reason::TokenExpired,
            ErrorKind::ImmatureSignature => Reason::TokenNotYetValid,
            ErrorKind::InvalidAudience => Reason::WrongAudience,
            ErrorKind::InvalidIssuer => Reason::WrongIssuer,
            ErrorKind::InvalidSignature => Reason::BadSignature,
            ErrorKind::MissingRequiredClaim(_) => Reason::MissingClaim,
            _ => Reason::InvalidToken,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_segments_are_well_formed() {
        assert!(well_formed("a.b.c"));
        assert!(well_formed("eyJ0.eyJ1-_.c2ln"));
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.", "a.b.c=", "a.b+.c", "a.b/c.d", " a.b.c"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }
}
