//! The admin listener: `/healthz`, `/readyz`, `/metrics`.

use crate::support::Authgate;

#[tokio::test]
async fn healthz_reports_the_seeds_json() {
    let authgate = Authgate::builder().start().await;
    let response = reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap();
    assert_eq!(response.status(), 200);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["cache"]["mode"], "memory");
    assert!(health["cache"]["memory"]["entries"].is_u64(), "{health}");
    assert!(health["cache"]["memory"]["size"].is_string(), "{health}");
}

#[tokio::test]
async fn readyz_and_metrics_answer() {
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    let authgate = Authgate::builder().key("providerURL", &idp.issuer()).start().await;
    authgate.wait_ready().await;
    let metrics = reqwest::get(format!("http://{}/metrics", authgate.admin)).await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let missing = reqwest::get(format!("http://{}/nope", authgate.admin)).await.unwrap();
    assert_eq!(missing.status(), 404);
}

async fn healthz(authgate: &Authgate) -> serde_json::Value {
    reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn healthz_follows_redis_down_and_back_with_the_seeds_log_lines() {
    let mut redis = crate::support::RedisServer::start();
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .yaml(&format!(
            "redis:\n  enabled: true\n  address: {}\n  cacheMode: hybrid\n  circuitBreakerThreshold: 2\n  circuitBreakerTimeout: 1\n  dialTimeout: 1",
            redis.address()
        ))
        .start()
        .await;
    crate::support::wait_until("redis connected in /healthz", async || {
        healthz(&authgate).await["cache"]["redis"]["connected"] == true
    })
    .await;
    let health = healthz(&authgate).await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["cache"]["mode"], "hybrid");
    assert_eq!(health["cache"]["circuit_breaker"]["state"], "closed");
    assert!(health["cache"]["redis"]["pool"]["total"].as_u64().unwrap() >= 1, "{health}");
    assert!(health["cache"]["redis"]["latency"].as_str().unwrap().ends_with('s'), "{health}");

    redis.kill();
    crate::support::wait_until("breaker open", async || {
        healthz(&authgate).await["cache"]["circuit_breaker"]["state"] == "open"
    })
    .await;
    let health = healthz(&authgate).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["cache"]["redis"]["connected"], false);
    // Serving from memory is still ready.
    authgate.wait_ready().await;

    redis.restart();
    crate::support::wait_until("breaker closed", async || {
        healthz(&authgate).await["cache"]["circuit_breaker"]["state"] == "closed"
    })
    .await;
    let logs = authgate.logs();
    for line in [
        "Redis cache initialized",
        "Circuit breaker opened",
        "Falling back to memory cache",
        "Redis connection restored",
    ] {
        assert!(logs.contains(line), "missing log line {line:?}:\n{logs}");
    }
    assert_eq!(logs.matches("Circuit breaker opened").count(), 1, "a state change is logged once:\n{logs}");
}

#[tokio::test]
async fn readyz_fails_while_the_breaker_is_open_without_fallback() {
    let mut redis = crate::support::RedisServer::start();
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .yaml(&format!(
            "redis:\n  enabled: true\n  address: {}\n  cacheMode: redis\n  memoryFallback: false\n  circuitBreakerThreshold: 1\n  circuitBreakerTimeout: 30",
            redis.address()
        ))
        .start()
        .await;
    let readyz = format!("http://{}/readyz", authgate.admin);
    authgate.wait_ready().await;
    redis.kill();
    crate::support::wait_until("not ready", async || reqwest::get(&readyz).await.unwrap().status() == 503).await;
    let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
    assert!(body["reasons"][0].as_str().unwrap().contains("memoryFallback is false"), "{body}");
}

/// A wrong Redis password (or none where one is required) is a configuration error: logged
/// with its cause, shown in `/healthz`, and `/readyz` fails, rather than a replica quietly
/// running from memory.
#[tokio::test]
async fn a_wrong_redis_password_is_named_and_fails_readiness() {
    let redis = crate::support::RedisServer::start_with(&["--requirepass", "the-right-one"]);
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    for password in ["  password: the-wrong-one\n", ""] {
        let authgate = Authgate::builder()
            .key("providerURL", &idp.issuer())
            .yaml(&format!("redis:\n  enabled: true\n  address: {}\n  cacheMode: redis\n{password}", redis.address()))
            .start()
            .await;
        let readyz = format!("http://{}/readyz", authgate.admin);
        crate::support::wait_until("readiness naming the refusal", async || {
            let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
            body["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r.as_str().unwrap().contains("refuses")))
        })
        .await;
        assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
        let health: serde_json::Value =
            reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap().json().await.unwrap();
        assert!(health["cache"]["redis"]["error"].as_str().unwrap().contains("refuses"), "{health}");
        let logs = authgate.logs();
        assert_eq!(logs.matches("redis failing").count(), 1, "logged once, with its cause:\n{logs}");
        assert!(logs.contains("class=\"auth\""), "the class is named:\n{logs}");
        assert_eq!(health["cache"]["redis"]["error_class"], "auth", "{health}");
        assert!(!logs.contains("the-wrong-one"), "the password is never logged");
    }
}

/// A server older than Redis 6 fails authgate's RESP3 handshake (`HELLO 3`): authgate
/// names the version it needs and is not ready, instead of running from memory.
///
/// This is the one test with a stand-in for Redis: no Redis 5 can be installed here, so a
/// TCP listener answers every command the way Redis 5 answers `HELLO`.
#[tokio::test]
async fn a_redis_older_than_6_is_refused_with_the_version_needed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                let (read, mut write) = socket.split();
                let mut lines = BufReader::new(read).lines();
                // Each command is an array header `*N` and N bulk strings (`$len`, data).
                while let Ok(Some(header)) = lines.next_line().await {
                    let Some(count) = header.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else { continue };
                    let mut args = Vec::new();
                    for _ in 0..count {
                        let (Ok(Some(_)), Ok(Some(arg))) = (lines.next_line().await, lines.next_line().await) else {
                            return;
                        };
                        args.push(arg);
                    }
                    let reply = if args.first().is_some_and(|a| a.eq_ignore_ascii_case("HELLO")) {
                        "-ERR unknown command 'HELLO', with args beginning with: '3' \r\n".to_owned()
                    } else {
                        format!("-ERR Unknown subcommand or wrong number of arguments for '{}'\r\n", args.join(" "))
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    let authgate = Authgate::builder()
        .key("providerURL", &idp.issuer())
        .yaml(&format!("redis:\n  enabled: true\n  address: {address}\n  cacheMode: hybrid\n"))
        .start()
        .await;
    let readyz = format!("http://{}/readyz", authgate.admin);
    crate::support::wait_until("readiness naming the version", async || {
        let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
        body["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r.as_str().unwrap().contains("Redis 6.0 or later")))
    })
    .await;
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
    let health: serde_json::Value =
        reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap().json().await.unwrap();
    assert_eq!(health["cache"]["redis"]["error_class"], "unsupported_version", "{health}");
    let logs = authgate.logs();
    assert_eq!(logs.matches("redis failing").count(), 1, "{logs}");
    assert!(logs.contains("Redis 6.0 or later is needed"), "{logs}");
    server.abort();
}

/// Replicas of one deployment that disagree on `cacheMode` or `keyPrefix` share Redis but
/// not each other's guarantees; each replica's roll call finds them and says so.
#[tokio::test]
async fn replicas_disagreeing_on_mode_or_prefix_are_reported() {
    let redis = crate::support::RedisServer::start();
    let idp = crate::support::Idp::start("http://127.0.0.1:1", &[]).await;
    let replica = |mode: &str, prefix: &str| {
        Authgate::builder().key("providerURL", &idp.issuer()).yaml(&format!(
            "redis:\n  enabled: true\n  address: {}\n  cacheMode: {mode}\n  keyPrefix: {prefix}\n",
            redis.address()
        ))
    };
    let hybrid = replica("hybrid", "authgate").start().await;
    let agreeing = replica("hybrid", "authgate").start().await;
    let health = async |authgate: &Authgate| -> serde_json::Value {
        reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap().json().await.unwrap()
    };
    crate::support::wait_until("the second replica sees the first", async || {
        health(&agreeing).await["cache"]["replicas"]["seen"] == 1
    })
    .await;
    assert_eq!(health(&agreeing).await["cache"]["replicas"]["disagreeing"], serde_json::json!([]));

    let redis_mode = replica("redis", "authgate").start().await;
    let other_prefix = replica("hybrid", "elsewhere").start().await;
    crate::support::wait_until("the newest replica sees the other three", async || {
        health(&other_prefix).await["cache"]["replicas"]["seen"] == 3
    })
    .await;
    let report = health(&other_prefix).await;
    assert_eq!(
        report["cache"]["replicas"]["disagreeing"],
        serde_json::json!(["hybrid authgate", "hybrid authgate", "redis authgate"]),
        "{report}"
    );
    let logs = other_prefix.logs();
    assert!(logs.contains("disagree on redis.cacheMode or redis.keyPrefix"), "{logs}");
    let logs = redis_mode.logs();
    assert!(logs.contains("disagree on redis.cacheMode or redis.keyPrefix"), "{logs}");
    drop(hybrid);
}
