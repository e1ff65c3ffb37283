//! The forward-auth bridge over plain HTTP, as Traefik, Caddy or nginx call it: the header
//! conventions, who may call, and what every allowed answer carries. Named after the
//! security review's bridge findings (H1, M1, L5, L6) where they prove one.

use crate::support::stack::Stack;
use crate::support::{Authgate, browser_login, browser_with_jar, forward_auth};

/// Traefik's request to the auth server (Traefik docs, ForwardAuth middleware): the
/// original request's headers plus these.
fn traefik(client: &reqwest::Client, bridge: std::net::SocketAddr, path: &str) -> reqwest::RequestBuilder {
    forward_auth(client, bridge, path).header("x-forwarded-for", "203.0.113.7")
}

#[tokio::test]
async fn the_bridge_gives_the_same_decisions_as_check() {
    let authgate = Authgate::builder().key("excludedURLs", "[/public]").start().await;
    let client = reqwest::Client::new();
    assert_eq!(traefik(&client, authgate.http, "/public/logo.png").send().await.unwrap().status(), 200);
    let denied = traefik(&client, authgate.http, "/private").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(denied.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // nginx's convention, when configured.
    let nginx =
        Authgate::builder().key("excludedURLs", "[/public]").yaml("forwardAuth:\n  convention: nginx").start().await;
    let call = |uri: &str| {
        client
            .get(format!("http://{}/auth", nginx.http))
            .header("host", "app.example")
            .header("x-original-method", "GET")
            .header("x-original-uri", uri)
    };
    assert_eq!(call("/public/x").send().await.unwrap().status(), 200);
    assert_eq!(call("/private").send().await.unwrap().status(), 401);
    // ingress-nginx sends the whole URL.
    let ingress = client
        .get(format!("http://{}/auth", nginx.http))
        .header("x-original-method", "GET")
        .header("x-original-url", "https://app.example/public/y?z=1")
        .send()
        .await
        .unwrap();
    assert_eq!(ingress.status(), 200);
}

#[tokio::test]
async fn h1_a_client_cannot_choose_the_path_through_the_other_convention() {
    let nginx =
        Authgate::builder().key("excludedURLs", "[/public]").yaml("forwardAuth:\n  convention: nginx").start().await;
    let client = reqwest::Client::new();
    // nginx passes the client's headers on: its own X-Original-URI says /admin, the
    // client's X-Forwarded-Uri says /public/x.
    let spoofed = client
        .get(format!("http://{}/auth", nginx.http))
        .header("host", "app.example")
        .header("x-original-method", "GET")
        .header("x-original-uri", "/admin")
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 400, "disagreeing conventions are refused");
    // Without nginx's headers the call is not understood at all.
    let only_forwarded =
        client.get(format!("http://{}/auth", nginx.http)).header("x-forwarded-uri", "/public/x").send().await.unwrap();
    assert_eq!(only_forwarded.status(), 400);
    assert!(nginx.logs().contains("forward_auth_headers"), "the refusal is logged with its reason");

    // The Traefik convention ignores X-Original-* unless they agree.
    let traefik_gate = Authgate::builder().key("excludedURLs", "[/public]").start().await;
    let conflicting =
        forward_auth(&client, traefik_gate.http, "/public/x").header("x-original-uri", "/admin").send().await.unwrap();
    assert_eq!(conflicting.status(), 400);
    let missing = client
        .get(format!("http://{}/auth", traefik_gate.http))
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400, "no X-Forwarded-Method/-Host: not a Traefik call");
}

#[tokio::test]
async fn only_trusted_proxies_with_the_shared_secret_may_call() {
    let elsewhere = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml("forwardAuth:\n  trustedProxies: [10.0.0.0/8, 192.0.2.1]")
        .start()
        .await;
    let client = reqwest::Client::new();
    assert_eq!(forward_auth(&client, elsewhere.http, "/public/x").send().await.unwrap().status(), 400);
    assert!(elsewhere.logs().contains("untrusted_proxy"));

    let with_secret = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml("forwardAuth:\n  sharedSecret: proxy-secret-0123456789\n  sharedSecretHeader: X-Proxy-Auth")
        .start()
        .await;
    let call = || forward_auth(&client, with_secret.http, "/public/x");
    assert_eq!(call().send().await.unwrap().status(), 400, "no secret");
    assert_eq!(call().header("x-proxy-auth", "wrong").send().await.unwrap().status(), 400, "wrong secret");
    assert_eq!(call().header("x-proxy-auth", "proxy-secret-0123456789").send().await.unwrap().status(), 200);
    assert!(!with_secret.logs().contains("proxy-secret-0123456789"), "the secret is never logged");
}

#[tokio::test]
async fn m1_every_allowed_answer_carries_every_managed_header() {
    let authgate = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml("headers:\n  - name: X-Tenant\n    value: '{{.Claims.tenant}}'")
        .start()
        .await;
    let allowed = forward_auth(&reqwest::Client::new(), authgate.http, "/public/x")
        .header("x-forwarded-user", "admin@corp.example")
        .header("cookie", "theme=dark; _authgate_session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let headers = allowed.headers();
    for name in [
        "x-forwarded-user",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-user-groups",
        "x-user-roles",
        "x-tenant",
        "remote-user",
        "x-forwarded-email",
    ] {
        assert_eq!(headers.get(name).map(|v| v.to_str().unwrap()), Some(""), "{name} must be answered, empty");
    }
    assert_eq!(headers["cookie"], "theme=dark", "authgate's own cookie never reaches the upstream");
}

#[tokio::test]
async fn l6_and_m1_a_session_in_a_second_cookie_header_is_found_and_stripped() {
    let stack = Stack::builder().start().await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &stack.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);
    let session = stack.cookie(&jar);
    let answer = forward_auth(&reqwest::Client::new(), stack.authgate().http, "/private")
        .header("accept", "application/json")
        .header("cookie", "theme=dark")
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", stack.logs());
    assert_eq!(answer.headers()["x-forwarded-user"], "alice@example.com");
    // The jar also holds the provider's cookies (same host); authgate's are gone.
    let upstream_cookie = answer.headers()["cookie"].to_str().unwrap();
    assert!(upstream_cookie.starts_with("theme=dark") && !upstream_cookie.contains("_authgate_"), "{upstream_cookie}");
}

#[tokio::test]
async fn l5_the_redirect_uri_comes_from_an_absolute_callback_url_not_a_client_header() {
    let provider = crate::support::provider::TestProvider::start().await;
    let authgate = Authgate::builder()
        .key("callbackURL", "https://auth.example/oauth2/callback")
        .key("providerURL", &provider.issuer)
        .key("clientID", crate::support::provider::CLIENT_ID)
        .start()
        .await;
    authgate.wait_ready().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = client
        .get(format!("http://{}/auth", authgate.http))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-uri", "/private")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let redirect_uri = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(redirect_uri, "https://auth.example/oauth2/callback");
    assert!(!location.contains("evil.example"), "{location}");

    // nginx's login entry point returns to a path on the requesting host only.
    let start = client
        .get(format!("http://{}/oauth2/start?rd=%2Fprivate%3Fx%3D1", authgate.http))
        .header("host", "app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    assert!(start.headers()["location"].to_str().unwrap().starts_with(&format!("{}/authorize?", provider.issuer)));
    assert!(start.headers()["set-cookie"].to_str().unwrap().contains("_authgate_flow_"));
}
