//! The relying party: provider discovery, signing keys, token verification.
//!
//! - [`discovery`]: `{providerURL}/.well-known/openid-configuration`, fetched in the
//!   background with retries and backoff, refreshed hourly; readiness waits for it.
//! - [`jwks`]: the provider's signing keys, refetched at most once per interval when a
//!   token names an unknown `kid`.
//! - [`login`]: the browser flow: login redirect, callback, session cookie, logout.
//! - [`backchannel`]: OpenID Connect Back-Channel Logout (logout tokens from the provider).
//! - [`bearer`]: `Authorization: Bearer <JWT>` verification (signature, `iss`, `aud`,
//!   `exp`, `nbf`), with a verified-token cache keyed by the token's hash.

pub mod backchannel;
pub mod bearer;
pub mod discovery;
pub mod jwks;
pub mod login;

/// What can go wrong talking to the provider or checking what it issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with something unusable.
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// Discovery has not succeeded yet.
    #[error("identity provider discovery has not completed")]
    NotDiscovered,
}

/// The HTTP client for talking to the provider (rustls with the process's aws-lc-rs
/// provider; timeouts so a hung provider cannot hold a Check).
pub fn http_client() -> reqwest::Client {
    crate::cache::redis::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
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
