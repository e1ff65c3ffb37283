//! The forward-auth bridge behind the real proxies, each running the configuration the
//! project ships: Caddy (`forward_auth`) and nginx (`auth_request`), in front of an
//! upstream that echoes the headers it got, with the real oidc-provider.

use crate::support::proxies::Proxy;
use crate::support::stack::Stack;
use crate::support::{Authgate, EchoUpstream, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, browser_login, browser_with_jar};
use reqwest::cookie::CookieStore;

struct Setup {
    proxy: Proxy,
    authgate: Authgate,
    _idp: Idp,
    _upstream: EchoUpstream,
}

async fn behind(convention: &str, extra: &str) -> Setup {
    let port = Proxy::port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[]).await;
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .key("clientID", IDP_CLIENT_ID)
        .key("clientSecret", IDP_CLIENT_SECRET)
        .key("excludedURLs", "[/public]")
        .key("scopes", "[openid, email, profile, groups]")
        .yaml(&format!("forwardAuth:\n  convention: {convention}"))
        .yaml(extra)
        .start()
        .await;
    authgate.wait_ready().await;
    let proxy = match convention {
        "caddy" => Proxy::caddy(port, authgate.http, upstream.addr),
        _ => Proxy::nginx(port, authgate.http, upstream.addr),
    };
    Setup { proxy, authgate, _idp: idp, _upstream: upstream }
}

/// The headers the upstream received, as it echoed them.
async fn echoed(response: reqwest::Response) -> serde_json::Value {
    let body: serde_json::Value = response.json().await.unwrap();
    body["headers"].clone()
}

async fn the_whole_flow_works_and_nothing_is_spoofed(convention: &str) {
    let s = behind(convention, "").await;
    let logs = || format!("authgate:\n{}\nproxy:\n{}", s.authgate.logs(), s.proxy.logs());
    let (browser, jar) = browser_with_jar();

    // Full browser login through the proxy.
    let (at, response) = browser_login(&browser, &s.proxy.url("/private/page?x=1"), "alice").await;
    assert_eq!(response.status(), 200, "ended at {at}\n{}", logs());
    assert!(at.ends_with("/private/page?x=1"), "back where the user started: {at}");
    let headers = echoed(response).await;
    assert_eq!(headers["x-forwarded-user"], "alice@example.com", "{headers}");
    assert_eq!(headers["x-user-groups"], "admins,staff");
    let cookies = headers.get("cookie").and_then(|c| c.as_str()).unwrap_or("");
    assert!(!cookies.contains("_authgate_"), "authgate's cookie reached the upstream: {cookies}");

    // Spoofed identity headers never reach the upstream.
    let session = jar.cookies(&s.proxy.url("/").parse().unwrap()).unwrap().to_str().unwrap().to_owned();
    let spoofed = reqwest::Client::new()
        .get(s.proxy.url("/private"))
        .header("cookie", &session)
        .header("x-forwarded-user", "admin@corp.example")
        .header("remote-user", "admin")
        .header("x-auth-request-email", "admin@corp.example")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200, "{}", logs());
    let headers = echoed(spoofed).await;
    assert_eq!(headers["x-forwarded-user"], "alice@example.com", "{headers}");
    assert!(headers.get("remote-user").is_none_or(|v| v == ""), "{headers}");
    assert_eq!(headers["x-auth-request-email"], "alice@example.com");

    // On an excluded path there is no identity, and the client's copies are gone too.
    let public = reqwest::Client::new()
        .get(s.proxy.url("/public/x"))
        .header("x-forwarded-user", "admin@corp.example")
        .header("x-user-groups", "admins")
        .header("cookie", format!("theme=dark; {session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200, "{}", logs());
    let headers = echoed(public).await;
    for name in ["x-forwarded-user", "x-user-groups"] {
        assert!(headers.get(name).is_none_or(|v| v == ""), "{name} survived: {headers}");
    }
    let cookies = headers.get("cookie").and_then(|c| c.as_str()).unwrap_or("");
    assert!(cookies.contains("theme=dark") && !cookies.contains("_authgate_"), "{cookies}");

    // A client cannot choose the path authgate decides on.
    for (name, value) in [("x-forwarded-uri", "/public/x"), ("x-original-uri", "/public/x")] {
        let sneaky = reqwest::Client::new().get(s.proxy.url("/admin")).header(name, value).send().await.unwrap();
        assert!(matches!(sneaky.status().as_u16(), 400 | 401 | 500), "{name}: {} {}", sneaky.status(), logs());
    }

    // An API call gets 401, not a redirect.
    let api = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let xhr = api.get(s.proxy.url("/private")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(xhr.status(), 401, "{}", logs());

    // Logout through the proxy ends the session.
    let logout =
        browser.get(s.proxy.url("/oauth2/logout")).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(logout.status().is_success() || logout.status().is_redirection(), "{}", logs());
    let after = api.get(s.proxy.url("/private")).header("cookie", &session).header("accept", "application/json");
    assert_eq!(after.send().await.unwrap().status(), 401, "the session is over");
}

#[tokio::test]
async fn behind_caddy_the_whole_flow_works_and_nothing_is_spoofed() {
    the_whole_flow_works_and_nothing_is_spoofed("caddy").await;
}

#[tokio::test]
async fn behind_nginx_the_whole_flow_works_and_nothing_is_spoofed() {
    the_whole_flow_works_and_nothing_is_spoofed("nginx").await;
}

async fn policy_says_403_and_spoofed_roles_are_replaced(convention: &str) {
    let s = behind(convention, "allowedRolesAndGroups: [staff, admins]\nallowedUsers: [bob@example.com]").await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &s.proxy.url("/private"), "alice").await;
    assert_eq!(response.status(), 403, "alice is not in allowedUsers");
    let (browser, jar2) = browser_with_jar();
    let (_, response) = browser_login(&browser, &s.proxy.url("/private"), "bob").await;
    assert_eq!(response.status(), 200);
    let session = jar2.cookies(&s.proxy.url("/").parse().unwrap()).unwrap().to_str().unwrap().to_owned();
    // A spoofed roles header is replaced by bob's own.
    let spoofed = reqwest::Client::new()
        .get(s.proxy.url("/private"))
        .header("cookie", session)
        .header("x-user-roles", "admin")
        .send()
        .await
        .unwrap();
    let headers = echoed(spoofed).await;
    assert_eq!(headers["x-user-groups"], "staff");
    assert_eq!(headers["x-user-roles"], "viewer");
    drop(jar);
}

#[tokio::test]
async fn behind_caddy_policy_is_enforced() {
    policy_says_403_and_spoofed_roles_are_replaced("caddy").await;
}

#[tokio::test]
async fn behind_nginx_policy_is_enforced() {
    policy_says_403_and_spoofed_roles_are_replaced("nginx").await;
}

#[tokio::test]
async fn a_session_made_through_envoy_is_accepted_through_caddy_with_a_shared_redis() {
    let stack = Stack::builder().cache("redis").replicas(2).yaml("forwardAuth:\n  convention: caddy").start().await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &stack.url("/private"), "alice").await;
    assert_eq!(response.status(), 200, "login through Envoy and replica A");
    let session = stack.cookie(&jar);
    let caddy = Proxy::caddy(Proxy::port(), stack.replicas[1].http, stack.upstream.addr);
    let through_caddy =
        reqwest::Client::new().get(caddy.url("/private")).header("cookie", session).send().await.unwrap();
    assert_eq!(through_caddy.status(), 200, "{}", stack.logs());
    assert_eq!(echoed(through_caddy).await["x-forwarded-user"], "alice@example.com");
}
