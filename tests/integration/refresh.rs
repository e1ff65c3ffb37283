//! Token refresh with a rotating refresh token, under concurrent requests, in one replica
//! and across two replicas sharing Redis: the refresh token is redeemed once per refresh,
//! so nobody is logged out.

use crate::support::stack::Stack;
use crate::support::{
    Authgate, EchoUpstream, Envoy, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, browser_login, browser_with_jar, free_port,
};
use reqwest::cookie::CookieStore;

async fn authgate(idp: &Idp, extra: &str, session_key: &str) -> Authgate {
    let authgate = Authgate::builder()
        .key("sessionEncryptionKey", session_key)
        .key("providerURL", &idp.issuer())
        .key("clientID", IDP_CLIENT_ID)
        .key("clientSecret", IDP_CLIENT_SECRET)
        // Every request is "near expiry": each one wants a refresh.
        .key("refreshGracePeriodSeconds", "3600")
        .yaml("headers:\n  - name: X-Access-Token\n    value: '{{.AccessToken}}'")
        .yaml(extra)
        .start()
        .await;
    authgate.wait_ready().await;
    authgate
}

#[tokio::test]
async fn twenty_concurrent_requests_refresh_once_and_stay_logged_in() {
    let port = free_port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    let upstream = EchoUpstream::start().await;
    let authgate = authgate(&idp, "", &crate::support::random_hex(32)).await;
    let envoy = Envoy::start_on(port, authgate.grpc, upstream.addr).await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);
    let first: serde_json::Value = response.json().await.unwrap();
    let cookie = jar.cookies(&envoy.url("/").parse().unwrap()).unwrap().to_str().unwrap().to_owned();

    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (url, cookie) = (envoy.url("/private"), cookie.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .header("accept", "application/json")
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200, "authgate:\n{}", authgate.logs());
        let echoed: serde_json::Value = response.json().await.unwrap();
        tokens.insert(echoed["headers"]["x-access-token"].as_str().unwrap().to_owned());
    }
    assert!(!tokens.contains(first["headers"]["x-access-token"].as_str().unwrap()), "the tokens were refreshed");
    // Sequential refreshes with the rotated token keep working: nobody was logged out.
    for _ in 0..3 {
        let response = reqwest::Client::new()
            .get(envoy.url("/private"))
            .header("accept", "application/json")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "authgate:\n{}", authgate.logs());
    }
    assert!(!authgate.logs().contains("refresh token refused"), "{}", authgate.logs());
}

async fn two_replicas_redeem_each_refresh_token_once(mode: &str) {
    let stack = Stack::builder()
        .cache(mode)
        .replicas(2)
        .idp_env("IDP_ACCESS_TOKEN_TTL", "60")
        // Every request is "near expiry": each one wants a refresh.
        .key("refreshGracePeriodSeconds", "3600")
        .start()
        .await;
    let (a, b) = (&stack.replicas[0], &stack.replicas[1]);
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &stack.url("/private"), "alice").await;
    assert_eq!(response.status(), 200, "login through replica A");
    let cookie = stack.cookie(&jar);

    // The session made on A is accepted by B.
    assert_eq!(b.bridge("/private", &cookie).await.status(), 200, "B:\n{}", b.logs());

    for round in 0..3 {
        let requests: Vec<_> = (0..20)
            .map(|i| {
                let cookie = cookie.clone();
                let target = if i % 2 == 0 { a.http } else { b.http };
                tokio::spawn(async move {
                    crate::support::forward_auth(&reqwest::Client::new(), target, "/private")
                        .header("accept", "application/json")
                        .header("cookie", cookie)
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), 200, "round {round}\n{}", stack.logs());
        }
    }
    assert!(!stack.logs().contains("refresh token refused"), "{}", stack.logs());
}

#[tokio::test]
async fn two_replicas_sharing_redis_redeem_each_refresh_token_once_in_redis_mode() {
    two_replicas_redeem_each_refresh_token_once("redis").await;
}

#[tokio::test]
async fn two_replicas_sharing_redis_redeem_each_refresh_token_once_in_hybrid_mode() {
    two_replicas_redeem_each_refresh_token_once("hybrid").await;
}
