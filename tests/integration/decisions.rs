//! The decision core, called directly (no listener, no proxy) against the in-process
//! provider: every rule of `authz` in milliseconds. The end-to-end modules (`login`,
//! `bearer`, `refresh`, `backchannel`) run the same flows through real Envoy and the real
//! oidc-provider.

use crate::support::provider::{CLIENT_ID, CLIENT_SECRET, Grant, TestProvider, TokenEndpoint};
use crate::support::wait_until;
use authgate::authz::{AuthRequest, Authorizer, Decision, Outcome};
use authgate::cache::CacheSystem;
use authgate::config;
use authgate::reason::Reason;
use authgate::server::Components;
use serde_json::json;
use std::collections::HashMap;

pub const HOST: &str = "app.example";

pub struct Fixture {
    pub provider: TestProvider,
    pub authorizer: Authorizer,
    pub cache: CacheSystem,
    pub backchannel: std::sync::Arc<authgate::oidc::backchannel::BackchannelLogout>,
}

/// The decision core over the in-process provider, memory cache unless `extra_yaml` says
/// otherwise; discovery done.
pub async fn fixture(extra_yaml: &str) -> Fixture {
    authgate::tls::install_crypto_provider();
    let provider = TestProvider::start().await;
    let yaml = format!(
        "providerURL: {}\nclientID: {CLIENT_ID}\nclientSecret: {CLIENT_SECRET}\n\
         sessionEncryptionKey: decision-tests-key-0123456789abcdef\nforceHTTPS: false\n\
         excludedURLs: [/public]\n{extra_yaml}",
        provider.issuer
    );
    let config = config::load_str(&yaml, &HashMap::new()).expect("valid test configuration");
    let cache = CacheSystem::start(&config).unwrap();
    let components = Components::build(&config, cache.cache());
    let discovery = components.discovery.clone();
    wait_until("discovery of the in-process provider", async || discovery.metadata().is_ok()).await;
    Fixture { provider, authorizer: components.authorizer, cache, backchannel: components.backchannel }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> AuthRequest {
    AuthRequest {
        method: method.into(),
        scheme: "http".into(),
        host: HOST.into(),
        path: path.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

pub fn navigation(path: &str, cookie: &str) -> AuthRequest {
    request("GET", path, &[("accept", "text/html"), ("cookie", cookie)])
}

pub fn header<'a>(decision: &'a Decision, name: &str) -> Option<&'a str> {
    decision.response_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

pub fn upstream<'a>(decision: &'a Decision, name: &str) -> Option<&'a str> {
    decision.upstream_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `name=value` of every cookie a decision sets (not the cleared ones).
pub fn set_cookies(decision: &Decision) -> Vec<String> {
    decision
        .response_headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .filter(|pair| !pair.ends_with('='))
        .collect()
}

pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// A started login: the authorization URL's parameters and the flow cookie.
pub struct Started {
    pub params: HashMap<String, String>,
    pub flow_cookie: String,
}

pub async fn start_login(f: &Fixture, path: &str) -> Started {
    let decision = f.authorizer.decide(&navigation(path, "")).await;
    assert_eq!((decision.outcome, decision.reason), (Outcome::Redirect, Reason::LoginRequired), "{decision:?}");
    let location = header(&decision, "location").unwrap();
    assert!(location.starts_with(&format!("{}/authorize?", f.provider.issuer)), "{location}");
    Started { params: query(location), flow_cookie: set_cookies(&decision).remove(0) }
}

pub async fn callback(f: &Fixture, started: &Started, code: &str) -> Decision {
    let path = format!("/oauth2/callback?code={code}&state={}", started.params["state"]);
    f.authorizer.decide(&navigation(&path, &started.flow_cookie)).await
}

/// A full login as `sub`; returns the session cookie.
pub async fn log_in(f: &Fixture, sub: &str) -> String {
    let started = start_login(f, "/app?x=1").await;
    let code = f.provider.issue_code(Grant::login(sub, &started.params["nonce"]));
    let decision = callback(f, &started, &code).await;
    assert_eq!((decision.outcome, decision.reason), (Outcome::Redirect, Reason::LoggedIn), "{decision:?}");
    assert_eq!(header(&decision, "location"), Some("/app?x=1"));
    set_cookies(&decision).into_iter().find(|c| c.starts_with("_authgate_session=")).expect("a session cookie")
}

#[tokio::test]
async fn the_authorization_url_carries_state_nonce_and_an_s256_challenge() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let p = &started.params;
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["client_id"], CLIENT_ID);
    assert_eq!(p["redirect_uri"], format!("http://{HOST}/oauth2/callback"));
    assert_eq!(p["code_challenge_method"], "S256");
    assert!(p["code_challenge"].len() >= 43, "{p:?}");
    assert!(p["state"].len() >= 32 && p["nonce"].len() >= 32, "192-bit state and nonce: {p:?}");
    assert_ne!(p["state"], p["nonce"]);
    assert!(p["scope"].split(' ').any(|s| s == "openid"), "{p:?}");
    assert_eq!(p["scope"].split(' ').filter(|s| *s == "openid").count(), 1, "openid once: {p:?}");
}

#[tokio::test]
async fn a_login_creates_a_session_that_admits_later_requests_with_identity_headers() {
    let f = fixture("").await;
    let session = log_in(&f, "alice").await;
    let decision = f.authorizer.decide(&request("GET", "/api", &[("cookie", &format!("other=1; {session}"))])).await;
    assert_eq!((decision.outcome, decision.reason), (Outcome::Allow, Reason::Authenticated), "{decision:?}");
    assert_eq!(upstream(&decision, "x-forwarded-user"), Some("alice@example.com"));
    // authgate's cookie never reaches the upstream; the others do.
    assert_eq!(upstream(&decision, "cookie"), Some("other=1"));
}

#[tokio::test]
async fn callbacks_that_do_not_belong_to_this_login_are_refused() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    // A nonce other than the login's.
    let code = f.provider.issue_code(Grant::login("alice", "another-nonce"));
    assert_eq!(callback(&f, &started, &code).await.reason, Reason::NonceMismatch);
    // A state without its flow cookie.
    let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
    let path = format!("/oauth2/callback?code={code}&state={}", started.params["state"]);
    assert_eq!(f.authorizer.decide(&navigation(&path, "")).await.reason, Reason::UnknownLoginState);
    // A code the provider does not know.
    assert_eq!(callback(&f, &started, "no-such-code").await.reason, Reason::CodeRejected);
    // No code at all.
    let path = format!("/oauth2/callback?state={}", started.params["state"]);
    assert_eq!(f.authorizer.decide(&navigation(&path, &started.flow_cookie)).await.reason, Reason::MissingCodeOrState);
}

#[tokio::test]
async fn one_id_token_creates_one_session() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let id_token = f.provider.sign(&f.provider.claims(
        json!({"sub": "alice", "nonce": started.params["nonce"], "email": "alice@example.com", "email_verified": true}),
    ));
    let grant = |token: &str| Grant { id_token: Some(token.to_owned()), ..Grant::login("alice", "") };
    let first = callback(&f, &started, &f.provider.issue_code(grant(&id_token))).await;
    assert_eq!(first.reason, Reason::LoggedIn);
    let again = callback(&f, &started, &f.provider.issue_code(grant(&id_token))).await;
    assert_eq!(again.reason, Reason::TokenReplayed);
}

#[tokio::test]
async fn id_tokens_are_verified_by_signature_audience_and_algorithm() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let nonce = started.params["nonce"].clone();
    let cases = [
        // Signed by the provider, for another client.
        (
            f.provider.sign(&json!({"iss": f.provider.issuer, "aud": "someone-else", "sub": "a", "nonce": nonce,
            "iat": authgate::clock::now(), "exp": authgate::clock::now() + 60})),
            Reason::WrongAudience,
        ),
        // Expired.
        (f.provider.sign(&f.provider.claims(json!({"sub": "a", "nonce": nonce, "exp": 1000}))), Reason::TokenExpired),
        // Another party named in `azp`.
        (f.provider.sign(&f.provider.claims(json!({"sub": "a", "nonce": nonce, "azp": "other"}))), Reason::AzpMismatch),
        // `alg: none`.
        (
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(&f.provider.claims(json!({"sub": "a", "nonce": nonce})).to_string())
            ),
            Reason::MalformedToken,
        ),
        // HS256, keyed with anything.
        (
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &f.provider.claims(json!({"sub": "a", "nonce": nonce})),
                &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
            )
            .unwrap(),
            Reason::AlgorithmNotAllowed,
        ),
    ];
    for (token, reason) in cases {
        let grant = Grant { id_token: Some(token), ..Grant::login("a", "") };
        let decision = callback(&f, &started, &f.provider.issue_code(grant)).await;
        assert_eq!((decision.outcome, decision.reason), (Outcome::Deny, reason), "{decision:?}");
    }
}

pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn policy_is_checked_at_login_and_on_every_request() {
    let f = fixture("allowedUsers: [bob@example.com]\n").await;
    let started = start_login(&f, "/").await;
    let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
    let decision = callback(&f, &started, &code).await;
    assert_eq!((decision.outcome, decision.status, decision.reason), (Outcome::Deny, 403, Reason::PolicyDenied));
    assert!(set_cookies(&decision).is_empty(), "no session for a user policy refuses: {decision:?}");
}

#[tokio::test]
async fn bearer_tokens_are_verified_and_admitted_through_the_same_policy() {
    let f = fixture("allowedRolesAndGroups: [admins]\n").await;
    let token = |groups: &[&str]| {
        f.provider.sign(
            &f.provider
                .claims(json!({"sub": "svc", "email": "svc@example.com", "email_verified": true, "groups": groups})),
        )
    };
    let bearer = |t: &str| request("GET", "/api", &[("authorization", &format!("Bearer {t}"))]);
    let allowed = f.authorizer.decide(&bearer(&token(&["admins"]))).await;
    assert_eq!(allowed.outcome, Outcome::Allow, "{allowed:?}");
    assert_eq!(upstream(&allowed, "x-user-groups"), Some("admins"));
    let denied = f.authorizer.decide(&bearer(&token(&["staff"]))).await;
    assert_eq!((denied.status, denied.reason), (403, Reason::PolicyDenied));
    let tampered = token(&["staff"]).replacen('.', ".e30", 1);
    let invalid = f.authorizer.decide(&bearer(&tampered)).await;
    assert_eq!(invalid.status, 401, "{invalid:?}");
    assert!(header(&invalid, "www-authenticate").unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn a_session_near_expiry_is_refreshed_once_with_the_rotated_token() {
    // Tokens expire in 10 s; everything within 60 s of expiry is refreshed.
    let f =
        fixture("refreshGracePeriodSeconds: 60\nheaders:\n  - name: X-Access\n    value: \"{{.AccessToken}}\"\n").await;
    let started = start_login(&f, "/").await;
    let grant = Grant { expires_in: 10, ..Grant::login("alice", &started.params["nonce"]) };
    let decision = callback(&f, &started, &f.provider.issue_code(grant)).await;
    let session = set_cookies(&decision).into_iter().find(|c| c.starts_with("_authgate_session=")).unwrap();
    let before = f.provider.refresh_calls();
    let requests: Vec<_> = (0..10).map(|_| request("GET", "/api", &[("cookie", &session)])).collect();
    let decisions = futures_util::future::join_all(requests.iter().map(|r| f.authorizer.decide(r))).await;
    assert!(decisions.iter().all(|d| d.outcome == Outcome::Allow), "{decisions:?}");
    // Concurrent requests share one refresh (the provider rotates, so a second redemption
    // of the same refresh token would have been refused and logged the user out).
    assert_eq!(f.provider.refresh_calls() - before, 1, "one redemption for ten concurrent requests");
    let after = f.authorizer.decide(&request("GET", "/api", &[("cookie", &session)])).await;
    assert_eq!(after.outcome, Outcome::Allow, "still logged in after the refreshes: {after:?}");
    assert_ne!(upstream(&after, "x-access"), Some("access-1"), "the refreshed access token is used");
}

#[tokio::test]
async fn the_token_endpoint_is_never_followed_through_a_redirect() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
    f.provider.set_token_endpoint(TokenEndpoint::Redirects);
    let decision = callback(&f, &started, &code).await;
    assert_eq!(decision.outcome, Outcome::Error, "{decision:?}");
    assert_eq!(f.provider.redirected_calls(), 0, "the code went nowhere else");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_an_error_not_a_verdict() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
    f.provider.set_token_endpoint(TokenEndpoint::Fails);
    let decision = callback(&f, &started, &code).await;
    assert_eq!((decision.outcome, decision.reason), (Outcome::Error, Reason::IdpUnavailable), "{decision:?}");
}

#[tokio::test]
async fn logout_ends_the_session_and_goes_to_the_end_session_endpoint() {
    let f = fixture("").await;
    let session = log_in(&f, "alice").await;
    let logout = f.authorizer.decide(&request("POST", "/oauth2/logout", &[("cookie", &session)])).await;
    assert_eq!(logout.reason, Reason::LoggedOut, "{logout:?}");
    let location = header(&logout, "location").unwrap();
    assert!(location.starts_with(&format!("{}/logout?", f.provider.issuer)), "{location}");
    let params = query(location);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["post_logout_redirect_uri"], format!("http://{HOST}/"));
    assert!(params["id_token_hint"].split('.').count() == 3);
    let after = f.authorizer.decide(&request("GET", "/api", &[("cookie", &session)])).await;
    assert_eq!(after.reason, Reason::Unauthenticated);
    // A cross-site navigation cannot log anyone out.
    let cross = request("GET", "/oauth2/logout", &[("sec-fetch-site", "cross-site"), ("cookie", &session)]);
    assert_eq!(f.authorizer.decide(&cross).await.reason, Reason::CrossSiteLogout);
}

#[tokio::test]
async fn userinfo_claims_join_the_session() {
    let f = fixture("fetchUserInfo: true\nallowedRolesAndGroups: [admins]\n").await;
    // The ID token has no groups; userinfo says alice is in admins.
    let session = log_in(&f, "alice").await;
    let decision = f.authorizer.decide(&request("GET", "/api", &[("cookie", &session)])).await;
    assert_eq!(upstream(&decision, "x-user-groups"), Some("admins"), "{decision:?}");
}
