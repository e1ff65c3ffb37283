//! OpenID Connect Back-Channel Logout from the real oidc-provider: the user signs out at the
//! provider, the provider POSTs a logout token, and the session ends on every replica;
//! the same logout token delivered again is refused.

use crate::support::{
    Authgate, EchoUpstream, Envoy, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, RedisServer, browser_login, browser_with_jar,
    form_action, free_port, hidden_inputs, resolve,
};
use reqwest::cookie::CookieStore;
use std::sync::{Arc, Mutex};

/// Receives the provider's back-channel POST, keeps the body, and forwards it to authgate.
async fn recording_forwarder(target: String, seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/backchannel-logout",
        axum::routing::post(move |body: String| {
            let (target, seen) = (target.clone(), seen.clone());
            async move {
                seen.lock().unwrap().push(body.clone());
                let response = reqwest::Client::new()
                    .post(&target)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn provider_sign_out_ends_sessions_everywhere(mode: &str) {
    let redis = RedisServer::start();
    let app_port = free_port();
    let a_http = free_port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let forwarder = recording_forwarder(format!("http://127.0.0.1:{a_http}/backchannel-logout"), seen.clone()).await;
    let idp = Idp::start_with_backchannel(
        &format!("http://127.0.0.1:{app_port}"),
        Some(&format!("http://127.0.0.1:{forwarder}/backchannel-logout")),
        &[],
    )
    .await;
    let key = crate::support::random_hex(32);
    let replica = |http: Option<u16>| {
        let mut builder = Authgate::builder()
            .key("providerURL", &idp.issuer())
            .key("clientID", IDP_CLIENT_ID)
            .key("clientSecret", IDP_CLIENT_SECRET)
            .key("sessionEncryptionKey", &key)
            .yaml(&format!("redis:\n  enabled: true\n  address: {}\n  cacheMode: {mode}", redis.address()));
        if let Some(port) = http {
            builder = builder.http_port(port);
        }
        builder.start()
    };
    let a = replica(Some(a_http)).await;
    let b = replica(None).await;
    for replica in [&a, &b] {
        replica.wait_ready().await;
    }
    let upstream = EchoUpstream::start().await;
    let envoy = Envoy::start_on(app_port, a.grpc, upstream.addr).await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &envoy.url("/private"), "alice").await;
    assert_eq!(response.status(), 200);
    let cookie = jar.cookies(&envoy.url("/").parse().unwrap()).unwrap().to_str().unwrap().to_owned();
    // Read the session on B so that its hybrid L1 holds it.
    assert_eq!(b.bridge("/private", &cookie).await.status(), 200);
    assert_eq!(b.bridge("/private", &cookie).await.status(), 200);

    // Sign out at the provider itself (not through authgate).
    let end_session = format!("{}/session/end", idp.issuer());
    let page = browser.get(&end_session).send().await.unwrap().text().await.unwrap();
    let action = form_action(&page).expect("the provider's logout confirmation form");
    let mut fields = hidden_inputs(&page);
    fields.push(("logout".into(), "yes".into()));
    let confirm = browser.post(resolve(&end_session, &action)).form(&fields).send().await.unwrap();
    assert!(confirm.status().is_redirection() || confirm.status().is_success(), "{}", confirm.status());

    crate::support::wait_until("logout token delivered", async || !seen.lock().unwrap().is_empty()).await;
    assert_eq!(b.bridge("/private", &cookie).await.status(), 401, "B ended the session too:\n{}", b.logs());
    assert_eq!(a.bridge("/private", &cookie).await.status(), 401);

    // The same logout token again: refused.
    let body = seen.lock().unwrap()[0].clone();
    let replay = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{a_http}/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let error: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(error["error_description"], "logout_token_replayed");

    // Garbage is refused with 400 too.
    let garbage = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{a_http}/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
}

#[tokio::test]
async fn signing_out_at_the_provider_ends_the_session_on_every_replica_in_redis_mode() {
    provider_sign_out_ends_sessions_everywhere("redis").await;
}

#[tokio::test]
async fn signing_out_at_the_provider_ends_the_session_on_every_replica_in_hybrid_mode() {
    provider_sign_out_ends_sessions_everywhere("hybrid").await;
}
