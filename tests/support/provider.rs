//! An OpenID Provider inside the test process (axum on 127.0.0.1:0), for decision-level
//! tests that run in milliseconds: discovery, a JWKS with one ES256 key, a token endpoint
//! (authorization code and refresh grants, rotating refresh tokens) and userinfo. The test
//! decides what each code yields ([`Grant`]) and can make the token endpoint misbehave.
//!
//! The real `oidc-provider` (`super::Idp`) stays the acceptance layer; this one exists so
//! that every branch of the decision core can be reached quickly and on purpose.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub const CLIENT_ID: &str = "decision-tests";
pub const CLIENT_SECRET: &str = "decision-tests-secret";
const KID: &str = "test-key-1";

/// What the token endpoint answers for one authorization code.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Claims of the ID token, added to `iss`, `aud`, `iat`, `exp` (the provider's).
    pub id_claims: Value,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Issue a refresh token.
    pub refresh: bool,
    /// Send exactly this ID token instead of signing one.
    pub id_token: Option<String>,
    /// On refresh, issue the ID token for this `sub` instead (a provider gone wrong).
    pub refreshed_sub: Option<String>,
}

impl Grant {
    /// A login of `sub` for the login whose `nonce` the authorization URL carried.
    pub fn login(sub: &str, nonce: &str) -> Grant {
        Grant {
            id_claims: json!({"sub": sub, "nonce": nonce, "email": format!("{sub}@example.com"), "email_verified": true}),
            expires_in: 300,
            refresh: true,
            id_token: None,
            refreshed_sub: None,
        }
    }
}

/// How the token endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    Normal,
    /// Answers `307` to another endpoint (which would succeed): a client must not follow.
    Redirects,
    /// Answers 500 with `server_error`.
    Fails,
}

struct ProviderState {
    issuer: String,
    key: EncodingKey,
    jwk: Value,
    codes: Mutex<HashMap<String, Grant>>,
    refresh_tokens: Mutex<HashMap<String, Grant>>,
    behaviour: Mutex<TokenEndpoint>,
    jwks_down: std::sync::atomic::AtomicBool,
    jwks_calls: AtomicU64,
    next: AtomicU64,
    token_calls: AtomicU64,
    refresh_calls: AtomicU64,
    redirected_calls: AtomicU64,
}

/// The running provider; stops when dropped.
pub struct TestProvider {
    pub issuer: String,
    state: Arc<ProviderState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> u64 {
    authgate::clock::now()
}

impl TestProvider {
    pub async fn start() -> TestProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        let state = Arc::new(ProviderState {
            issuer: issuer.clone(),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
            codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            behaviour: Mutex::new(TokenEndpoint::Normal),
            jwks_down: std::sync::atomic::AtomicBool::new(false),
            jwks_calls: AtomicU64::new(0),
            next: AtomicU64::new(1),
            token_calls: AtomicU64::new(0),
            refresh_calls: AtomicU64::new(0),
            redirected_calls: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/elsewhere/token", post(redirected_token))
            .route("/userinfo", get(userinfo))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestProvider { issuer, state, task }
    }

    /// Signs `claims` as the provider (ES256, its key id).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.into());
        jsonwebtoken::encode(&header, claims, &self.state.key).unwrap()
    }

    /// Signs `claims` as the provider, with a `typ` header.
    pub fn sign_typed(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.into());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.state.key).unwrap()
    }

    /// `iss`, `aud` (our client), `iat`, `exp` in 300 s, plus `extra`.
    pub fn claims(&self, extra: Value) -> Value {
        let mut claims = json!({"iss": self.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 300});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    /// A code the token endpoint will redeem (once) for `grant`.
    pub fn issue_code(&self, grant: Grant) -> String {
        let code = format!("code-{}", self.state.next.fetch_add(1, Ordering::SeqCst));
        self.state.codes.lock().unwrap().insert(code.clone(), grant);
        code
    }

    pub fn set_token_endpoint(&self, behaviour: TokenEndpoint) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Makes the key endpoint answer 503 (or work again).
    pub fn set_jwks_down(&self, down: bool) {
        self.state.jwks_down.store(down, Ordering::SeqCst);
    }

    /// Requests to the key endpoint so far.
    pub fn jwks_calls(&self) -> u64 {
        self.state.jwks_calls.load(Ordering::SeqCst)
    }

    /// The key id the provider signs with.
    pub fn kid(&self) -> &'static str {
        KID
    }

    /// Token endpoint calls that redeemed something.
    pub fn token_calls(&self) -> u64 {
        self.state.token_calls.load(Ordering::SeqCst)
    }

    /// Refresh grants redeemed.
    pub fn refresh_calls(&self) -> u64 {
        self.state.refresh_calls.load(Ordering::SeqCst)
    }

    /// Requests that reached the endpoint the token endpoint redirects to.
    pub fn redirected_calls(&self) -> u64 {
        self.state.redirected_calls.load(Ordering::SeqCst)
    }
}

async fn discovery(State(state): State<Arc<ProviderState>>) -> Json<Value> {
    let issuer = &state.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(state): State<Arc<ProviderState>>) -> Response {
    state.jwks_calls.fetch_add(1, Ordering::SeqCst);
    if state.jwks_down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({"keys": [state.jwk]})).into_response()
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code}))).into_response()
}

async fn token(State(state): State<Arc<ProviderState>>, Form(form): Form<HashMap<String, String>>) -> Response {
    match *state.behaviour.lock().unwrap() {
        TokenEndpoint::Normal => {}
        TokenEndpoint::Fails => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        TokenEndpoint::Redirects => {
            let location = format!("{}/elsewhere/token", state.issuer);
            return (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response();
        }
    }
    let grant = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            state.codes.lock().unwrap().remove(&code)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let grant = state.refresh_tokens.lock().unwrap().remove(&presented);
            if grant.is_some() {
                state.refresh_calls.fetch_add(1, Ordering::SeqCst);
            }
            grant.map(|mut g| {
                // A refreshed ID token carries no nonce.
                g.id_claims.as_object_mut().unwrap().remove("nonce");
                if let Some(sub) = g.refreshed_sub.take() {
                    g.id_claims["sub"] = json!(sub);
                }
                g.id_token = None;
                g
            })
        }
        _ => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let Some(grant) = grant else { return error(StatusCode::BAD_REQUEST, "invalid_grant") };
    state.token_calls.fetch_add(1, Ordering::SeqCst);
    let n = state.next.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("access-{n}");
    let id_token = grant.id_token.clone().unwrap_or_else(|| {
        let mut claims = json!({"iss": state.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 300});
        for (k, v) in grant.id_claims.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.into());
        jsonwebtoken::encode(&header, &claims, &state.key).unwrap()
    });
    let mut body = json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": grant.expires_in, "id_token": id_token,
    });
    if grant.refresh {
        let refresh_token = format!("refresh-{n}");
        body["refresh_token"] = json!(refresh_token);
        state.refresh_tokens.lock().unwrap().insert(refresh_token, grant);
    }
    Json(body).into_response()
}

async fn redirected_token(State(state): State<Arc<ProviderState>>) -> Response {
    state.redirected_calls.fetch_add(1, Ordering::SeqCst);
    error(StatusCode::BAD_REQUEST, "invalid_grant")
}

async fn userinfo(headers: HeaderMap) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(value) if value.starts_with("Bearer access-") => {
            Json(json!({"sub": "alice", "groups": ["admins"]})).into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}
