//! Verified token claims, as the provider sent them.

use serde_json::Value;

/// The claims of a verified token (ID token, bearer access token, logout token), or of a
/// session (ID-token claims plus userinfo).
pub type Claims = serde_json::Map<String, Value>;

/// A claim by dotted path (`realm_access.roles`), or a top-level claim whose name contains
/// dots (`https://example.com/groups`) when no nested object matches.
pub fn claim<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A top-level string claim.
pub fn str_claim<'a>(claims: &'a Claims, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A top-level numeric claim (`exp`, `iat`, …) as whole seconds.
pub fn u64_claim(claims: &Claims, name: &str) -> Option<u64> {
    claims.get(name).and_then(Value::as_u64)
}
