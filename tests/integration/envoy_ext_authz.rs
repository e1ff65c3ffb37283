//! Real Envoy → ext_authz gRPC → authgate, in front of an upstream that echoes what it got.

use crate::support::{Authgate, EchoUpstream, Envoy};

#[tokio::test]
async fn excluded_paths_reach_the_upstream_and_others_are_denied() {
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder().key("excludedURLs", "[/public, /healthz]").start().await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    let client = reqwest::Client::new();

    let allowed = client.get(envoy.url("/public/app.css?v=2")).send().await.unwrap();
    assert_eq!(allowed.status(), 200, "envoy log:\n{}", envoy.logs());
    let echoed: serde_json::Value = allowed.json().await.unwrap();
    assert_eq!(echoed["path"], "/public/app.css?v=2");

    let denied = client.get(envoy.url("/private")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let challenge = denied.headers().get("www-authenticate").expect("a 401 carries a challenge");
    assert!(challenge.to_str().unwrap().starts_with("Bearer"));
    let body = denied.text().await.unwrap();
    assert!(!body.contains("\"headers\""), "the upstream must not have been reached: {body}");

    // Prefixes match whole segments, and dot segments never slip through.
    assert_eq!(client.get(envoy.url("/publicity")).send().await.unwrap().status(), 401);
    assert_eq!(client.get(envoy.url("/public/%2e%2e/private")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_never_reach_the_upstream() {
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml("headers:\n  - name: X-Tenant\n    value: '{{.Claims.tenant}}'")
        .start()
        .await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    let response = reqwest::Client::new()
        .get(envoy.url("/public/x"))
        .header("X-Forwarded-User", "admin@example.com")
        .header("X-Auth-Request-Email", "admin@example.com")
        .header("X-User-Groups", "admins")
        .header("X-Tenant", "other")
        .header("X-Unrelated", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: serde_json::Value = response.json().await.unwrap();
    let headers = echoed["headers"].as_object().unwrap();
    for spoofed in ["x-forwarded-user", "x-auth-request-email", "x-user-groups", "x-tenant"] {
        assert!(!headers.contains_key(spoofed), "{spoofed} reached the upstream: {headers:?}");
    }
    assert_eq!(headers["x-unrelated"], "kept");
}
