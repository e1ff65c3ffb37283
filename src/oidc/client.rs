//! The relying-party client, built on the `openidconnect` crate: authorization URL (state,
//! nonce, PKCE S256), code exchange, refresh grant, ID-token verification, userinfo and
//! the end-session URL.
//!
//! It speaks the protocol only: it returns typed results and never a `Decision`
//! (`crate::authz::browser` decides what a result means for the request). What the crate
//! does not do stays around it: discovery's lifecycle ([`super::discovery`]), the key-set
//! rotation policy ([`super::jwks`]), sessions, and the refresh lease.
//!
//! ID tokens are verified by `openidconnect`'s verifier, restricted to the asymmetric
//! algorithms authgate accepts everywhere ([`ALLOWED`]); on top of it: `nbf` and `iat`
//! within `clockSkewSeconds`, `azp` when present or when there are several audiences,
//! `at_hash` when the token carries one. The claims handed back are the verified token's
//! own payload (a JSON object, exactly as signed), so policy sees every claim.

use super::discovery::{Discovery, ProviderMetadata};
use super::jwks::{Jwks, KeyLookup};
use super::jwt::{allowed_header, well_formed};
use super::{OidcError, Verdict};
use crate::claims::{Claims, str_claim, u64_claim};
use crate::clock::now;
use crate::config::Config;
use crate::reason::Reason;
use crate::session::random_token;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    SubjectIdentifier, TokenResponse, UserInfoClaims, UserInfoError,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tracing::Instrument;

/// The ID-token signature algorithms accepted (the same asymmetric set as `super::jwt`).
pub const ALLOWED: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Bytes of randomness in `state` and `nonce` (192 bits).
const STATE_BYTES: usize = 24;

/// A client built from discovered metadata: authorization endpoint set, token and userinfo
/// endpoints as the provider announced them.
type DiscoveredClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// A login about to start: where to send the browser, and what the callback must check.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE verifier (`enablePKCE`), to send with the code.
    pub pkce_verifier: Option<String>,
}

/// What the token endpoint issued.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires, as the provider said.
    pub expires_in: Option<u64>,
}

/// The access-token lifetime assumed when the provider does not say.
const DEFAULT_EXPIRES_IN: u64 = 300;

impl Tokens {
    /// When the access token expires (epoch seconds; saturating on absurd lifetimes).
    pub fn access_expires_at(&self) -> u64 {
        crate::clock::after(self.expires_in.unwrap_or(DEFAULT_EXPIRES_IN))
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The provider refused the grant (`invalid_grant`…): the code or refresh token is spent.
    Rejected(String),
    /// The provider could not be reached or answered nonsense.
    Unavailable(Reason),
}

/// How the ID token's `nonce` is checked.
#[derive(Debug, Clone, Copy)]
pub enum ExpectedNonce<'a> {
    /// At the callback: the nonce of this login, compared in constant time.
    Exactly(&'a str),
    /// On refresh: none was sent, so none is checked (OIDC Core §12.2).
    Any,
}

/// Userinfo claims as sent, kept whole (the standard ones are typed by the crate, the rest
/// land here).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: Claims,
}

impl AdditionalClaims for OtherClaims {}

/// The relying-party client.
pub struct RpClient {
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    http: reqwest::Client,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    /// `tokenEndpointAuthMethod`: `client_secret_basic`, `client_secret_post`, or empty (pick).
    auth_method: String,
    scopes: Vec<Scope>,
    pkce: bool,
    leeway: u64,
}

impl std::fmt::Debug for RpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpClient").field("client_id", &self.client_id.as_str()).finish_non_exhaustive()
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl RpClient {
    pub fn new(config: &Config, discovery: Arc<Discovery>, jwks: Arc<Jwks>, http: reqwest::Client) -> Self {
        let secret = config.client_secret.expose();
        RpClient {
            discovery,
            jwks,
            http,
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: (!secret.is_empty()).then(|| ClientSecret::new(secret.to_owned())),
            auth_method: config.token_endpoint_auth_method.clone(),
            // openidconnect always asks for `openid` itself.
            scopes: config.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())).collect(),
            pkce: config.enable_pkce,
            leeway: config.clock_skew_seconds,
        }
    }

    fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        self.discovery.metadata()
    }

    /// The crate's client for the current metadata, with the client authentication to use:
    /// `client_secret_basic` unless configured otherwise or the provider only offers
    /// `client_secret_post`; a public client (no secret) sends its id in the body.
    fn client(&self, metadata: &ProviderMetadata) -> DiscoveredClient {
        let offered = metadata.token_endpoint_auth_methods_supported();
        let basic = self.client_secret.is_some()
            && match self.auth_method.as_str() {
                "client_secret_basic" => true,
                "client_secret_post" => false,
                _ => offered.is_none_or(|m| m.is_empty() || m.iter().any(|m| m.as_ref() == "client_secret_basic")),
            };
        CoreClient::from_provider_metadata(metadata.clone(), self.client_id.clone(), self.client_secret.clone())
            .set_auth_type(if basic { AuthType::BasicAuth } else { AuthType::RequestBody })
    }

    /// The provider's authorization URL for a new login, with fresh `state`, `nonce` and
    /// (with `enablePKCE`) an S256 code challenge.
    pub fn authorize_url(&self, redirect_uri: &str) -> Result<AuthorizationRequest, OidcError> {
        let metadata = self.metadata()?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| OidcError::ProviderUnavailable(format!("callback URL {redirect_uri:?}: {e}")))?;
        let client = self.client(&metadata);
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new(random_token(STATE_BYTES)),
                || Nonce::new(random_token(STATE_BYTES)),
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_redirect_uri(std::borrow::Cow::Owned(redirect));
        let mut pkce_verifier = None;
        if self.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            pkce_verifier = Some(verifier.secret().clone());
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationRequest {
            url: url.into(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier,
        })
    }

    /// Redeems an authorization code.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let metadata = self.metadata().map_err(|_| TokenError::Unavailable(Reason::IdpUnavailable))?;
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| TokenError::Unavailable(Reason::IdpBadResponse))?;
        let client = self.client(&metadata);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| TokenError::Unavailable(Reason::IdpBadResponse))?
            .set_redirect_uri(std::borrow::Cow::Owned(redirect));
        if let Some(verifier) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
        }
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.token", grant_type = "authorization_code");
        tokens(request.request_async(&self.http).instrument(span).await)
    }

    /// Redeems a refresh token.
    pub async fn exchange_refresh_token(&self, refresh_token: &str) -> Result<Tokens, TokenError> {
        let metadata = self.metadata().map_err(|_| TokenError::Unavailable(Reason::IdpUnavailable))?;
        let client = self.client(&metadata);
        let refresh_token = RefreshToken::new(refresh_token.to_owned());
        let request = client
            .exchange_refresh_token(&refresh_token)
            .map_err(|_| TokenError::Unavailable(Reason::IdpBadResponse))?;
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.token", grant_type = "refresh_token");
        tokens(request.request_async(&self.http).instrument(span).await)
    }

    /// Verifies an ID token (signature, `iss`, `aud`, `exp`, `iat`, `nbf`, `nonce`, `azp`,
    /// and `at_hash` against `access_token` when the token has one) and returns its claims.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: ExpectedNonce<'_>,
        access_token: Option<&str>,
    ) -> Verdict {
        if !well_formed(id_token) {
            return Verdict::Invalid(Reason::MalformedToken);
        }
        let kid = match allowed_header(id_token) {
            Ok((_, kid)) => kid,
            Err(reason) => return Verdict::Invalid(reason),
        };
        let metadata = match self.metadata() {
            Ok(metadata) => metadata,
            Err(error) => return Verdict::Unavailable(error),
        };
        let keys = match self.jwks.key(kid.as_deref()).await {
            KeyLookup::Found(keys) => keys,
            KeyLookup::Unknown => return Verdict::Invalid(Reason::UnknownSigningKey),
            KeyLookup::Unavailable(error) => return Verdict::Unavailable(error),
        };
        let Ok(token) = CoreIdToken::from_str(id_token) else { return Verdict::Invalid(Reason::MalformedToken) };
        let leeway = chrono::Duration::seconds(i64::try_from(self.leeway).unwrap_or(i64::MAX / 1000));
        let verifier = CoreIdTokenVerifier::new_public_client(
            self.client_id.clone(),
            metadata.issuer().clone(),
            keys.oidc.clone(),
        )
        .set_allowed_algs(ALLOWED)
        // Several audiences are fine as long as `azp` names us (checked below).
        .set_other_audience_verifier_fn(|_| true)
        .set_time_fn(move || chrono::Utc::now() - leeway)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + leeway { Err("issued in the future".to_owned()) } else { Ok(()) }
        });
        let verified = token.claims(&verifier, |found: Option<&Nonce>| match (nonce, found) {
            (ExpectedNonce::Any, _) => Ok(()),
            (ExpectedNonce::Exactly(expected), Some(found)) if ct_eq(found.secret(), expected) => Ok(()),
            (ExpectedNonce::Exactly(_), _) => Err("nonce mismatch".to_owned()),
        });
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => return Verdict::Invalid(claims_error_reason(&error)),
        };
        // at_hash (Core §3.1.3.8, §3.3.2.11): binds the access token to this ID token.
        if let (Some(expected), Some(access_token)) = (verified.access_token_hash(), access_token) {
            let matches = token
                .signing_alg()
                .ok()
                .zip(token.signing_key(&verifier).ok())
                .and_then(|(alg, key)| {
                    AccessTokenHash::from_token(&AccessToken::new(access_token.to_owned()), alg, key).ok()
                })
                .is_some_and(|actual| ct_eq(actual.as_str(), expected.as_str()));
            if !matches {
                return Verdict::Invalid(Reason::AtHashMismatch);
            }
        }
        // The payload exactly as signed (its signature was verified above).
        let Some(claims) = payload(id_token) else { return Verdict::Invalid(Reason::MalformedToken) };
        if u64_claim(&claims, "nbf").is_some_and(|nbf| nbf > now().saturating_add(self.leeway)) {
            return Verdict::Invalid(Reason::TokenNotYetValid);
        }
        let several_audiences = claims.get("aud").and_then(serde_json::Value::as_array).is_some_and(|a| a.len() > 1);
        let azp = str_claim(&claims, "azp");
        if (several_audiences || azp.is_some()) && azp != Some(self.client_id.as_str()) {
            return Verdict::Invalid(Reason::AzpMismatch);
        }
        Verdict::Valid(claims)
    }

    /// The userinfo endpoint's claims for `access_token`; their `sub` must be `subject`.
    /// `Ok(None)` when the provider has no userinfo endpoint.
    pub async fn user_info(&self, access_token: &str, subject: &str) -> Result<Option<Claims>, Reason> {
        let metadata = self.metadata().map_err(|_| Reason::IdpUnavailable)?;
        if metadata.userinfo_endpoint().is_none() {
            return Ok(None);
        }
        let client = self.client(&metadata);
        let request = client
            .user_info(AccessToken::new(access_token.to_owned()), Some(SubjectIdentifier::new(subject.to_owned())))
            .map_err(|_| Reason::UserinfoFailed)?;
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.userinfo");
        let result: Result<UserInfoClaims<OtherClaims, CoreGenderClaim>, _> =
            request.request_async(&self.http).instrument(span).await;
        match result {
            Ok(info) => match serde_json::to_value(&info) {
                Ok(serde_json::Value::Object(claims)) => Ok(Some(claims)),
                _ => Err(Reason::UserinfoFailed),
            },
            Err(UserInfoError::ClaimsVerification(ClaimsVerificationError::InvalidSubject(_))) => {
                Err(Reason::UserinfoSubMismatch)
            }
            Err(UserInfoError::Request(error)) => {
                tracing::warn!(%error, "userinfo endpoint unreachable");
                Err(Reason::IdpUnavailable)
            }
            Err(error) => {
                tracing::warn!(%error, "userinfo endpoint failed");
                Err(Reason::UserinfoFailed)
            }
        }
    }

    /// The provider's end-session URL (RP-Initiated Logout 1.0) with `id_token_hint`,
    /// `post_logout_redirect_uri` and `client_id`; `None` when the provider has none.
    pub fn end_session_url(&self, id_token_hint: Option<&str>, post_logout: &str) -> Option<String> {
        let metadata = self.metadata().ok()?;
        let endpoint = metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut request = LogoutRequest::from(endpoint).set_client_id(self.client_id.clone());
        if let Some(hint) = id_token_hint.and_then(|t| CoreIdToken::from_str(t).ok()) {
            request = request.set_id_token_hint(&hint);
        }
        if let Ok(post_logout) = PostLogoutRedirectUrl::new(post_logout.to_owned()) {
            request = request.set_post_logout_redirect_uri(post_logout);
        }
        Some(request.http_get_url().into())
    }
}

/// The JSON payload of a JWS (its middle segment).
fn payload(token: &str) -> Option<Claims> {
    let encoded = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn claims_error_reason(error: &ClaimsVerificationError) -> Reason {
    match error {
        ClaimsVerificationError::Expired(message) if message.contains("future") => Reason::TokenNotYetValid,
        ClaimsVerificationError::Expired(_) => Reason::TokenExpired,
        ClaimsVerificationError::InvalidAudience(_) => Reason::WrongAudience,
        ClaimsVerificationError::InvalidIssuer(_) => Reason::WrongIssuer,
        ClaimsVerificationError::InvalidNonce(_) => Reason::NonceMismatch,
        ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::DisallowedAlg(_)
            | openidconnect::SignatureVerificationError::UnsupportedAlg(_),
        ) => Reason::AlgorithmNotAllowed,
        ClaimsVerificationError::SignatureVerification(openidconnect::SignatureVerificationError::NoMatchingKey) => {
            Reason::UnknownSigningKey
        }
        ClaimsVerificationError::SignatureVerification(_) => Reason::BadSignature,
        _ => Reason::InvalidToken,
    }
}

/// A token endpoint answer, or why there is none.
fn tokens<E: std::error::Error>(
    result: Result<
        CoreTokenResponse,
        RequestTokenError<E, openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>>,
    >,
) -> Result<Tokens, TokenError> {
    match result {
        Ok(response) => Ok(Tokens {
            access_token: response.access_token().secret().clone(),
            id_token: response.id_token().map(ToString::to_string),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in().map(|d| d.as_secs()),
        }),
        Err(RequestTokenError::ServerResponse(response)) => {
            let error = response.error().as_ref().to_owned();
            // The provider's own trouble is not a verdict on the grant.
            if error == "server_error" || error == "temporarily_unavailable" {
                tracing::warn!(%error, "token endpoint failed");
                return Err(TokenError::Unavailable(Reason::IdpUnavailable));
            }
            tracing::info!(%error, "token endpoint refused the grant");
            Err(TokenError::Rejected(error))
        }
        Err(RequestTokenError::Request(error)) => {
            tracing::warn!(%error, "token endpoint unreachable");
            Err(TokenError::Unavailable(Reason::IdpUnavailable))
        }
        Err(error) => {
            tracing::warn!(%error, "token endpoint answered nonsense");
            Err(TokenError::Unavailable(Reason::IdpBadResponse))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_signed_payload() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"u","aud":["a","b"]}"#);
        let claims = payload(&format!("e30.{body}.c2ln")).unwrap();
        assert_eq!(str_claim(&claims, "sub"), Some("u"));
        assert!(payload("e30.%%%.x").is_none());
        assert!(payload("e30").is_none());
    }

    #[test]
    fn compares_secrets_in_constant_time_correctly() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
