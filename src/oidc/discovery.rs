//! OpenID Provider discovery (OpenID Connect Discovery 1.0), kept fresh in the background.
//!
//! The document is read into `openidconnect`'s `ProviderMetadataWithLogout` (RP-initiated
//! logout's `end_session_endpoint` included); what the crate does not do is ours: the
//! background refresh with backoff, keeping the last good metadata when a refresh fails,
//! and the readiness reason.

use super::OidcError;
use crate::retry::Backoff;
use openidconnect::ProviderMetadataWithLogout;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tracing::Instrument;

/// How often a successful discovery is refreshed (keys move, endpoints rarely do).
const REFRESH: Duration = Duration::from_secs(3600);
/// Retry backoff bounds while discovery fails.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The provider's metadata.
pub type ProviderMetadata = ProviderMetadataWithLogout;

/// The provider's metadata, kept fresh in the background.
pub struct Discovery {
    provider_url: String,
    http: reqwest::Client,
    current: RwLock<Option<Arc<ProviderMetadata>>>,
    last_error: RwLock<Option<String>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("provider_url", &self.provider_url).finish_non_exhaustive()
    }
}

fn trim_slash(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

impl Discovery {
    /// Starts discovering `provider_url` in the background; retried with backoff until it
    /// succeeds, then refreshed every hour (a failed refresh keeps the last good metadata).
    pub fn start(provider_url: &str, http: reqwest::Client) -> Arc<Self> {
        let discovery = Arc::new(Discovery {
            provider_url: trim_slash(provider_url).to_owned(),
            http,
            current: RwLock::new(None),
            last_error: RwLock::new(None),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&discovery)));
        discovery
    }

    /// The metadata, once discovered.
    pub fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        self.current.read().expect("discovery lock").clone().ok_or(OidcError::NotDiscovered)
    }

    /// Why discovery has not succeeded, for `/readyz`.
    pub fn unready_reason(&self) -> Option<String> {
        if self.current.read().expect("discovery lock").is_some() {
            return None;
        }
        let error = self.last_error.read().expect("discovery lock").clone();
        Some(match error {
            Some(error) => format!("identity provider discovery failing: {error}"),
            None => "identity provider discovery in progress".to_owned(),
        })
    }

    /// One discovery round trip, validated.
    pub async fn fetch(&self) -> Result<ProviderMetadata, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.provider_url);
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.discovery", url = %url);
        async {
            let metadata: ProviderMetadata = super::get_json(&self.http, &url, "valid provider metadata").await?;
            // Discovery 1.0 §4.3: the issuer must be exactly the URL we discovered from.
            if trim_slash(metadata.issuer().as_str()) != self.provider_url {
                return Err(OidcError::ProviderUnavailable(format!(
                    "{url} names issuer {:?}, expected {:?} (providerURL)",
                    metadata.issuer().as_str(),
                    self.provider_url
                )));
            }
            Ok(metadata)
        }
        .instrument(span)
        .await
    }
}

async fn refresh_loop(discovery: Weak<Discovery>) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let Some(strong) = discovery.upgrade() else { return };
        let wait = match strong.fetch().await {
            Ok(metadata) => {
                let first = strong.current.read().expect("discovery lock").is_none();
                if first {
                    tracing::info!(issuer = %metadata.issuer().as_str(), "identity provider discovered");
                }
                *strong.current.write().expect("discovery lock") = Some(Arc::new(metadata));
                *strong.last_error.write().expect("discovery lock") = None;
                backoff.reset();
                REFRESH
            }
            Err(error) => {
                let message = error.to_string();
                let changed = strong.last_error.read().expect("discovery lock").as_deref() != Some(message.as_str());
                let wait = backoff.next_wait();
                if changed {
                    tracing::warn!(%error, retry_in = ?wait, "identity provider discovery failed");
                }
                *strong.last_error.write().expect("discovery lock") = Some(message);
                wait
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}
