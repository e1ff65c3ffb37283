//! One test per finding of the security review (`docs/security.md` describes the fixes),
//! named after it; each fails on the code as the review read it. The decision core is
//! called directly against the in-process provider (and a real Redis where the finding is
//! about Redis). The bridge findings (H1, M1, L5, L6) are tested with the bridge.
//! Unit tests named after findings live next to the code: `h2_*` (authz::excluded),
//! `h3_*`, `l1_*`, `l10_*` (authz::identity), `l2_*`, `l3_*` (authz::browser), `l4_*`
//! (authz::refresh), `l7_*` (cache::markers), `l8_*` (session::cipher, config::validate).

use crate::decisions::{
    Fixture, callback, fixture, header, log_in, navigation, request, set_cookies, start_login, upstream,
};
use crate::support::provider::{CLIENT_ID, Grant};
use crate::support::{Authgate, RedisServer, wait_until};
use authgate::authz::Outcome;
use authgate::cache::redis::RedisStore;
use authgate::cache::{Kind, Store, token_key, value};
use authgate::config::RedisConfig;
use authgate::oidc::backchannel::Refusal;
use authgate::reason::Reason;
use serde_json::json;
use std::time::Duration;

fn now() -> u64 {
    authgate::clock::now()
}

fn bearer(token: &str) -> authgate::authz::AuthRequest {
    request("GET", "/api", &[("authorization", &format!("Bearer {token}"))])
}

/// An access token for `sub` from the provider.
pub fn access_token(f: &Fixture, extra: serde_json::Value) -> String {
    let mut claims = f.provider.claims(json!({"sub": "svc", "email": "svc@example.com", "email_verified": true}));
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    f.provider.sign(&claims)
}

/// The `redis:` block for a fixture on `redis`, with timeouts short enough to see a pause.
fn redis_yaml(redis: &RedisServer, mode: &str) -> String {
    format!(
        "redis:\n  enabled: true\n  address: {}\n  cacheMode: {mode}\n  readTimeout: 300ms\n  dialTimeout: 300ms\n  \
         circuitBreakerThreshold: 1000\n",
        redis.address()
    )
}

#[tokio::test]
async fn h2_path_parameters_fragments_and_double_encodings_are_not_excluded() {
    let f = fixture("").await;
    for path in ["/public/..;/admin", "/public#/../admin", "/public/%252e%252e/admin", "/public/%u002e%u002e/admin"] {
        let decision = f.authorizer.decide(&request("GET", path, &[])).await;
        assert_ne!(decision.outcome, Outcome::Allow, "{path} slipped through the /public exclusion");
    }
    assert_eq!(f.authorizer.decide(&request("GET", "/public/logo.png", &[])).await.outcome, Outcome::Allow);
}

#[tokio::test]
async fn h3_an_unverified_email_logs_nobody_in() {
    let f = fixture("allowedUsers: [alice@example.com]\n").await;
    let started = start_login(&f, "/").await;
    let mut grant = Grant::login("alice", &started.params["nonce"]);
    grant.id_claims["email_verified"] = json!(false);
    let decision = callback(&f, &started, &f.provider.issue_code(grant)).await;
    assert_eq!((decision.outcome, decision.reason), (Outcome::Deny, Reason::EmailNotVerified), "{decision:?}");
    assert!(set_cookies(&decision).iter().all(|c| !c.contains("session=")), "no session: {decision:?}");
    // A bearer token whose e-mail is unverified names nobody either.
    let token = access_token(&f, json!({"email": "alice@example.com", "email_verified": false}));
    assert_ne!(f.authorizer.decide(&bearer(&token)).await.outcome, Outcome::Allow);
}

#[tokio::test]
async fn h4_forged_or_copied_verified_token_entries_in_redis_are_rejected() {
    let redis = RedisServer::start();
    let f = fixture(&redis_yaml(&redis, "redis")).await;
    let store = RedisStore::new(&RedisConfig { address: redis.address(), ..RedisConfig::default() }).unwrap();
    let ttl = Duration::from_secs(600);
    let admin = json!({"sub": "admin", "email": "admin@corp.example", "email_verified": true, "groups": ["admins"],
        "exp": 4_102_444_800u64, "iss": f.provider.issuer, "aud": CLIENT_ID});
    // A forged entry, in the cache's JSON and raw envelopes.
    store
        .set(&format!("token:{}", token_key("a.b.c")), &value::encode_json(Kind::Token, &admin).unwrap(), ttl)
        .await
        .unwrap();
    store
        .set(
            &format!("token:{}", token_key("d.e.f")),
            &value::encode_raw(Kind::Token, admin.to_string().as_bytes()),
            ttl,
        )
        .await
        .unwrap();
    for forged in ["a.b.c", "d.e.f"] {
        let decision = f.authorizer.decide(&bearer(forged)).await;
        assert_eq!(decision.status, 401, "{forged}: {decision:?}");
        assert!(upstream(&decision, "x-forwarded-user").is_none());
    }
    // A genuine entry copied to another token's key.
    let genuine = access_token(&f, json!({}));
    assert_eq!(f.authorizer.decide(&bearer(&genuine)).await.outcome, Outcome::Allow);
    let sealed = store.get(&format!("token:{}", token_key(&genuine))).await.unwrap().expect("the entry is in redis");
    assert!(!String::from_utf8_lossy(&sealed).contains("svc@example.com"), "claims stored in clear");
    store.set(&format!("token:{}", token_key("g.h.i")), &sealed, ttl).await.unwrap();
    assert_eq!(f.authorizer.decide(&bearer("g.h.i")).await.status, 401);
    assert!(f.cache.cache().stats().rejected(Kind::Token) >= 2, "rejections are counted");
}

#[tokio::test]
async fn m2_id_tokens_and_logout_tokens_are_not_bearer_tokens() {
    let f = fixture("").await;
    let id_token = access_token(&f, json!({"nonce": "n", "at_hash": "x"}));
    let logout_token = access_token(
        &f,
        json!({"events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        "jti": "j", "sid": "s"}),
    );
    for token in [id_token, logout_token] {
        let decision = f.authorizer.decide(&bearer(&token)).await;
        assert_eq!((decision.status, decision.reason), (401, Reason::NotAnAccessToken), "{decision:?}");
    }
    // A `typ` naming another kind of token, signed by the provider all the same.
    let claims = f.provider.claims(json!({"sub": "svc", "email": "svc@example.com", "email_verified": true}));
    let typed = f.provider.sign_typed("logout+jwt", &claims);
    assert_eq!(f.authorizer.decide(&bearer(&typed)).await.reason, Reason::NotAnAccessToken);
    assert_eq!(f.authorizer.decide(&bearer(&f.provider.sign_typed("at+jwt", &claims))).await.outcome, Outcome::Allow);
    // With `bearerTokenTypes: [at+jwt]`, only RFC 9068 access tokens.
    let strict = fixture("bearerTokenTypes: [at+jwt]\n").await;
    let plain = access_token(&strict, json!({}));
    assert_eq!(strict.authorizer.decide(&bearer(&plain)).await.reason, Reason::NotAnAccessToken);
    let typed = strict.provider.sign_typed(
        "application/at+jwt",
        &strict.provider.claims(json!({"sub": "svc",
        "email": "svc@example.com", "email_verified": true})),
    );
    assert_eq!(strict.authorizer.decide(&bearer(&typed)).await.outcome, Outcome::Allow);
}

#[tokio::test]
async fn m3_logout_and_revocation_lookups_fail_closed_while_redis_does_not_answer() {
    for mode in ["redis", "hybrid"] {
        let redis = RedisServer::start();
        let f = fixture(&redis_yaml(&redis, mode)).await;
        let session = log_in(&f, "alice").await;
        let cookie = [("cookie", session.as_str())];
        assert_eq!(f.authorizer.decide(&request("GET", "/api", &cookie)).await.outcome, Outcome::Allow);
        // A second session, never used: no replica's L1 knows anything about its markers.
        let unused = log_in(&f, "bob").await;

        redis.signal("STOP");
        // Whether a session was logged out elsewhere cannot be looked up: an error, not an
        // allow. (The one exception, below: a hybrid L1 that already knows.)
        let during = f.authorizer.decide(&request("GET", "/api", &cookie)).await;
        let unknown = f.authorizer.decide(&request("GET", "/api", &[("cookie", unused.as_str())])).await;
        // RP logout cannot be done: 503, not a 302 that pretends it was.
        let logout = f.authorizer.decide(&request("POST", "/oauth2/logout", &cookie)).await;
        // Back-channel logout: 5xx so the provider retries.
        let token = access_token(
            &f,
            json!({"events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            "jti": "m3-logout", "sub": "alice"}),
        );
        let backchannel = f.backchannel.handle(&token).await;
        redis.signal("CONT");

        // Never an allow: an error (marker lookup failed) or a deny (the record itself
        // could not be read, so no session).
        assert_ne!(unknown.outcome, Outcome::Allow, "{mode}: {unknown:?}");
        if mode == "hybrid" {
            // This replica's L1 knows alice's markers are absent, and would have heard of
            // any marker written since (every write publishes an invalidation). While Redis
            // does not answer, no replica can write one: the knowledge still holds.
            assert_eq!(during.outcome, Outcome::Allow, "{mode}: {during:?}");
        } else {
            assert_ne!(during.outcome, Outcome::Allow, "{mode}: {during:?}");
        }
        assert_eq!((logout.outcome, logout.status), (Outcome::Error, 503), "{mode}: {logout:?}");
        assert!(matches!(backchannel, Err(Refusal::Unavailable(_))), "{mode}: {backchannel:?}");
        // The session was not ended behind anyone's back; once Redis answers it works again.
        wait_until("redis answering again", async || {
            f.authorizer.decide(&request("GET", "/api", &cookie)).await.outcome == Outcome::Allow
        })
        .await;
    }
}

#[tokio::test]
async fn m4_known_keys_survive_a_key_endpoint_outage_and_a_failed_refetch_is_unavailable() {
    use authgate::oidc::discovery::Discovery;
    use authgate::oidc::jwks::Jwks;
    use authgate::oidc::{Verdict, jwt::verify_signed};
    let f = fixture("").await;
    let http = authgate::oidc::http_client();
    let discovery = Discovery::start(&f.provider.issuer, http.clone());
    wait_until("discovery", async || discovery.metadata().is_ok()).await;
    // Every key set counts as stale at once.
    let jwks = std::sync::Arc::new(Jwks::new(discovery.clone(), http).with_max_age(Duration::ZERO));
    let token = access_token(&f, json!({}));
    let verify = |t: String| {
        let (discovery, jwks) = (discovery.clone(), jwks.clone());
        async move { verify_signed(&discovery, &jwks, CLIENT_ID, &t, 30).await }
    };
    assert!(matches!(verify(token.clone()).await, Verdict::Valid(_)));
    f.provider.set_jwks_down(true);
    let calls = f.provider.jwks_calls();
    for _ in 0..3 {
        assert!(matches!(verify(token.clone()).await, Verdict::Valid(_)), "a known kid is served from the cache");
    }
    // The stale keys were refreshed in the background, and that failed.
    wait_until("a background refresh of the stale keys", async || f.provider.jwks_calls() > calls).await;
    // A token naming a key nobody has seen: the refetch fails, so it is "unavailable",
    // on the first try and on the next (rate-limited) ones too, never "invalid".
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("rotated-key".into());
    let parts: Vec<&str> = token.split('.').collect();
    let header_json = serde_json::to_string(&header).unwrap();
    let unknown = format!("{}.{}.{}", crate::decisions::b64(&header_json), parts[1], parts[2]);
    for _ in 0..2 {
        assert!(matches!(verify(unknown.clone()).await, Verdict::Unavailable(_)));
    }
}

#[tokio::test]
async fn l1_claims_cannot_inject_or_split_headers() {
    let f = fixture("headers:\n  - name: X-User-Name\n    value: \"{{.Claims.name}}\"\n").await;
    let token =
        access_token(&f, json!({"name": "Eve\r\nX-Forwarded-User: admin", "groups": ["viewers,admins", "staff"]}));
    let decision = f.authorizer.decide(&bearer(&token)).await;
    assert_eq!(decision.outcome, Outcome::Allow, "{decision:?}");
    let name = upstream(&decision, "x-user-name").unwrap();
    assert!(!name.contains('\r') && !name.contains('\n'), "{name:?}");
    assert_eq!(upstream(&decision, "x-user-groups"), Some("viewers%2Cadmins,staff"));
}

#[tokio::test]
async fn l2_a_flow_cookie_flood_costs_a_bounded_answer() {
    let f = fixture("").await;
    let flood: String =
        (0..3000).map(|i| format!("_authgate_flow_{i:04}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; ")).collect();
    let decision = f.authorizer.decide(&navigation("/", &flood)).await;
    assert_eq!(decision.outcome, Outcome::Redirect);
    let cookies = decision.response_headers.iter().filter(|(n, _)| n == "set-cookie").count();
    assert!(cookies <= 1 + authgate::authz::browser::MAX_FLOW_COOKIES_EXAMINED, "{cookies} Set-Cookie headers");
    // A return path longer than a cookie can carry returns to the root.
    let long = format!("/x?{}", "q".repeat(4096));
    let started = start_login(&f, &long).await;
    let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
    assert_eq!(header(&callback(&f, &started, &code).await, "location"), Some("/"));
}

#[tokio::test]
async fn l3_a_return_path_a_browser_reads_as_another_host_goes_to_the_root() {
    let f = fixture("").await;
    for path in ["/\\evil.example", "/\t/evil.example", "//evil.example"] {
        let started = start_login(&f, path).await;
        let code = f.provider.issue_code(Grant::login("alice", &started.params["nonce"]));
        let decision = callback(&f, &started, &code).await;
        assert_eq!(decision.reason, Reason::LoggedIn);
        assert_eq!(header(&decision, "location"), Some("/"), "{path:?}");
    }
}

#[tokio::test]
async fn l9_replay_markers_outlive_the_leeway() {
    let redis = RedisServer::start();
    let f = fixture(&format!("clockSkewSeconds: 120\n{}", redis_yaml(&redis, "redis"))).await;
    let started = start_login(&f, "/").await;
    let mut grant = Grant::login("alice", &started.params["nonce"]);
    grant.id_claims["exp"] = json!(now() + 300);
    assert_eq!(callback(&f, &started, &f.provider.issue_code(grant)).await.reason, Reason::LoggedIn);
    let keys = redis.cli(&["--scan", "--pattern", "authgate:replay:*"]);
    let key = keys.lines().next().expect("a replay marker");
    let ttl: u64 = redis.cli(&["TTL", key]).trim().parse().unwrap();
    assert!(ttl > 300 + 60, "the marker lives while the token is acceptable (exp + 120 s leeway): TTL {ttl}");
}

#[tokio::test]
async fn l10_a_refresh_that_names_another_user_ends_the_session() {
    let f = fixture("refreshGracePeriodSeconds: 60\n").await;
    let started = start_login(&f, "/").await;
    let grant = Grant {
        expires_in: 10,
        refreshed_sub: Some("mallory".into()),
        ..Grant::login("alice", &started.params["nonce"])
    };
    let decision = callback(&f, &started, &f.provider.issue_code(grant)).await;
    let session = set_cookies(&decision).into_iter().find(|c| c.starts_with("_authgate_session=")).unwrap();
    let after = f.authorizer.decide(&request("GET", "/api", &[("cookie", &session)])).await;
    assert_ne!(after.outcome, Outcome::Allow, "{after:?}");
    assert_ne!(upstream(&after, "x-forwarded-user"), Some("mallory@example.com"));
}

#[tokio::test]
async fn l11_identity_headers_other_proxies_use_are_stripped_and_plain_http_providers_are_named() {
    let f = fixture("").await;
    let decision = f.authorizer.decide(&bearer(&access_token(&f, json!({})))).await;
    for name in ["remote-user", "x-forwarded-email", "x-forwarded-groups", "x-auth-request-groups"] {
        assert!(decision.upstream_remove.iter().any(|h| h == name), "{name} not stripped: {decision:?}");
    }
    let authgate = Authgate::builder().key("providerURL", "http://idp.example.invalid/realm").start().await;
    wait_until("the start-up warning", async || authgate.logs().contains("providerURL is plain http")).await;
}

#[tokio::test]
async fn l12_provider_numbers_do_not_overflow() {
    let f = fixture("").await;
    let started = start_login(&f, "/").await;
    let grant = Grant { expires_in: u64::MAX, ..Grant::login("alice", &started.params["nonce"]) };
    let decision = callback(&f, &started, &f.provider.issue_code(grant)).await;
    assert_eq!(decision.reason, Reason::LoggedIn, "{decision:?}");
    let session = set_cookies(&decision).into_iter().find(|c| c.starts_with("_authgate_session=")).unwrap();
    assert_eq!(f.authorizer.decide(&request("GET", "/api", &[("cookie", &session)])).await.outcome, Outcome::Allow);
}
