//! Hostile input, through the real Envoy and the forward-auth bridge, against one authgate
//! in redis mode: every class of the security review plus malformed, oversized, truncated,
//! tampered and replayed cookies and tokens. Each case must get a clear deny or error (no
//! allow, no crash), authgate must stay healthy, Redis must hold nothing it should not,
//! and the log must contain none of the secrets the suite used. It prints how many cases
//! ran.

use crate::decisions::b64;
use crate::support::provider::{Grant, TestProvider};
use crate::support::{Authgate, EchoUpstream, Envoy, RedisServer, free_port};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The headers Traefik adds to a forward-auth call for `path`.
fn traefik(path: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-forwarded-method", "GET".to_owned()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-forwarded-host", "app.example".to_owned()),
        ("x-forwarded-uri", path.to_owned()),
    ]
}

/// One raw HTTP/1.1 exchange, so paths and headers go out byte for byte.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: app.example\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    // A server may close early on an oversized request; what it answered still counts.
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

struct Suite {
    cases: usize,
    failures: Vec<String>,
}

impl Suite {
    /// A case passes when `ok(status)` holds and the answer is not a 5xx from a crash
    /// (0 = the connection was closed without an answer, which only oversized requests may get).
    fn check(&mut self, name: &str, (status, text): (u16, String), ok: impl Fn(u16) -> bool) {
        self.cases += 1;
        if !ok(status) {
            self.failures.push(format!("{name}: got {status}\n{}", text.chars().take(400).collect::<String>()));
        }
    }
}

fn denied(status: u16) -> bool {
    matches!(status, 302 | 400 | 401 | 403 | 404 | 413 | 414 | 431)
}

// Several workers: the raw HTTP exchanges block one, the in-process provider and the echo
// upstream answer on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn hostile_input_gets_a_clear_deny_and_leaves_no_trace() {
    let provider = TestProvider::start().await;
    let redis = RedisServer::start();
    let app_port = free_port();
    let authgate = Authgate::builder()
        .key("providerURL", &provider.issuer)
        .key("clientID", crate::support::provider::CLIENT_ID)
        .key("clientSecret", crate::support::provider::CLIENT_SECRET)
        .key("excludedURLs", "[/public]")
        .yaml("headers:\n  - name: X-User-Name\n    value: '{{.Claims.name}}'")
        .yaml(&format!("redis:\n  enabled: true\n  address: {}\n  cacheMode: redis", redis.address()))
        .start()
        .await;
    authgate.wait_ready().await;
    let upstream = EchoUpstream::start().await;
    let envoy = Envoy::start_on(app_port, authgate.grpc, upstream.addr).await;
    let app: SocketAddr = ([127, 0, 0, 1], app_port).into();
    let bridge = authgate.http;
    let mut suite = Suite { cases: 0, failures: Vec::new() };
    let mut secrets: Vec<String> = Vec::new();

    // Paths: the parser differentials of H2, through Envoy and through the bridge.
    let paths = [
        "/public/..;/admin",
        "/public/..;jsessionid=x/admin",
        "/public;/../admin",
        "/public/%2e%2e/admin",
        "/public/%252e%252e/admin",
        "/public/%u002e%u002e/admin",
        "/public/%2F..%2Fadmin",
        "/public/%5C..%5Cadmin",
        "/public/.%2e/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/\u{ff0e}\u{ff0e}/admin",
        "/public/../admin",
        "/public/./../admin",
    ];
    for path in paths {
        suite.check(&format!("envoy {path}"), raw(app, "GET", path, &[]), denied);
        suite.check(&format!("bridge {path}"), raw(bridge, "GET", "/auth", &traefik(path)), denied);
    }
    suite.check("bridge fragment", raw(bridge, "GET", "/auth", &traefik("/public#/../admin")), denied);
    suite.check("bridge control byte", raw(bridge, "GET", "/auth", &traefik("/public/\u{1}/../admin")), denied);

    // Oversized headers and cookie floods.
    for size in [64 * 1024, 1024 * 1024] {
        let big = [("x-big", "a".repeat(size))];
        suite.check(&format!("envoy {size}-byte header"), raw(app, "GET", "/private", &big), |s| s == 0 || denied(s));
        suite.check(&format!("bridge {size}-byte header"), raw(bridge, "GET", "/auth", &big), |s| s == 0 || denied(s));
    }
    let flood: String = (0..3000).map(|i| format!("_authgate_flow_{i:04}=AAAAAAAAAAAAAAAAAAAAAAAA; ")).collect();
    let mut flood_headers = traefik("/private");
    flood_headers.extend([("accept", "text/html".to_owned()), ("cookie", flood)]);
    let (status, text) = raw(bridge, "GET", "/auth", &flood_headers);
    let set_cookies = text.lines().filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).count();
    suite.check("bridge 3000 flow cookies", (status, text), |s| s == 302 && set_cookies <= 9);
    let many: String = (0..5000).map(|i| format!("c{i}=v; ")).collect();
    suite.check("envoy 5000 cookies", raw(app, "GET", "/private", &[("cookie", many)]), |s| s == 0 || denied(s));

    // A real login through Envoy, to have a session and a callback to replay.
    let html = [("accept", "text/html".to_owned())];
    let (status, text) = raw(app, "GET", "/private", &html);
    assert_eq!(status, 302, "{text}");
    let location = header_of(&text, "location").unwrap();
    let flow_cookie = header_of(&text, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let params: std::collections::HashMap<String, String> =
        url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
    let mut grant = Grant::login("alice", &params["nonce"]);
    grant.id_claims["name"] = json!("Alice");
    let code = provider.issue_code(grant);
    let callback = format!("/oauth2/callback?code={code}&state={}", params["state"]);
    let flow = [("accept", "text/html".to_owned()), ("cookie", flow_cookie.clone())];
    let (status, text) = raw(app, "GET", &callback, &flow);
    assert_eq!(status, 302, "{text}\n{}", authgate.logs());
    let session = header_of(&text, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let session_id = session.split_once('=').unwrap().1.to_owned();
    secrets.extend([session_id.clone(), code.clone(), params["state"].clone(), params["nonce"].clone()]);
    let live = raw(app, "GET", "/private", &[("cookie", session.clone())]);
    assert_eq!(live.0, 200, "the session works: {}", live.1);

    // Replays of the callback (state, nonce, code, ID token all spent).
    suite.check("callback replayed", raw(app, "GET", &callback, &flow), |s| s == 401);
    suite.check("callback without its flow cookie", raw(app, "GET", &callback, &html), |s| s == 401);

    // Tampered, truncated and foreign session cookies.
    let mut flipped = session_id.clone().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let tampered = [
        session_id[..session_id.len() - 3].to_owned(),
        String::from_utf8(flipped).unwrap(),
        format!("{session_id}x"),
        "%00%0d%0a".to_owned(),
        "A".repeat(10_000),
        "../../etc/passwd".to_owned(),
        String::new(),
    ];
    for (i, value) in tampered.iter().enumerate() {
        let cookie = [("cookie", format!("_authgate_session={value}"))];
        suite.check(&format!("session cookie variant {i}"), raw(app, "GET", "/private", &cookie), denied);
    }

    // Tokens: forged, confused, malformed, huge, nested, hostile claims.
    let good = provider
        .sign(&provider.claims(json!({"sub": "svc", "email": "svc@example.com", "email_verified": true,
        "name": "Eve\r\nX-Forwarded-User: admin", "groups": ["viewers,admins"]})));
    let parts: Vec<&str> = good.split('.').collect();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let forged = [
        format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]),
        format!("{}.{}.{}", b64(r#"{"alg":"none"}"#), parts[1], parts[2]),
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &provider.claims(json!({"sub": "admin"})),
            &jsonwebtoken::EncodingKey::from_secret(provider.issuer.as_bytes()),
        )
        .unwrap(),
        format!("{}.{}.{}", parts[0], b64(r#"{"sub":"admin","exp":4102444800}"#), parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        good[..good.len() - 5].to_owned(),
        format!("{}.{}.{}", parts[0], b64(&format!(r#"{{"x":{nested}}}"#)), parts[2]),
        format!("{}.{}.{}", parts[0], b64(&format!(r#"{{"pad":"{}"}}"#, "a".repeat(30_000))), parts[2]),
        provider.sign(&provider.claims(json!({"sub": "alice", "nonce": "n", "email": "alice@example.com",
            "email_verified": true}))),
        provider.sign(&provider.claims(json!({"sub": "alice", "jti": "j",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}))),
        provider.sign(&provider.claims(json!({"sub": "alice", "email": "alice@example.com", "email_verified": false}))),
        "a.b.c".to_owned(),
    ];
    for (i, token) in forged.iter().enumerate() {
        secrets.push(token.clone());
        let auth = [("authorization", format!("Bearer {token}"))];
        suite.check(&format!("envoy forged token {i}"), raw(app, "GET", "/api", &auth), |s| s == 401 || s == 403);
        let mut bridged = traefik("/api");
        bridged.push(auth[0].clone());
        suite.check(&format!("bridge forged token {i}"), raw(bridge, "GET", "/auth", &bridged), |s| {
            s == 401 || s == 403
        });
    }

    // A genuine token with hostile claims and spoofed identity headers: allowed, but the
    // upstream sees only authgate's, safely encoded, values.
    secrets.push(good.clone());
    let spoofed = [
        ("authorization", format!("Bearer {good}")),
        ("x-forwarded-user", "admin".to_owned()),
        ("remote-user", "admin".to_owned()),
        ("x-user-groups", "admins".to_owned()),
    ];
    let (status, text) = raw(app, "GET", "/api", &spoofed);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    let echoed: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    let headers = &echoed["headers"];
    suite.check("genuine token, hostile claims, spoofed headers", (status, text.clone()), |s| {
        s == 200
            && headers["x-forwarded-user"] == "svc@example.com"
            && headers.get("remote-user").is_none()
            && headers["x-user-groups"] == "viewers%2Cadmins"
            && !headers["x-user-name"].as_str().unwrap_or("\n").contains('\n')
    });

    // Forged back-channel logout tokens.
    let logout = |token: &str| {
        let body = format!("logout_token={token}");
        let mut stream = TcpStream::connect(bridge).unwrap();
        let request = format!(
            "POST /backchannel-logout HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        (response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), response)
    };
    let events = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    for (i, token) in [
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&json!({"sub": "alice", "events": events}).to_string())),
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &provider.claims(json!({"sub": "alice", "jti": "x", "events": events})),
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .unwrap(),
        provider.sign(&provider.claims(json!({"sub": "alice", "jti": "no-event"}))),
        provider.sign(&provider.claims(json!({"sub": "alice", "jti": "with-nonce", "nonce": "n", "events": events}))),
        "garbage".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        secrets.push(token.clone());
        suite.check(&format!("forged logout token {i}"), logout(token), |s| s == 400);
    }
    // The session survived all of that.
    assert_eq!(raw(app, "GET", "/private", &[("cookie", session.clone())]).0, 200, "{}", authgate.logs());

    // Nothing crashed, nothing leaked, nothing was written that should not be.
    let healthz = reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap();
    assert_eq!(healthz.status(), 200, "authgate is alive");
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    for key in keys.lines() {
        // The replicas' roll call (cache::peers): 16 hex digits of a hash, no secret.
        if key
            .strip_prefix("authgate-deployment:")
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            continue;
        }
        let shape = key.strip_prefix("authgate:").and_then(|rest| {
            let (kind, id) = rest.split_once(':')?;
            let id = id.strip_prefix("logout:").or_else(|| id.strip_prefix("refresh:")).unwrap_or(id);
            let hashed = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            (["session", "token", "replay", "logout", "lock"].contains(&kind) && hashed).then_some(kind)
        });
        assert!(shape.is_some(), "unexpected key in redis: {key}");
    }
    // Only the two genuine access tokens (one of them refused by policy afterwards) were
    // cached; no forged, confused or malformed token left an entry.
    let token_entries = keys.lines().filter(|k| k.starts_with("authgate:token:")).count();
    assert_eq!(token_entries, 2, "{keys}");
    let logs = authgate.logs();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!logs.contains(secret.as_str()), "a secret reached the log: {}…", &secret[..8]);
    }
    assert!(!logs.contains("panicked"), "{logs}");
    drop(envoy);
    println!("hostile: {} cases, {} failed", suite.cases, suite.failures.len());
    assert!(suite.failures.is_empty(), "{}", suite.failures.join("\n\n"));
}

fn header_of(response: &str, name: &str) -> Option<String> {
    response.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}
