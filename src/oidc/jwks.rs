//! The provider's signing keys (JWKS).

use super::OidcError;
use super::discovery::Discovery;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// An unknown `kid` triggers at most one refetch per this interval (a flood of tokens with
/// made-up key ids must not become a flood of requests to the provider).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys are refreshed at least this often even when every `kid` is known.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

pub struct Jwks {
    discovery: Arc<Discovery>,
    http: reqwest::Client,
    keys: RwLock<Option<(Arc<JwkSet>, Instant)>>,
    /// Serializes fetches; holds when the last one was tried.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").finish_non_exhaustive()
    }
}

/// Why no key could be found for a token.
#[derive(Clone)]
pub enum KeyLookup {
    Found(Box<DecodingKey>),
    /// The provider has no such key (the token is not the provider's).
    Unknown,
    /// The keys could not be fetched.
    Unavailable(OidcError),
}

impl Jwks {
    pub fn new(discovery: Arc<Discovery>, http: reqwest::Client) -> Self {
        Jwks { discovery, http, keys: RwLock::new(None), fetching: tokio::sync::Mutex::new(None) }
    }

    fn lookup(set: &JwkSet, kid: Option<&str>) -> Option<DecodingKey> {
        let jwk = match kid {
            Some(kid) => set.find(kid)?,
            // No kid: only unambiguous with a single key.
            None if set.keys.len() == 1 => &set.keys[0],
            None => return None,
        };
        DecodingKey::from_jwk(jwk).ok()
    }

    /// The key a token names.
    pub async fn key(&self, kid: Option<&str>) -> KeyLookup {
        let cached = self.keys.read().expect("jwks lock").clone();
        if let Some((set, fetched)) = &cached
            && fetched.elapsed() < MAX_AGE
            && let Some(key) = Self::lookup(set, kid)
        {
            return KeyLookup::Found(Box::new(key));
        }
        let mut last_try = self.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some((set, fetched)) = self.keys.read().expect("jwks lock").clone()
            && cached.as_ref().is_none_or(|(_, before)| fetched > *before)
            && let Some(key) = Self::lookup(&set, kid)
        {
            return KeyLookup::Found(Box::new(key));
        }
        if let Some(tried) = *last_try
            && tried.elapsed() < REFETCH_INTERVAL
            && cached.is_some()
        {
            return KeyLookup::Unknown;
        }
        *last_try = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().expect("jwks lock") = Some((set.clone(), Instant::now()));
                match Self::lookup(&set, kid) {
                    Some(key) => KeyLookup::Found(Box::new(key)),
                    None => KeyLookup::Unknown,
                }
            }
            Err(error) => KeyLookup::Unavailable(error),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, OidcError> {
        let uri = self.discovery.metadata()?.jwks_uri.clone();
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.jwks", url = %uri);
        super::get_json(&self.http, &uri, "a JWK set").instrument(span).await
    }
}
