//! Wall-clock time as the protocols count it: whole seconds since the Unix epoch.
//!
//! Token lifetimes (`exp`, `iat`, `nbf`), session ages and logout stamps all use this one
//! function, so they can never disagree about what "now" is.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (0 if the system clock is before it).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `now() + seconds`, saturating: a provider-supplied `expires_in` of `u64::MAX` means
/// "a long time", not an overflow.
pub fn after(seconds: u64) -> u64 {
    now().saturating_add(seconds)
}
