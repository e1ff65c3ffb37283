//! The provider's signing keys (JWKS), in the two forms the verifiers need: decoding keys
//! for `jsonwebtoken` (bearer and logout tokens) and `openidconnect`'s key set (ID tokens),
//! both parsed once per fetch from the same document.

use super::OidcError;
use super::discovery::Discovery;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use openidconnect::core::CoreJsonWebKeySet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// An unknown `kid` triggers at most one refetch per this interval (a flood of tokens with
/// made-up key ids must not become a flood of requests to the provider).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys are refreshed at least this often even when every `kid` is known.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// One fetched key set, parsed for both verifiers.
pub struct KeySet {
    /// `(kid, key)` for jsonwebtoken, converted once.
    decoding: Vec<(Option<String>, DecodingKey)>,
    /// The same keys for openidconnect's ID-token verifier.
    pub oidc: CoreJsonWebKeySet,
}

impl KeySet {
    fn parse(document: serde_json::Value) -> Result<KeySet, OidcError> {
        let invalid = |e: serde_json::Error| OidcError::ProviderUnavailable(format!("not a JWK set: {e}"));
        let jose: JwkSet = serde_json::from_value(document.clone()).map_err(invalid)?;
        let oidc: CoreJsonWebKeySet = serde_json::from_value(document).map_err(invalid)?;
        let decoding = jose
            .keys
            .iter()
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok().map(|key| (jwk.common.key_id.clone(), key)))
            .collect();
        Ok(KeySet { decoding, oidc })
    }

    fn has(&self, kid: Option<&str>) -> bool {
        self.decoding_key(kid).is_some()
    }

    /// The key a token names; without a `kid`, only unambiguous with a single key.
    pub(crate) fn decoding_key(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self.decoding.iter().find(|(id, _)| id.as_deref() == Some(kid)).map(|(_, key)| key),
            None if self.decoding.len() == 1 => Some(&self.decoding[0].1),
            None => None,
        }
    }
}

pub struct Jwks {
    discovery: Arc<Discovery>,
    http: reqwest::Client,
    keys: RwLock<Option<(Arc<KeySet>, Instant)>>,
    /// Serializes fetches; holds when the last one was tried and whether it failed.
    fetching: tokio::sync::Mutex<Option<(Instant, Option<OidcError>)>>,
    /// A background refresh of stale keys is under way.
    refreshing: AtomicBool,
    /// Keys older than this are refreshed in the background ([`MAX_AGE`]).
    max_age: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").finish_non_exhaustive()
    }
}

/// The outcome of looking up the key a token names.
#[derive(Clone)]
pub enum KeyLookup {
    /// The current key set, which holds the key.
    Found(Arc<KeySet>),
    /// The provider has no such key (the token is not the provider's).
    Unknown,
    /// The keys could not be fetched (so whether the key exists is not known).
    Unavailable(OidcError),
}

impl Jwks {
    pub fn new(discovery: Arc<Discovery>, http: reqwest::Client) -> Self {
        Jwks {
            discovery,
            http,
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
            max_age: MAX_AGE,
        }
    }

    /// Refreshes keys older than `max_age` instead of [`MAX_AGE`].
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The key set, provided it holds the key a token names.
    ///
    /// A known `kid` is served from the cached set whatever its age (stale-if-error: a
    /// provider outage must not turn valid tokens into "invalid token"), without waiting for
    /// anything; keys older than the maximum age are refreshed in the background. An unknown
    /// `kid` refetches, at most once per [`REFETCH_INTERVAL`]; when that fetch failed the
    /// answer is `Unavailable`, never `Unknown`.
    pub async fn key(self: &Arc<Self>, kid: Option<&str>) -> KeyLookup {
        let cached = self.keys.read().expect("jwks lock").clone();
        if let Some((set, fetched)) = &cached
            && set.has(kid)
        {
            if fetched.elapsed() >= self.max_age {
                self.refresh_in_background();
            }
            return KeyLookup::Found(set.clone());
        }
        let mut last = self.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some((set, fetched)) = self.keys.read().expect("jwks lock").clone()
            && cached.as_ref().is_none_or(|(_, before)| fetched > *before)
            && set.has(kid)
        {
            return KeyLookup::Found(set);
        }
        if let Some((tried, outcome)) = &*last
            && tried.elapsed() < REFETCH_INTERVAL
        {
            return match outcome {
                Some(error) => KeyLookup::Unavailable(error.clone()),
                None => KeyLookup::Unknown,
            };
        }
        let result = self.fetch_and_store().await;
        // The first successful fetch does not spend the unknown-`kid` budget: a provider
        // that rotates its keys soon after authgate started must not see its new key
        // refused for a whole interval. Failures always count (no fetch storm while down).
        if cached.is_some() || result.is_err() {
            *last = Some((Instant::now(), result.as_ref().err().cloned()));
        }
        match result {
            Ok(set) if set.has(kid) => KeyLookup::Found(set),
            Ok(_) => KeyLookup::Unknown,
            Err(error) => KeyLookup::Unavailable(error),
        }
    }

    /// Refreshes stale keys without making anyone wait; a failure keeps the old keys.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let jwks = self.clone();
        tokio::spawn(async move {
            let mut last = jwks.fetching.lock().await;
            let stale =
                jwks.keys.read().expect("jwks lock").as_ref().is_none_or(|(_, at)| at.elapsed() >= jwks.max_age);
            if stale {
                let result = jwks.fetch_and_store().await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "refreshing the provider's keys failed; the cached keys stay in use");
                }
                *last = Some((Instant::now(), result.err()));
            }
            jwks.refreshing.store(false, Ordering::SeqCst);
        });
    }

    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, OidcError> {
        let set = Arc::new(self.fetch().await?);
        *self.keys.write().expect("jwks lock") = Some((set.clone(), Instant::now()));
        Ok(set)
    }

    async fn fetch(&self) -> Result<KeySet, OidcError> {
        let uri = self.discovery.metadata()?.jwks_uri().url().to_string();
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.jwks", url = %uri);
        let document: serde_json::Value = super::get_json(&self.http, &uri, "a JWK set").instrument(span).await?;
        KeySet::parse(document)
    }
}
