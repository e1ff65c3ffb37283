//! Faults under steady load on three replicas behind a balanced Envoy: each test prints
//! the errors and latencies before, during and after the fault and the time to recover,
//! and asserts what PRODUCT.md promises a user experiences.
//!
//! What a user experiences, fault by fault (the figures are printed by each test):
//! - Redis paused (SIGSTOP): in hybrid mode nothing: warm sessions are answered from the
//!   L1s. In redis mode session requests are answered at once (never held) but as
//!   "not logged in" (401) while the breaker is open, and normally again once it closes.
//! - Redis killed and restarted empty: requests are answered at once (401/503) during the
//!   outage; sessions kept in Redis are gone with it, so users log in again; the replicas
//!   go back to Redis by themselves, and a new login works on every replica.
//! - Sentinel failover, Cluster primary killed: errors only within the failover window.
//! - The provider down: existing sessions and bearer tokens (cached keys) keep working; a
//!   login that reaches its callback gets authgate's error page within `providerTimeout`.
//! - Provider key rotation: a token signed with the new key is accepted after one refetch.
//! - authgate SIGTERM: no request is dropped (health turns NOT_SERVING, Envoy stops
//!   sending, the replica drains, then exits).

use crate::support::load::Load;
use crate::support::stack::{Stack, StackBuilder};
use crate::support::{RedisCluster, RedisSentinels, SENTINEL_MASTER, browser_login, browser_with_jar};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A deployment with `users` logged in, every session read twice on every replica (so
/// each hybrid L1 holds it).
struct Deployment {
    stack: Stack,
    cookies: Arc<Vec<String>>,
}

async fn deployment(builder: StackBuilder, users: usize) -> Deployment {
    let stack = builder.replicas(3).balanced().key("logLevel", "info").key("userIdentifierClaim", "sub").start().await;
    let mut cookies = Vec::new();
    for i in 0..users {
        let (browser, jar) = browser_with_jar();
        let (_, response) = browser_login(&browser, &stack.url("/private"), &format!("steady{i}")).await;
        assert_eq!(response.status(), 200);
        cookies.push(stack.cookie(&jar));
    }
    for cookie in &cookies {
        for replica in &stack.replicas {
            for _ in 0..2 {
                assert_eq!(replica.bridge("/private", cookie).await.status(), 200);
            }
        }
    }
    Deployment { stack, cookies: Arc::new(cookies) }
}

/// Eight workers sending session requests through Envoy, cycling over the sessions.
fn session_load(d: &Deployment) -> Load {
    let (url, cookies) = (d.stack.url("/private"), d.cookies.clone());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    Load::start(8, move |worker, n| {
        let request = client
            .get(&url)
            .header("accept", "application/json")
            .header("cookie", &cookies[(worker * 7 + n as usize) % cookies.len()])
            .send();
        async move { request.await.map_or(0, |r| r.status().as_u16()) }
    })
}

async fn run_for(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Waits until every replica's breaker is closed; returns how long that took.
async fn breakers_closed(stack: &Stack, within: Duration) -> Duration {
    let started = Instant::now();
    for replica in &stack.replicas {
        let url = format!("http://{}/healthz", replica.admin);
        loop {
            let health: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            if health["cache"]["circuit_breaker"]["state"] == "closed" && health["cache"]["redis"]["connected"] == true
            {
                break;
            }
            assert!(started.elapsed() < within, "breaker still {health}\n{}", stack.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

async fn redis_paused(mode: &str) {
    let mut d = deployment(Stack::builder().cache(mode), 12).await;
    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    let redis = d.stack.redis.as_mut().unwrap();
    let start = load.now();
    redis.signal("STOP");
    run_for(Duration::from_secs(5)).await;
    redis.signal("CONT");
    let end = load.now();
    let closed = breakers_closed(&d.stack, Duration::from_secs(20)).await;
    run_for(Duration::from_secs(1)).await;
    let samples = load.finish().await;
    let figures = samples.fault(&format!("redis paused 5 s ({mode} mode)"), start, end);
    println!("  breakers closed on all replicas {closed:.1?} after SIGCONT");
    for line in
        d.stack.replicas[0].logs().lines().filter(|l| l.contains("redis failing") || l.contains("Circuit breaker"))
    {
        println!("  replica 0: {line}");
    }
    // Every request was answered, none held until the proxy gave up (3 s).
    assert!(figures.during.max < Duration::from_millis(1500), "{figures:?}");
    if mode == "hybrid" {
        assert_eq!(samples.errors(), 0, "hybrid rides out a pause: {:?}\n{}", samples.error_statuses(), d.stack.logs());
    } else {
        // A session not found in the (empty) fallback is a 401; one whose logout markers
        // could not be read is a 503: never an allow, never a hang.
        assert!(samples.error_statuses().keys().all(|s| [401, 503].contains(s)), "{:?}", samples.error_statuses());
        assert!(figures.recovery <= closed + Duration::from_secs(1), "{figures:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_pause_under_load_in_hybrid_mode() {
    redis_paused("hybrid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_pause_under_load_in_redis_mode() {
    redis_paused("redis").await;
}

async fn redis_killed_and_restarted_empty(mode: &str) {
    let mut d = deployment(Stack::builder().cache(mode), 12).await;
    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    let start = load.now();
    d.stack.redis.as_mut().unwrap().kill();
    run_for(Duration::from_secs(3)).await;
    d.stack.redis.as_mut().unwrap().restart();
    let end = load.now();
    let closed = breakers_closed(&d.stack, Duration::from_secs(20)).await;
    let samples = load.finish().await;
    let figures = samples.fault(&format!("redis killed 3 s, restarted empty ({mode} mode)"), start, end);
    println!(
        "  breakers closed on all replicas {closed:.1?} after the restart; the sessions were in Redis: users log in again"
    );
    assert!(figures.during.max < Duration::from_millis(1500), "answered, not held: {figures:?}");
    assert!(samples.error_statuses().keys().all(|s| [401, 503].contains(s)), "{:?}", samples.error_statuses());
    for replica in &d.stack.replicas {
        assert!(replica.logs().contains("Redis connection restored"), "{}", replica.logs());
    }
    // A new login works and is known to every replica.
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &d.stack.url("/private"), "after-restart").await;
    assert_eq!(response.status(), 200);
    let cookie = d.stack.cookie(&jar);
    for replica in &d.stack.replicas {
        assert_eq!(replica.bridge("/private", &cookie).await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_in_hybrid_mode() {
    redis_killed_and_restarted_empty("hybrid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_in_redis_mode() {
    redis_killed_and_restarted_empty("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load() {
    let sentinels = RedisSentinels::start();
    let addresses = sentinels.sentinels.iter().map(|s| format!("\"{}\"", s.address())).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        "redis:\n  enabled: true\n  cacheMode: hybrid\n  sentinel:\n    masterName: {SENTINEL_MASTER}\n    addresses: [{addresses}]\n"
    );
    let d = deployment(Stack::builder().cache("hybrid").redis_yaml(&yaml), 12).await;
    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    let start = load.now();
    let old_master = sentinels.current_master_port();
    crate::support::redis_cli(sentinels.sentinels[0].port, &["SENTINEL", "FAILOVER", SENTINEL_MASTER]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinels.current_master_port() == old_master {
        assert!(Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = load.now();
    // Writes land on the new master: a new login works everywhere.
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &d.stack.url("/private"), "after-failover").await;
    assert_eq!(response.status(), 200, "{}", d.stack.logs());
    let cookie = d.stack.cookie(&jar);
    for replica in &d.stack.replicas {
        assert_eq!(replica.bridge("/private", &cookie).await.status(), 200);
    }
    run_for(Duration::from_secs(2)).await;
    let samples = load.finish().await;
    let figures = samples.fault("sentinel failover (hybrid mode)", start, end);
    assert_eq!(figures.after.errors, 0, "{figures:?}");
    assert!(figures.during.max < Duration::from_millis(1500), "{figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_under_load() {
    let mut cluster = RedisCluster::start();
    let yaml =
        format!("redis:\n  enabled: true\n  cacheMode: redis\n  clusterMode: true\n  address: {}\n", cluster.address());
    let d = deployment(Stack::builder().cache("redis").redis_yaml(&yaml), 12).await;
    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    // A primary whose slots hold some of the sessions.
    let primary = cluster
        .nodes
        .iter()
        .position(|n| n.cli(&["INFO", "replication"]).contains("role:master") && n.cli(&["DBSIZE"]).trim() != "0")
        .expect("a primary with keys");
    let start = load.now();
    cluster.nodes[primary].kill();
    let survivor = (primary + 1) % cluster.nodes.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Failed over: the killed node is marked failed and the cluster serves every slot again.
    loop {
        let nodes = cluster.nodes[survivor].cli(&["CLUSTER", "NODES"]);
        let info = cluster.nodes[survivor].cli(&["CLUSTER", "INFO"]);
        if nodes.contains("master,fail") && info.contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < deadline, "no cluster failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = load.now();
    let closed = breakers_closed(&d.stack, Duration::from_secs(30)).await;
    run_for(Duration::from_secs(4)).await;
    let samples = load.finish().await;
    let figures = samples.fault("cluster primary killed (redis mode)", start, end);
    println!("  breakers closed on all replicas {closed:.1?} after the failover");
    // Once the replica has taken over and the clients have the new slot map (they refresh
    // it on the first errors, within a few seconds), nothing fails.
    let late = samples.window(end + Duration::from_secs(3), load_end(&samples));
    assert_eq!(late.errors, 0, "{figures:?} / after the breakers closed: {late}");
    assert!(figures.during.max < Duration::from_millis(2500), "{figures:?}");
    assert!(samples.error_statuses().keys().all(|s| [401, 503].contains(s)), "{:?}", samples.error_statuses());
}

fn load_end(samples: &crate::support::load::Samples) -> Duration {
    samples.0.last().map_or(Duration::ZERO, |s| s.at + Duration::from_millis(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_down_under_load() {
    let d = deployment(Stack::builder().cache("hybrid"), 12).await;
    let bearer = d.stack.idp.client_credentials_token().await;
    let client = reqwest::Client::new();
    let api = |token: &str| client.get(d.stack.url("/api")).header("authorization", format!("Bearer {token}")).send();
    assert_eq!(api(&bearer).await.unwrap().status(), 200);
    // A login that has come back from the provider with its code, not yet redeemed.
    let (browser, _jar) = browser_with_jar();
    let callback = crate::support::login_until_callback(
        &browser,
        &d.stack.url("/private"),
        "late",
        &d.stack.url("/oauth2/callback"),
    )
    .await;

    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    let start = load.now();
    d.stack.idp.signal("STOP");
    run_for(Duration::from_millis(500)).await;
    // Bearer tokens keep validating with the cached keys, on every replica.
    for _ in 0..6 {
        assert_eq!(api(&bearer).await.unwrap().status(), 200);
    }
    // The callback needs the token endpoint: authgate's error page, within providerTimeout.
    let sent = Instant::now();
    let response = browser.get(&callback).send().await.unwrap();
    let took = sent.elapsed();
    let status = response.status();
    let body = response.text().await.unwrap();
    run_for(Duration::from_secs(2)).await;
    d.stack.idp.signal("CONT");
    let end = load.now();
    run_for(Duration::from_secs(1)).await;
    let samples = load.finish().await;
    samples.fault("provider stopped (SIGSTOP) 3.5 s (hybrid mode)", start, end);
    println!("  a login's callback during the outage: {status} after {took:.1?}: {body:?}");
    assert_eq!(samples.errors(), 0, "existing sessions keep working: {:?}", samples.error_statuses());
    assert_eq!(status, 503);
    assert!(body.contains("temporarily unavailable"), "authgate's page, not the proxy's timeout: {body:?}");
    assert!(took < Duration::from_millis(2900), "bounded by providerTimeout (2 s): {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_rotation_under_load() {
    let mut d = deployment(Stack::builder().cache("redis").provider_keys(), 6).await;
    let client = reqwest::Client::new();
    let old = d.stack.idp.client_credentials_token().await;
    let load = session_load(&d);
    run_for(Duration::from_millis(500)).await;
    let start = load.now();
    // The provider rotates: a new key signs, the old one is still published.
    d.stack.idp.restart(&[("IDP_KIDS", "key-2,key-1")]).await;
    let new = d.stack.idp.client_credentials_token().await;
    let header: serde_json::Value = {
        use base64::Engine;
        let part = new.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(header["kid"], "key-2");
    // Three requests round-robin over the three replicas: each refetches once and accepts.
    for token in [&new, &new, &new, &old, &new, &old] {
        let status = client
            .get(d.stack.url("/api"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{}", d.stack.logs());
    }
    let end = load.now();
    run_for(Duration::from_millis(500)).await;
    let samples = load.finish().await;
    samples.fault("provider key rotation (redis mode)", start, end);
    assert_eq!(samples.errors(), 0, "{:?}", samples.error_statuses());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_drops_nothing() {
    // Envoy health-checks every second and marks a replica down on one failure: a drain
    // delay of two seconds covers it.
    let mut d = deployment(Stack::builder().cache("hybrid").key("drainDelay", "2s"), 12).await;
    let load = session_load(&d);
    run_for(Duration::from_secs(1)).await;
    let start = load.now();
    d.stack.replicas[1].send_sigterm();
    let status = tokio::task::block_in_place(|| d.stack.replicas[1].wait_exit());
    let end = load.now();
    run_for(Duration::from_secs(1)).await;
    let samples = load.finish().await;
    samples.fault("one replica of three stopped with SIGTERM (hybrid mode)", start, end);
    assert!(status.success(), "{status}");
    assert_eq!(samples.errors(), 0, "{:?}\n{}", samples.error_statuses(), d.stack.logs());
}
