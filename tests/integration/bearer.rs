//! Bearer JWTs end to end: real oidc-provider issues them (client-credentials grant, JWT
//! access tokens for a resource), real Envoy asks authgate, the upstream echoes headers.

use crate::support::{Authgate, EchoUpstream, Envoy, IDP_CLIENT_ID, Idp, TlsFiles};
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

async fn setup(extra: &str) -> (Idp, Authgate, EchoUpstream, Envoy) {
    let idp = Idp::start("http://127.0.0.1:1", &[]).await;
    let upstream = EchoUpstream::start().await;
    // API clients are identified by `sub` (a client-credentials token has no e-mail).
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .key("clientID", IDP_CLIENT_ID)
        .key("userIdentifierClaim", "sub")
        .yaml(extra)
        .start()
        .await;
    authgate.wait_ready().await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    (idp, authgate, upstream, envoy)
}

async fn get(envoy: &Envoy, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(envoy.url("/api/data"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-user", "spoofed-admin")
        .header("x-user-groups", "admins")
        .send()
        .await
        .unwrap()
}

fn payload(token: &str) -> serde_json::Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_upstream_with_identity_headers_and_forgeries_do_not() {
    let (idp, authgate, _upstream, envoy) =
        setup("headers:\n  - name: X-Client\n    value: '{{.Claims.client_id}}'").await;
    let token = idp.client_credentials_token().await;

    let response = get(&envoy, &token).await;
    assert_eq!(response.status(), 200, "authgate log:\n{}", authgate.logs());
    let echoed: serde_json::Value = response.json().await.unwrap();
    let headers = &echoed["headers"];
    assert_eq!(headers["x-forwarded-user"], IDP_CLIENT_ID, "{headers}");
    assert_eq!(headers["x-auth-request-user"], IDP_CLIENT_ID);
    assert_eq!(headers["x-client"], IDP_CLIENT_ID, "templated header");
    assert!(headers.get("x-user-groups").is_none(), "a spoofed group header must not survive: {headers}");

    // Expired-looking, tampered and foreign tokens are refused with 401 and a reason.
    let mut claims = payload(&token);
    claims["sub"] = "someone-else".into();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
    let response = get(&envoy, &tampered).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("bad_signature"));

    // alg: none.
    let none = format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    assert_eq!(get(&envoy, &none).await.status(), 401);
    let none_with_sig = format!("{}.{}.{}", B64.encode(r#"{"alg":"none"}"#), parts[1], parts[2]);
    let response = get(&envoy, &none_with_sig).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("malformed_token"));

    // HS256 "signed" with the provider's public key material: never accepted.
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": payload_kid(&token)});
    let hs = jsonwebtoken::encode(
        &serde_json::from_value(header).unwrap(),
        &payload(&token),
        &jsonwebtoken::EncodingKey::from_secret(b"public-key-bytes"),
    )
    .unwrap();
    let response = get(&envoy, &hs).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("algorithm_not_allowed"));

    // Signed by a key that is not the provider's, even with the provider's kid.
    let tls = TlsFiles::generate();
    let foreign_key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(tls.path("client.key")).unwrap()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(payload_kid(&token));
    let foreign = jsonwebtoken::encode(&header, &payload(&token), &foreign_key).unwrap();
    assert_eq!(get(&envoy, &foreign).await.status(), 401);
    header.kid = Some("no-such-key".into());
    let unknown = jsonwebtoken::encode(&header, &payload(&token), &foreign_key).unwrap();
    let response = get(&envoy, &unknown).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("unknown_signing_key"));

    // A garbled header value is not a token at all.
    assert_eq!(get(&envoy, "not a jwt").await.status(), 401);
    drop(idp);
}

fn payload_kid(token: &str) -> String {
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (idp, _authgate, _upstream, envoy) = setup("audience: some-other-api").await;
    let token = idp.client_credentials_token().await;
    let response = get(&envoy, &token).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("wrong_audience"));
}

#[tokio::test]
async fn policy_denies_with_403() {
    let (idp, _authgate, _upstream, envoy) = setup("allowedRolesAndGroups: [admins]").await;
    let token = idp.client_credentials_token().await;
    let response = get(&envoy, &token).await;
    assert_eq!(response.status(), 403);
    assert!(!response.text().await.unwrap().contains("\"headers\""), "the upstream must not be reached");
}

#[tokio::test]
async fn an_unreachable_provider_is_an_error_not_a_denial() {
    let upstream = EchoUpstream::start().await;
    let dead = crate::support::free_port();
    let authgate = Authgate::builder().key("providerURL", &format!("http://127.0.0.1:{dead}")).start().await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    let token = format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"RS256","kid":"k"}"#),
        B64.encode(r#"{"sub":"x"}"#),
        B64.encode("sig")
    );
    // Envoy's status_on_error (503) applies: ext_authz error_response, distinct from a 401/403.
    assert_eq!(get(&envoy, &token).await.status(), 503);
    let readyz = reqwest::get(format!("http://{}/readyz", authgate.admin)).await.unwrap();
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert!(body["reasons"][0].as_str().unwrap().contains("discovery"), "{body}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let idp = Idp::start("http://127.0.0.1:1", &[("IDP_ACCESS_TOKEN_TTL", "1")]).await;
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .key("clientID", IDP_CLIENT_ID)
        .key("clockSkewSeconds", "0")
        .start()
        .await;
    authgate.wait_ready().await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    let token = idp.client_credentials_token().await;
    let exp = payload(&token)["exp"].as_u64().unwrap();
    // Wait for the clock to pass `exp` (a one-second token), then it must be refused.
    crate::support::wait_until("token expiry", async || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() > exp
    })
    .await;
    let response = get(&envoy, &token).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("token_expired"));
}
