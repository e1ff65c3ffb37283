//! The browser flow: login redirect (authorization code + PKCE S256, `state`, `nonce`),
//! callback (code exchange, ID-token verification, session creation), logout.
//!
//! The flow state (PKCE verifier, nonce, where to return) lives in a short-lived cookie
//! sealed with the session cipher, one cookie per flow named after its `state`, so logins
//! in several tabs do not overwrite each other; at most [`MAX_FLOW_COOKIES`] are kept (the
//! oldest are expired when a new flow starts), so they cannot pile up into a 431.

use super::bearer::{Claims, Verdict, verify_signed};
use super::discovery::Discovery;
use super::jwks::Jwks;
use crate::authz::identity::{Identity, Policy};
use crate::authz::{AuthRequest, Decision};
use crate::cache::{Cache, Kind, token_key};
use crate::config::Config;
use crate::session::{Cipher, SessionRecord, Sessions, now, random_token};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Flow cookies live this long: a login not finished in ten minutes starts over.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Concurrent login flows kept per browser.
pub const MAX_FLOW_COOKIES: usize = 4;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a flow cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: Option<String>,
    /// The host the login started on, and the path (with query) to return to.
    host: String,
    return_path: String,
    redirect_uri: String,
    created_at: u64,
}

/// Why a token request failed.
#[derive(Debug)]
enum TokenError {
    /// The provider refused the grant (`invalid_grant`…): the code or refresh token is spent.
    Rejected(String),
    /// The provider could not be reached or answered nonsense.
    Unavailable(&'static str),
}

impl TokenError {
    fn decision(&self) -> Decision {
        match self {
            TokenError::Rejected(_) => {
                Decision::deny(401, "code_rejected", "the identity provider refused the login\n")
            }
            TokenError::Unavailable(reason) => Decision::error(reason),
        }
    }
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

pub struct Login {
    config: Config,
    discovery: Arc<Discovery>,
    jwks: Arc<Jwks>,
    http: reqwest::Client,
    cipher: Arc<Cipher>,
    sessions: Sessions,
    cache: Cache,
    policy: Policy,
    /// Single flight of refreshes inside this replica: a session's refresh holds the lock of
    /// its stripe (striped so the table needs no cleanup).
    refresh_stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Lease of the cross-replica refresh lock; renewed every third of it while a refresh runs.
pub const REFRESH_LEASE: Duration = Duration::from_secs(10);
/// Longest wait for another replica's refresh of the same session.
pub const REFRESH_WAIT: Duration = Duration::from_secs(15);

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").finish_non_exhaustive()
    }
}

/// The path part of a path-or-URL setting.
fn path_of(value: &str) -> String {
    if value.starts_with('/') {
        return value.split(['?', '#']).next().unwrap_or(value).to_owned();
    }
    url::Url::parse(value).map(|u| u.path().to_owned()).unwrap_or_else(|_| value.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Cookies of a request, name → value (first occurrence wins).
pub fn cookies(request: &AuthRequest) -> Vec<(String, String)> {
    request
        .header("cookie")
        .map(|header| {
            header
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .map(|(name, value)| (name.trim().to_owned(), value.trim().trim_matches('"').to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A top-level browser navigation (may be sent to the login page), as opposed to an API,
/// XHR or gRPC request (which gets a 401).
pub fn is_browser_navigation(request: &AuthRequest) -> bool {
    let method_ok = request.method.eq_ignore_ascii_case("GET") || request.method.eq_ignore_ascii_case("HEAD");
    let wants_html = request.header("accept").is_some_and(|a| a.contains("text/html"));
    let xhr = request.header("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let fetch_mode_ok = request.header("sec-fetch-mode").is_none_or(|m| m == "navigate");
    let grpc = request.header("content-type").is_some_and(|c| c.starts_with("application/grpc"));
    method_ok && wants_html && !xhr && fetch_mode_ok && !grpc
}

impl Login {
    pub fn new(
        config: &Config,
        discovery: Arc<Discovery>,
        jwks: Arc<Jwks>,
        http: reqwest::Client,
        cipher: Arc<Cipher>,
        cache: Cache,
    ) -> Self {
        Login {
            sessions: Sessions::new(cache.clone(), cipher.clone(), config.session_max_age.get()),
            config: config.clone(),
            discovery,
            jwks,
            http,
            cipher,
            cache,
            policy: Policy::new(config),
            refresh_stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub fn callback_path(&self) -> String {
        path_of(&self.config.callback_url)
    }

    pub fn logout_path(&self) -> String {
        path_of(&self.config.logout_url)
    }

    fn secure(&self) -> bool {
        self.config.force_https
    }

    /// `__Host-` when the cookie can have it (Secure, no Domain), which pins it to this host.
    pub fn session_cookie_name(&self) -> String {
        let base = format!("{}session", self.config.cookie_prefix);
        if self.secure() && self.config.cookie_domain.is_empty() { format!("__Host-{base}") } else { base }
    }

    fn flow_cookie_prefix(&self) -> String {
        let base = format!("{}flow_", self.config.cookie_prefix);
        if self.secure() { format!("__Host-{base}") } else { base }
    }

    fn flow_cookie_name(&self, state: &str) -> String {
        format!("{}{}", self.flow_cookie_prefix(), &token_key(state)[..16])
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: Option<u64>, with_domain: bool) -> String {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(max_age) = max_age {
            cookie.push_str(&format!("; Max-Age={max_age}"));
        }
        if self.secure() {
            cookie.push_str("; Secure");
        }
        if with_domain && !self.config.cookie_domain.is_empty() && !name.starts_with("__Host-") {
            cookie.push_str(&format!("; Domain={}", self.config.cookie_domain));
        }
        cookie
    }

    fn clear_cookie(&self, name: &str, with_domain: bool) -> String {
        self.set_cookie(name, "", Some(0), with_domain)
    }

    fn scheme<'a>(&self, request: &'a AuthRequest) -> &'a str {
        if self.config.force_https {
            "https"
        } else if request.scheme.is_empty() {
            "http"
        } else {
            &request.scheme
        }
    }

    fn absolute(&self, request: &AuthRequest, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            format!("{}://{}{}", self.scheme(request), request.host, path_or_url)
        } else {
            path_or_url.to_owned()
        }
    }

    /// The request's `Cookie` header without authgate's own cookies (session and login
    /// flow): `None` when it has none of them, `Some(None)` when nothing else remains.
    pub fn cookies_for_upstream(&self, request: &AuthRequest) -> Option<Option<String>> {
        let all = cookies(request);
        let session = self.session_cookie_name();
        let flow = self.flow_cookie_prefix();
        let ours = |name: &str| name == session || name.starts_with(&flow);
        if !all.iter().any(|(n, _)| ours(n)) {
            return None;
        }
        let rest: Vec<String> = all.iter().filter(|(n, _)| !ours(n)).map(|(n, v)| format!("{n}={v}")).collect();
        Some((!rest.is_empty()).then(|| rest.join("; ")))
    }

    /// The session the request's cookie names, if it is live, with its id.
    pub async fn session(
        &self,
        request: &AuthRequest,
    ) -> Result<Option<(String, SessionRecord)>, crate::cache::CacheError> {
        let name = self.session_cookie_name();
        let Some((_, id)) = cookies(request).into_iter().find(|(n, _)| *n == name) else { return Ok(None) };
        Ok(self.sessions.load(&id).await?.map(|record| (id, record)))
    }

    /// Whether a session's tokens are within `refreshGracePeriodSeconds` of expiring.
    pub fn needs_refresh(&self, record: &SessionRecord) -> bool {
        record.refresh_token.is_some() && record.access_expires_at <= now() + self.config.refresh_grace_period_seconds
    }

    /// Refreshes a session's tokens, once across all replicas: single flight inside this
    /// replica, a Redis lock (with a lease renewed while the refresh runs) across replicas,
    /// and after any wait the session is read again instead of refreshed again, so a
    /// rotating refresh token is redeemed exactly once.
    ///
    /// `Ok(Some)`: the session to use (refreshed by us or by someone else). `Ok(None)`: the
    /// session ended (the provider refused the refresh token; the session is deleted).
    /// `Err`: the refresh could not be done now (provider or cache down).
    pub async fn refresh(&self, id: &str, seen: SessionRecord) -> Result<Option<SessionRecord>, &'static str> {
        let key = token_key(id);
        let stripe = usize::from(key.as_bytes()[0]) % self.refresh_stripes.len();
        let _local = self.refresh_stripes[stripe].lock().await;
        let changed =
            |record: &SessionRecord| record.refresh_token != seen.refresh_token || !self.needs_refresh(record);

        let current = self.sessions.load(id).await.map_err(|_| "cache_unavailable")?;
        let Some(current) = current else { return Ok(None) };
        if changed(&current) {
            return Ok(Some(current));
        }

        // Across replicas: take the lock, or wait for whoever holds it to finish.
        let lock_id = format!("refresh:{key}");
        let owner = random_token(16);
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        loop {
            match self.cache.claim(Kind::Lock, &lock_id, owner.as_bytes(), REFRESH_LEASE).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return Err("cache_unavailable"),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err("refresh_lock_timeout");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.sessions.load(id).await {
                Ok(Some(record)) if changed(&record) => return Ok(Some(record)),
                Ok(None) => return Ok(None),
                Ok(Some(_)) => {}
                Err(_) => return Err("cache_unavailable"),
            }
        }
        // Keep the lease alive while the provider answers.
        let renew = {
            let cache = self.cache.clone();
            let (lock_id, owner) = (lock_id.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_LEASE / 3).await;
                    if !matches!(cache.renew(Kind::Lock, &lock_id, owner.as_bytes(), REFRESH_LEASE).await, Ok(true)) {
                        return;
                    }
                }
            })
        };
        let result = self.refresh_holding_lock(id).await;
        renew.abort();
        let _ = self.cache.release(Kind::Lock, &lock_id, owner.as_bytes()).await;
        result
    }

    async fn refresh_holding_lock(&self, id: &str) -> Result<Option<SessionRecord>, &'static str> {
        // Someone may have finished between our last read and taking the lock.
        let Some(mut record) = self.sessions.load(id).await.map_err(|_| "cache_unavailable")? else { return Ok(None) };
        let Some(refresh_token) = record.refresh_token.clone() else { return Ok(Some(record)) };
        if !self.needs_refresh(&record) {
            return Ok(Some(record));
        }
        let metadata = self.discovery.metadata().map_err(|_| "idp_unavailable")?;
        let form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token)];
        match self.token_request(&metadata.token_endpoint, &metadata.token_endpoint_auth_methods_supported, form).await
        {
            Ok(tokens) => {
                if let Some(id_token) = tokens.id_token.clone()
                    && let Verdict::Valid(claims) = self.verify_id_token(&id_token).await
                {
                    record.claims = claims;
                    record.id_token = id_token;
                }
                record.access_token = tokens.access_token;
                // Rotation: the provider may send a new refresh token; otherwise keep ours.
                if tokens.refresh_token.is_some() {
                    record.refresh_token = tokens.refresh_token;
                }
                record.access_expires_at = now() + tokens.expires_in.unwrap_or(300);
                self.sessions.save(id, &record).await.map_err(|_| "cache_unavailable")?;
                tracing::debug!("session tokens refreshed");
                Ok(Some(record))
            }
            Err(TokenError::Rejected(error)) => {
                tracing::info!(%error, "refresh token refused: session ended");
                let _ = self.sessions.delete(id).await;
                Ok(None)
            }
            Err(TokenError::Unavailable(reason)) => Err(reason),
        }
    }

    /// 302 to the provider's authorization endpoint, with a fresh flow cookie.
    pub fn start(&self, request: &AuthRequest) -> Decision {
        let metadata = match self.discovery.metadata() {
            Ok(metadata) => metadata,
            Err(_) => return Decision::error("idp_unavailable"),
        };
        let state = random_token(24);
        let nonce = random_token(24);
        let verifier = self.config.enable_pkce.then(|| random_token(48));
        let redirect_uri = self.absolute(request, &self.config.callback_url);
        let return_path = if request.path.starts_with('/') && !request.path.starts_with("//") {
            request.path.clone()
        } else {
            "/".to_owned()
        };
        let flow = Flow {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier: verifier.clone(),
            host: request.host.clone(),
            return_path,
            redirect_uri: redirect_uri.clone(),
            created_at: now(),
        };
        let Ok(mut url) = url::Url::parse(&metadata.authorization_endpoint) else {
            return Decision::error("idp_metadata_invalid");
        };
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", &self.config.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce);
            if let Some(verifier) = &verifier {
                let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
                query.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
            }
        }
        let name = self.flow_cookie_name(&state);
        let mut set_cookies =
            vec![self.set_cookie(&name, &self.cipher.seal_text(&flow, &name), Some(FLOW_TTL.as_secs()), false)];
        // Expire the oldest flow cookies beyond the limit (names sort by nothing useful, so
        // age comes from the sealed content).
        let prefix = self.flow_cookie_prefix();
        let mut existing: Vec<(u64, String)> = cookies(request)
            .into_iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, v)| (self.cipher.open_text::<Flow>(&v, &n).map_or(0, |f| f.created_at), n))
            .collect();
        existing.sort();
        let excess = (existing.len() + 1).saturating_sub(MAX_FLOW_COOKIES);
        for (_, stale) in existing.into_iter().take(excess) {
            set_cookies.push(self.clear_cookie(&stale, false));
        }
        Decision::redirect("login_required", url.as_str(), set_cookies)
    }

    /// The redirect back from the provider.
    pub async fn callback(&self, request: &AuthRequest) -> Decision {
        let Ok(url) = url::Url::parse(&format!("http://placeholder{}", request.path)) else {
            return Decision::bad_request("bad_callback");
        };
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        if param("error").is_some() {
            return Decision::deny(401, "idp_error", "the identity provider refused the login\n");
        }
        let (Some(code), Some(state)) = (param("code"), param("state")) else {
            return Decision::bad_request("missing_code_or_state");
        };
        let name = self.flow_cookie_name(&state);
        let Some(flow) = cookies(request)
            .into_iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, value)| self.cipher.open_text::<Flow>(&value, &name))
        else {
            return Decision::deny(401, "unknown_login_state", "login expired or started elsewhere; try again\n");
        };
        if !constant_time_eq(flow.state.as_bytes(), state.as_bytes()) || flow.created_at + FLOW_TTL.as_secs() < now() {
            return Decision::deny(401, "unknown_login_state", "login expired or started elsewhere; try again\n");
        }
        let tokens = match self.exchange(&code, &flow).await {
            Ok(tokens) => tokens,
            Err(error) => return error.decision(),
        };
        let Some(id_token) = tokens.id_token.clone() else {
            return Decision::deny(401, "no_id_token", "the identity provider returned no ID token\n");
        };
        let claims = match self.verify_id_token(&id_token).await {
            Verdict::Valid(claims) => claims,
            Verdict::Invalid(reason) => return Decision::deny(401, reason, "invalid ID token\n"),
            Verdict::Unavailable(_) => return Decision::error("idp_unavailable"),
        };
        if let Some(reason) = self.check_id_token(&claims, &flow) {
            return Decision::deny(401, reason, "invalid ID token\n");
        }
        // One ID token creates at most one session, on any replica.
        if !self.config.disable_replay_detection {
            let exp = claims.get("exp").and_then(serde_json::Value::as_u64).unwrap_or(0);
            let ttl = Duration::from_secs(exp.saturating_sub(now()).max(60));
            match self.cache.claim(Kind::Replay, &token_key(&id_token), b"1", ttl).await {
                Ok(true) => {}
                Ok(false) => return Decision::deny(401, "token_replayed", "this login was already used\n"),
                Err(_) => return Decision::error("cache_unavailable"),
            }
        }
        let mut claims = claims;
        if self.config.fetch_user_info
            && let Err(decision) = self.merge_userinfo(&mut claims, &tokens.access_token).await
        {
            return *decision;
        }
        let Some(identity) = Identity::from_claims(&claims, &self.config) else {
            return Decision::deny(401, "no_user_identifier", "the ID token names no user\n");
        };
        if !self.policy.allows(&identity) {
            return Decision::forbidden("policy_denied");
        }
        let record = SessionRecord {
            claims,
            id_token,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: now() + tokens.expires_in.unwrap_or(300),
            created_at: now(),
        };
        let session_id = match self.sessions.create(&record).await {
            Ok(id) => id,
            Err(_) => return Decision::error("cache_unavailable"),
        };
        let max_age = (!self.config.cookie_max_age.is_zero()).then(|| self.config.cookie_max_age.get().as_secs());
        let cookies = vec![
            self.set_cookie(&self.session_cookie_name(), &session_id, max_age, true),
            self.clear_cookie(&name, false),
        ];
        // Only back to the host the login started on; anything else goes to "/".
        let location = if flow.host.eq_ignore_ascii_case(&request.host)
            && flow.return_path.starts_with('/')
            && !flow.return_path.starts_with("//")
        {
            flow.return_path
        } else {
            "/".to_owned()
        };
        Decision::redirect("logged_in", &location, cookies)
    }

    /// Signature, `iss`, `aud` = our client id, `exp`/`nbf` of an ID token.
    async fn verify_id_token(&self, id_token: &str) -> Verdict {
        verify_signed(&self.discovery, &self.jwks, &self.config.client_id, id_token, self.config.clock_skew_seconds)
            .await
    }

    /// Adds the userinfo endpoint's claims (`fetchUserInfo`); its `sub` must be the ID token's.
    async fn merge_userinfo(&self, claims: &mut Claims, access_token: &str) -> Result<(), Box<Decision>> {
        let metadata = self.discovery.metadata().map_err(|_| Box::new(Decision::error("idp_unavailable")))?;
        let Some(endpoint) = metadata.userinfo_endpoint.clone() else { return Ok(()) };
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.userinfo");
        let response = self
            .http
            .get(&endpoint)
            .bearer_auth(access_token)
            .send()
            .instrument(span)
            .await
            .map_err(|_| Box::new(Decision::error("idp_unavailable")))?;
        if !response.status().is_success() {
            return Err(Box::new(Decision::error("userinfo_failed")));
        }
        let info: Claims = response.json().await.map_err(|_| Box::new(Decision::error("userinfo_failed")))?;
        if info.get("sub") != claims.get("sub") {
            return Err(Box::new(Decision::deny(401, "userinfo_sub_mismatch", "inconsistent identity\n")));
        }
        for (name, value) in info {
            claims.entry(name).or_insert(value);
        }
        Ok(())
    }

    /// `nonce` and `azp` (signature, iss, aud and exp were checked by `verify_signed`).
    fn check_id_token(&self, claims: &Claims, flow: &Flow) -> Option<&'static str> {
        let nonce_ok = claims
            .get("nonce")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|n| constant_time_eq(n.as_bytes(), flow.nonce.as_bytes()));
        if !nonce_ok {
            return Some("nonce_mismatch");
        }
        let several_audiences = claims.get("aud").and_then(serde_json::Value::as_array).is_some_and(|a| a.len() > 1);
        let azp = claims.get("azp").and_then(serde_json::Value::as_str);
        if (several_audiences || azp.is_some()) && azp != Some(self.config.client_id.as_str()) {
            return Some("azp_mismatch");
        }
        None
    }

    async fn exchange(&self, code: &str, flow: &Flow) -> Result<TokenResponse, TokenError> {
        let metadata = self.discovery.metadata().map_err(|_| TokenError::Unavailable("idp_unavailable"))?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", flow.redirect_uri.clone()),
        ];
        if let Some(verifier) = &flow.verifier {
            form.push(("code_verifier", verifier.clone()));
        }
        self.token_request(&metadata.token_endpoint, &metadata.token_endpoint_auth_methods_supported, form).await
    }

    /// POSTs to the token endpoint with client authentication: `client_secret_basic` unless
    /// the provider only offers `client_secret_post` (or the client is public).
    async fn token_request(
        &self,
        endpoint: &str,
        methods: &[String],
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse, TokenError> {
        let secret = self.config.client_secret.expose();
        let basic = !secret.is_empty()
            && match self.config.token_endpoint_auth_method.as_str() {
                "client_secret_basic" => true,
                "client_secret_post" => false,
                _ => methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic"),
            };
        let mut request = self.http.post(endpoint);
        if basic {
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(&self.config.client_id), Some(encode(secret)));
        } else {
            form.push(("client_id", self.config.client_id.clone()));
            if !secret.is_empty() {
                form.push(("client_secret", secret.to_owned()));
            }
        }
        let grant = form.iter().find(|(k, _)| *k == "grant_type").map(|(_, v)| v.clone()).unwrap_or_default();
        let span = tracing::info_span!("idp", otel.name = "authgate.idp.token", grant_type = %grant);
        let response = request.form(&form).send().instrument(span).await.map_err(|e| {
            tracing::warn!(error = %e, "token endpoint unreachable");
            TokenError::Unavailable("idp_unavailable")
        })?;
        let status = response.status();
        if status.is_client_error() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let error = body.get("error").and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
            tracing::info!(%error, "token endpoint refused the grant");
            return Err(TokenError::Rejected(error));
        }
        if !status.is_success() {
            return Err(TokenError::Unavailable("idp_unavailable"));
        }
        response.json::<TokenResponse>().await.map_err(|_| TokenError::Unavailable("idp_bad_response"))
    }

    /// Logout: only a POST or a same-site navigation (a cross-site `<img>` cannot log a user
    /// out); deletes the session everywhere, clears the cookie, and sends the browser to the
    /// provider's `end_session_endpoint`.
    pub async fn logout(&self, request: &AuthRequest) -> Decision {
        if !self.same_site(request) {
            return Decision::forbidden("cross_site_logout");
        }
        let name = self.session_cookie_name();
        let id = cookies(request).into_iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        let mut id_token = None;
        if let Some(id) = &id {
            if let Ok(Some(record)) = self.sessions.load(id).await {
                id_token = Some(record.id_token);
            }
            if self.sessions.delete(id).await.is_err() {
                return Decision::error("cache_unavailable");
            }
        }
        let post_logout = self.absolute(request, &self.config.post_logout_redirect_uri);
        let location = match self.discovery.metadata().ok().and_then(|m| m.end_session_endpoint.clone()) {
            Some(end_session) => match url::Url::parse(&end_session) {
                Ok(mut url) => {
                    {
                        let mut query = url.query_pairs_mut();
                        if let Some(hint) = &id_token {
                            query.append_pair("id_token_hint", hint);
                        }
                        query
                            .append_pair("post_logout_redirect_uri", &post_logout)
                            .append_pair("client_id", &self.config.client_id);
                    }
                    url.to_string()
                }
                Err(_) => post_logout,
            },
            None => post_logout,
        };
        Decision::redirect("logged_out", &location, vec![self.clear_cookie(&name, true)])
    }

    fn same_site(&self, request: &AuthRequest) -> bool {
        if request.method.eq_ignore_ascii_case("POST") {
            // Cross-site POSTs carry no SameSite=Lax cookie, but check Origin when sent.
            return request.header("origin").is_none_or(|o| self.origin_host(o) == Some(request.host.as_str()));
        }
        match request.header("sec-fetch-site") {
            Some(site) => site == "same-origin" || site == "none",
            None => request
                .header("origin")
                .or_else(|| request.header("referer"))
                .is_some_and(|o| self.origin_host(o) == Some(request.host.as_str())),
        }
    }

    fn origin_host<'a>(&self, origin: &'a str) -> Option<&'a str> {
        let rest = origin.split_once("://")?.1;
        Some(rest.split('/').next().unwrap_or(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> AuthRequest {
        AuthRequest {
            method: "GET".into(),
            scheme: "https".into(),
            host: "app.example".into(),
            path: "/x".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn tells_navigations_from_api_calls() {
        assert!(is_browser_navigation(&request(&[("accept", "text/html,application/xhtml+xml")])));
        assert!(!is_browser_navigation(&request(&[("accept", "application/json")])));
        assert!(!is_browser_navigation(&request(&[("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")])));
        assert!(!is_browser_navigation(&request(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])));
        let mut post = request(&[("accept", "text/html")]);
        post.method = "POST".into();
        assert!(!is_browser_navigation(&post));
        let mut head = request(&[("accept", "text/html")]);
        head.method = "HEAD".into();
        assert!(is_browser_navigation(&head), "HEAD of a page behaves like GET");
        assert!(!is_browser_navigation(&request(&[
            ("accept", "text/html"),
            ("content-type", "application/grpc-web+proto")
        ])));
    }

    #[test]
    fn parses_cookies() {
        let r = request(&[("cookie", "a=1; _authgate_session=abc ; b=\"q\"")]);
        assert_eq!(
            cookies(&r),
            vec![("a".into(), "1".into()), ("_authgate_session".into(), "abc".into()), ("b".into(), "q".into())]
        );
    }

    #[test]
    fn compares_in_constant_time_correctly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
