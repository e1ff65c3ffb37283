//! The OpenID Connect protocol side, free of HTTP-decision semantics: it verifies what the
//! provider issues and talks to the provider, and returns typed results (never a
//! `Decision`; `crate::authz` turns results into answers).
//!
//! - [`discovery`]: `{providerURL}/.well-known/openid-configuration`, fetched in the
//!   background with retries and backoff, refreshed hourly; readiness waits for it.
//! - [`jwks`]: the provider's signing keys, refetched at most once per interval when a
//!   token names an unknown `kid`.
//! - [`client`]: the relying-party client on the `openidconnect` crate: authorization URL
//!   (state, nonce, PKCE), code exchange, refresh grant, ID-token verification, userinfo,
//!   end-session URL.
//! - [`jwt`]: JWT verification with `jsonwebtoken` for the tokens the RP client does not
//!   cover: bearer access tokens and back-channel logout tokens.
//! - [`bearer`]: `Authorization: Bearer <JWT>` verification with a verified-token cache.
//! - [`backchannel`]: OpenID Connect Back-Channel Logout (logout tokens from the provider).

pub mod backchannel;
pub mod bearer;
pub mod client;
pub mod discovery;
pub mod jwks;
pub mod jwt;

use crate::claims::Claims;
use crate::reason::Reason;
use std::time::Duration;

/// What can go wrong talking to the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with something unusable.
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// Discovery has not succeeded yet.
    #[error("identity provider discovery has not completed")]
    NotDiscovered,
}

/// The verdict on a token the provider issued (bearer, ID or logout token).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Valid(Claims),
    /// Not acceptable, with the reason.
    Invalid(Reason),
    /// Could not be checked (provider or keys unreachable): an internal failure, not a denial.
    Unavailable(OidcError),
}

/// Whole-request timeout for provider requests (the `providerTimeout` default), so a hung
/// provider cannot hold a Check past the proxy's own timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The one HTTP client for talking to the provider: rustls on the process's crypto provider
/// (`crate::tls`, installed at start-up), bounded timeouts, and **no redirects**: a token,
/// userinfo or key endpoint that redirects must not make authgate send credentials or trust
/// keys from wherever it points (SSRF; the `oauth2` crate requires this of its clients).
pub fn http_client() -> reqwest::Client {
    http_client_with_timeout(REQUEST_TIMEOUT)
}

/// Like [`http_client`], each request bounded by `timeout` (connecting included).
pub fn http_client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings builds")
}

/// GETs a JSON document from the provider (discovery, JWKS); `what` names it in errors.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    what: &str,
) -> Result<T, OidcError> {
    let response = http.get(url).send().await.map_err(|e| OidcError::ProviderUnavailable(format!("GET {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(OidcError::ProviderUnavailable(format!("GET {url}: HTTP {}", response.status())));
    }
    response.json::<T>().await.map_err(|e| OidcError::ProviderUnavailable(format!("{url}: not {what}: {e}")))
}
