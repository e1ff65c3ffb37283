//! The browser flow end to end: real Envoy → authgate → real oidc-provider, a browser with
//! a cookie jar, an upstream that echoes the headers it got.

use crate::support::stack::Stack;
use crate::support::{
    Authgate, EchoUpstream, Envoy, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, browser, browser_login, free_port,
};
use reqwest::cookie::CookieStore;

/// One replica in memory mode behind Envoy, with the login tests' scopes and exclusions.
async fn stack(extra: &str) -> Stack {
    stack_in("memory", 1, extra).await
}

async fn stack_in(mode: &str, replicas: usize, extra: &str) -> Stack {
    Stack::builder()
        .cache(mode)
        .replicas(replicas)
        .key("scopes", "[openid, email, profile, groups]")
        .key("excludedURLs", "[/public]")
        .yaml(extra)
        .start()
        .await
}

#[tokio::test]
async fn a_browser_logs_in_and_reaches_the_upstream_with_its_identity() {
    let stack = stack("").await;
    let browser = browser();
    let first = browser.get(stack.envoy.url("/private/page?x=1")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(first.status(), 302, "a browser without a session goes to the login page");
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/auth?", stack.idp.issuer())), "{location}");
    for parameter in ["state=", "nonce=", "code_challenge=", "code_challenge_method=S256", "response_type=code"] {
        assert!(location.contains(parameter), "{parameter} missing in {location}");
    }
    let flow_cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(flow_cookie.contains("HttpOnly") && flow_cookie.contains("SameSite=Lax"), "{flow_cookie}");

    let (url, response) = browser_login(&browser, &stack.envoy.url("/private/page?x=1"), "alice").await;
    assert_eq!(response.status(), 200, "ended at {url}\nauthgate:\n{}", stack.logs());
    assert!(url.ends_with("/private/page?x=1"), "back where the user started: {url}");
    let echoed: serde_json::Value = response.json().await.unwrap();
    let headers = &echoed["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice@example.com", "{headers}");
    assert_eq!(headers["x-auth-request-email"], "alice@example.com");
    assert_eq!(headers["x-user-groups"], "admins,staff");
    assert_eq!(headers["x-user-roles"], "editor");
    let upstream_cookies = headers.get("cookie").and_then(|c| c.as_str()).unwrap_or("");
    assert!(
        !upstream_cookies.contains("_authgate_"),
        "the upstream must not see authgate's cookies: {upstream_cookies}"
    );

    // The session works for the next requests, and a spoofed identity header is replaced.
    let again = browser
        .get(stack.envoy.url("/private/other"))
        .header("accept", "application/json")
        .header("x-forwarded-user", "mallory@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let echoed: serde_json::Value = again.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-forwarded-user"], "alice@example.com");

    // No raw token or session id in the logs.
    let logs = stack.logs();
    assert!(!logs.contains("eyJ"), "a JWT leaked into the logs:\n{logs}");
}

#[tokio::test]
async fn api_calls_get_401_never_a_redirect() {
    let stack = stack("").await;
    let client = browser();
    for (accept, extra) in [("application/json", None), ("text/html", Some(("x-requested-with", "XMLHttpRequest")))] {
        let mut request = client.get(stack.envoy.url("/api")).header("accept", accept);
        if let Some((k, v)) = extra {
            request = request.header(k, v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
}

#[tokio::test]
async fn policy_denies_a_logged_in_user_with_403() {
    let stack = stack("allowedRolesAndGroups: [admins]").await;
    let (_, response) = browser_login(&browser(), &stack.envoy.url("/private"), "bob").await;
    assert_eq!(response.status(), 403, "bob is not an admin");
    let (_, response) = browser_login(&browser(), &stack.envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200, "alice is");
}

#[tokio::test]
async fn tampered_truncated_or_unknown_session_cookies_are_no_session() {
    let stack = stack("").await;
    let browser_client = browser();
    let (_, response) = browser_login(&browser_client, &stack.envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for cookie in ["_authgate_session=AAAA", "_authgate_session=", "_authgate_session=%%%", "_authgate_session=a.b.c"] {
        let response = client
            .get(stack.envoy.url("/private"))
            .header("accept", "application/json")
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{cookie}");
    }
}

#[tokio::test]
async fn a_callback_with_a_foreign_state_or_host_does_not_log_in_or_redirect_away() {
    let stack = stack("").await;
    let client = browser();
    let response = client
        .get(stack.envoy.url("/oauth2/callback?code=abc&state=made-up"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no flow cookie for that state");
    let response = client.get(stack.envoy.url("/oauth2/callback")).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn logout_ends_the_session_and_goes_to_the_providers_end_session() {
    let stack = stack("").await;
    let browser_client = browser();
    let (_, response) = browser_login(&browser_client, &stack.envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);

    // A cross-site request (an <img> on another site) cannot log the user out.
    let cross = browser_client
        .get(stack.envoy.url("/oauth2/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let still =
        browser_client.get(stack.envoy.url("/private")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(still.status(), 200);

    let logout = browser_client
        .get(stack.envoy.url("/oauth2/logout"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 302);
    let location = logout.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/session/end", stack.idp.issuer())), "{location}");
    assert!(location.contains("id_token_hint=") && location.contains("post_logout_redirect_uri="), "{location}");
    let cleared = logout.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared, "the session cookie is cleared");

    let after =
        browser_client.get(stack.envoy.url("/private")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn logins_in_several_tabs_do_not_break_each_other_and_flow_cookies_do_not_pile_up() {
    let stack = stack("").await;
    let (browser, jar) = crate::support::browser_with_jar();
    // Two tabs start a login, then finish in the opposite order.
    let mut starts = Vec::new();
    for path in ["/tab-one", "/tab-two"] {
        let response = browser.get(stack.envoy.url(path)).header("accept", "text/html").send().await.unwrap();
        assert_eq!(response.status(), 302);
        starts.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    for (authorize, path) in starts.iter().rev().zip(["/tab-two", "/tab-one"]) {
        let (url, response) = browser_login(&browser, authorize, "alice").await;
        assert_eq!(response.status(), 200, "{path} ended at {url}\n{}", stack.logs());
        assert!(url.ends_with(path), "{url}");
    }

    // Many abandoned logins: at most four flow cookies stay.
    let fresh = crate::support::browser_with_jar();
    for i in 0..8 {
        let response =
            fresh.0.get(stack.envoy.url(&format!("/p{i}"))).header("accept", "text/html").send().await.unwrap();
        assert_eq!(response.status(), 302);
    }
    let cookies = fresh.1.cookies(&stack.envoy.url("/").parse().unwrap()).unwrap();
    let flows = cookies.to_str().unwrap().split("; ").filter(|c| c.starts_with("_authgate_flow_")).count();
    assert!(flows <= 4, "{flows} flow cookies: {cookies:?}");
    drop(jar);
}

#[tokio::test]
async fn with_force_https_cookies_are_secure_and_host_prefixed() {
    let stack = stack("forceHTTPS: true").await;
    let response = browser().get(stack.envoy.url("/private")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.contains("redirect_uri=https%3A%2F%2F"), "https redirect URI: {location}");
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-_authgate_flow_"), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
}

#[tokio::test]
async fn the_login_works_in_redis_and_hybrid_mode() {
    for mode in ["redis", "hybrid"] {
        let stack = stack_in(mode, 1, "").await;
        let redis = stack.redis.as_ref().unwrap();
        let (_, response) = browser_login(&browser(), &stack.envoy.url("/private"), "alice").await;
        assert_eq!(response.status(), 200, "{mode}:\n{}", stack.logs());
        // The session lives in Redis, under a hashed key, encrypted.
        let keys = redis.cli(&["KEYS", "*session*"]);
        let key = keys.lines().next().unwrap_or_else(|| panic!("{mode}: no session key in redis"));
        assert!(key.starts_with("authgate:session:") && key.len() == "authgate:session:".len() + 64, "{key}");
        let value = redis.cli(&["GET", key]);
        assert!(!value.contains("alice") && !value.contains("eyJ"), "{mode}: session stored in clear: {value}");
    }
}

#[tokio::test]
async fn a_callback_arriving_on_another_host_is_sent_to_the_root_not_away() {
    let stack = stack("").await;
    let browser = browser();
    let callback = crate::support::login_until_callback(
        &browser,
        &stack.envoy.url("/private/deep"),
        "alice",
        &stack.envoy.url("/oauth2/callback"),
    )
    .await;
    // Deliver the callback with another Host (what a forged link through a shared proxy does).
    let response =
        browser.get(&callback).header("host", "evil.example").header("accept", "text/html").send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", stack.logs());
    assert_eq!(response.headers()["location"], "/", "never back to the original path on a foreign host");
}

#[tokio::test]
async fn client_secret_post_works_when_configured() {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let idp = Idp::start_with(&origin, None, "client_secret_post", &[]).await;
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .key("clientID", IDP_CLIENT_ID)
        .key("clientSecret", IDP_CLIENT_SECRET)
        .key("tokenEndpointAuthMethod", "client_secret_post")
        .start()
        .await;
    authgate.wait_ready().await;
    let envoy = Envoy::start_on(port, authgate.grpc, upstream.addr).await;
    let (_, response) = browser_login(&browser(), &envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200, "{}", authgate.logs());
}

#[tokio::test]
async fn userinfo_claims_are_added_when_the_id_token_lacks_them() {
    for fetch in [false, true] {
        let stack = Stack::builder()
            .idp_env("IDP_CONFORM_ID_TOKEN_CLAIMS", "true")
            // Identified by `sub`: without userinfo the ID token has no e-mail.
            .key("userIdentifierClaim", "sub")
            .key("scopes", "[openid, email, groups]")
            .key("fetchUserInfo", &fetch.to_string())
            .start()
            .await;
        let (_, response) = browser_login(&browser(), &stack.url("/private"), "alice").await;
        assert_eq!(response.status(), 200, "{}", stack.logs());
        let echoed: serde_json::Value = response.json().await.unwrap();
        let email = echoed["headers"].get("x-auth-request-email").cloned();
        if fetch {
            assert_eq!(email.unwrap(), "alice@example.com", "from userinfo");
            assert_eq!(echoed["headers"]["x-user-groups"], "admins,staff");
        } else {
            assert!(email.is_none(), "the ID token alone has no e-mail: {echoed}");
        }
    }
}

async fn logout_through_one_replica_ends_it_on_the_other(mode: &str) {
    let stack = stack_in(mode, 2, "").await;
    let b = &stack.replicas[1];
    let (browser, jar) = crate::support::browser_with_jar();
    let (_, response) = browser_login(&browser, &stack.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);
    let cookie = stack.cookie(&jar);
    // B has the session in its L1 now.
    assert_eq!(b.bridge("/private", &cookie).await.status(), 200);
    assert_eq!(b.bridge("/private", &cookie).await.status(), 200);

    let logout = browser.get(stack.url("/oauth2/logout")).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(logout.status(), 302);
    // Through A, then at once on B, whose L1 held it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while b.bridge("/private", &cookie).await.status() != 401 {
        assert!(std::time::Instant::now() < deadline, "B still accepts a logged-out session");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn logging_out_through_one_replica_ends_the_session_on_the_other_in_redis_mode() {
    logout_through_one_replica_ends_it_on_the_other("redis").await;
}

#[tokio::test]
async fn logging_out_through_one_replica_ends_the_session_on_the_other_in_hybrid_mode() {
    logout_through_one_replica_ends_it_on_the_other("hybrid").await;
}
