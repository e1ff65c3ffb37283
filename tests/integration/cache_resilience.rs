//! Cross-replica and failure behaviour of the cache against real Redis processes: hybrid
//! invalidation between two instances, the circuit breaker around a killed Redis, timeouts
//! against a paused Redis, Sentinel failover while writing, and the pool's bounds.

use crate::cache_conformance::redis_config;
use crate::support::{RedisSentinels, RedisServer, SENTINEL_MASTER, redis_cli};
use authgate::cache::breaker::CircuitState;
use authgate::cache::hybrid::HybridStore;
use authgate::cache::memory::MemoryStore;
use authgate::cache::redis::RedisStore;
use authgate::cache::{CacheError, CacheSystem, Kind, Store};
use authgate::config::{CacheMode, Config, RedisConfig, Seconds};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn hybrid_pair(redis: &RedisServer) -> (Arc<HybridStore>, Arc<HybridStore>) {
    let config = redis_config(&redis.address());
    let start = || {
        let l2 = Arc::new(RedisStore::new(&config).unwrap());
        HybridStore::start(MemoryStore::new(1000, 8 << 20), l2, Duration::from_secs(60))
    };
    let (a, b) = (start(), start());
    crate::support::wait_until("hybrid subscriptions", async || a.is_subscribed() && b.is_subscribed()).await;
    (a, b)
}

#[tokio::test]
async fn a_delete_on_one_replica_reaches_the_other_replicas_l1() {
    let redis = RedisServer::start();
    let (a, b) = hybrid_pair(&redis).await;
    a.set("session:s1", b"alice", Duration::from_secs(60)).await.unwrap();
    // B reads it once: now it is in B's L1.
    assert_eq!(b.get("session:s1").await.unwrap().as_deref(), Some(&b"alice"[..]));
    let (_, tier) = b.fetch("session:s1").await.unwrap().unwrap();
    assert_eq!(tier, authgate::cache::Tier::Memory, "second read is an L1 hit");

    let deleted_at = Instant::now();
    assert!(a.delete("session:s1").await.unwrap());
    // The module states the bound: the pub/sub delivery time. Poll until B no longer
    // serves it, failing after one second.
    while b.get("session:s1").await.unwrap().is_some() {
        assert!(deleted_at.elapsed() < Duration::from_secs(1), "B still serves a deleted session");
        tokio::task::yield_now().await;
    }
    println!("hybrid invalidation reached the other replica in {:?}", deleted_at.elapsed());
    assert!(b.invalidations_received() >= 1);
}

#[tokio::test]
async fn a_write_on_one_replica_replaces_the_other_replicas_l1_copy() {
    let redis = RedisServer::start();
    let (a, b) = hybrid_pair(&redis).await;
    a.set("session:s2", b"v1", Duration::from_secs(60)).await.unwrap();
    b.get("session:s2").await.unwrap();
    b.get("session:s2").await.unwrap();
    let written_at = Instant::now();
    a.set("session:s2", b"v2", Duration::from_secs(60)).await.unwrap();
    while b.get("session:s2").await.unwrap().as_deref() != Some(&b"v2"[..]) {
        assert!(written_at.elapsed() < Duration::from_secs(1), "B kept serving the old value");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_l1_is_filled_with_the_remaining_ttl() {
    let redis = RedisServer::start();
    let (a, b) = hybrid_pair(&redis).await;
    a.set("token:t", b"v", Duration::from_millis(800)).await.unwrap();
    b.get("token:t").await.unwrap();
    let (_, remaining) = b.l1().get_with_ttl("token:t").await.unwrap().expect("in B's L1");
    assert!(remaining <= Duration::from_millis(800), "{remaining:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get("token:t").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the L1 copy outlived the Redis TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_claim_wins_across_two_replicas() {
    let redis = RedisServer::start();
    let config = redis_config(&redis.address());
    let a: Arc<dyn Store> = Arc::new(RedisStore::new(&config).unwrap());
    let b: Arc<dyn Store> = Arc::new(RedisStore::new(&config).unwrap());
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(
                async move { store.set_if_absent("replay:jti-1", b"x", Duration::from_secs(30)).await.unwrap() },
            )
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
}

fn system_config(redis: &RedisServer, mode: CacheMode, fallback: bool) -> Config {
    Config {
        redis: RedisConfig {
            cache_mode: Some(mode),
            circuit_breaker_threshold: 2,
            circuit_breaker_timeout: Seconds(Duration::from_millis(300)),
            memory_fallback: fallback,
            dial_timeout: Seconds(Duration::from_millis(500)),
            ..redis_config(&redis.address())
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn the_breaker_opens_when_redis_dies_serves_from_memory_and_closes_when_it_is_back() {
    let mut redis = RedisServer::start();
    for mode in [CacheMode::Redis, CacheMode::Hybrid] {
        let system = CacheSystem::start(&system_config(&redis, mode, true)).unwrap();
        let cache = system.cache();
        let breaker = system.breaker().cloned().unwrap();
        cache.set_raw(Kind::Session, "before", b"x", Duration::from_secs(60)).await.unwrap();
        assert_eq!(breaker.state(), CircuitState::Closed);

        redis.kill();
        // Requests keep being answered, from memory, while the breaker opens.
        for i in 0..5 {
            cache.set_raw(Kind::Session, &format!("during{i}"), b"y", Duration::from_secs(60)).await.unwrap();
        }
        assert_eq!(breaker.state(), CircuitState::Open, "{mode:?}");
        assert_eq!(cache.get_raw(Kind::Session, "during0").await.unwrap().as_deref(), Some(&b"y"[..]));
        assert!(system.degraded());
        assert_eq!(system.status().breaker.map(|b| b.state), Some(CircuitState::Open));

        redis.restart();
        crate::support::wait_until("breaker closed", async || breaker.state() == CircuitState::Closed).await;
        cache.set_raw(Kind::Session, "after", b"z", Duration::from_secs(60)).await.unwrap();
        let keys = redis.cli(&["KEYS", "*session:after"]);
        assert!(keys.contains("session:after"), "writes go to redis again ({mode:?}): {keys:?}");
        assert!(breaker.transitions() >= 3);
    }
}

#[tokio::test]
async fn without_fallback_an_open_breaker_is_an_error_and_not_ready() {
    let mut redis = RedisServer::start();
    let system = CacheSystem::start(&system_config(&redis, CacheMode::Redis, false)).unwrap();
    redis.kill();
    for _ in 0..2 {
        assert!(system.cache().get_raw(Kind::Session, "x").await.is_err());
    }
    assert_eq!(system.cache().get_raw(Kind::Session, "x").await.unwrap_err(), CacheError::BreakerOpen);
    assert!(system.unready_reason().unwrap().contains("memoryFallback is false"));
}

#[tokio::test]
async fn operations_on_a_paused_redis_end_within_the_read_timeout() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis.address());
    config.read_timeout = Seconds(Duration::from_millis(300));
    config.max_retries = 3;
    let store = RedisStore::new(&config).unwrap();
    store.set("k", b"v", Duration::from_secs(60)).await.unwrap();
    redis.signal("STOP");
    let started = Instant::now();
    let result = store.get("k").await;
    let elapsed = started.elapsed();
    redis.signal("CONT");
    assert_eq!(result, Err(CacheError::Timeout(Duration::from_millis(300))));
    // readTimeout plus a margin for scheduling; timeouts are never retried.
    assert!(elapsed < Duration::from_millis(300 + 400), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(300), "returned before the timeout: {elapsed:?}");
    // And the store recovers on a fresh connection once Redis answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get("k").await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
    }
}

#[tokio::test]
async fn the_pool_never_opens_more_than_pool_size_connections() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis.address());
    config.pool_size = 3;
    config.min_idle_conns = 2;
    let store = Arc::new(RedisStore::new(&config).unwrap());
    let before: usize = redis.cli(&["CLIENT", "LIST"]).lines().count();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.set(&format!("p{i}"), b"v", Duration::from_secs(30)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let ours = redis.cli(&["CLIENT", "LIST"]).lines().count() - before;
    assert!((1..=3).contains(&ours), "{ours} connections for poolSize 3");
    let figures = store.pool_figures();
    assert!(figures.total <= 3 && figures.total >= 1, "{figures:?}");
}

#[tokio::test]
async fn sentinel_failover_is_followed_while_writing() {
    let sentinels = RedisSentinels::start();
    let mut config = redis_config("unused:1");
    config.sentinel.master_name = SENTINEL_MASTER.into();
    config.sentinel.addresses = sentinels.addresses();
    config.read_timeout = Seconds(Duration::from_millis(500));
    let store = Arc::new(RedisStore::new(&config).unwrap());
    store.set("before", b"1", Duration::from_secs(60)).await.unwrap();
    let old_master = sentinels.master.port;

    // Write continuously while a failover happens.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut errors: Vec<Instant> = Vec::new();
            let mut messages: Vec<String> = Vec::new();
            let mut last_ok = None;
            let started = Instant::now();
            let mut i = 0u64;
            while started.elapsed() < Duration::from_secs(12) {
                match store.set(&format!("w{i}"), b"v", Duration::from_secs(60)).await {
                    Ok(()) => last_ok = Some(i),
                    Err(e) => {
                        errors.push(Instant::now());
                        messages.push(e.to_string());
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (errors, messages, last_ok, i)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failover_at = Instant::now();
    let reply = redis_cli(sentinels.sentinels[0].port, &["SENTINEL", "FAILOVER", SENTINEL_MASTER]);
    assert!(reply.contains("OK"), "{reply}");
    crate::support::wait_until("new master", async || sentinels.current_master_port() != old_master).await;
    let (errors, messages, last_ok, attempts) = writer.await.unwrap();
    assert_eq!(sentinels.current_master_port(), sentinels.replica.port);
    // Errors, if any, only inside the failover window (the switch plus one readTimeout
    // and the time to find the new master); none afterwards.
    let window_end = failover_at + Duration::from_secs(5);
    let offsets: Vec<String> =
        errors.iter().map(|t| format!("{:?}", t.saturating_duration_since(failover_at))).collect();
    assert!(
        errors.iter().all(|t| *t >= failover_at && *t <= window_end),
        "{} errors, some outside the window (after the failover request: {offsets:?}): {messages:?}",
        errors.len()
    );
    println!("sentinel failover: {} of {attempts} writes failed, all within the window", errors.len());
    let last = last_ok.expect("writes succeeded");
    assert_eq!(last, attempts - 1, "the last writes succeeded");
    // Data written after the failover is readable, from the new master.
    assert_eq!(store.get(&format!("w{last}")).await.unwrap().as_deref(), Some(&b"v"[..]));
    let on_new_master = redis_cli(sentinels.replica.port, &["EXISTS", &format!("{}:w{last}", config.key_prefix)]);
    assert_eq!(on_new_master.trim(), "1");
}

/// Hybrid L1s remember that a logout marker is absent, and the write of the marker on
/// another replica reaches them like any other invalidation.
#[tokio::test]
async fn a_known_absent_marker_is_invalidated_by_its_write_on_another_replica() {
    let redis = RedisServer::start();
    let config = redis_config(&redis.address());
    let start = || {
        let l2 = Arc::new(RedisStore::new(&config).unwrap());
        HybridStore::start_remembering_absent(
            MemoryStore::new(1000, 8 << 20),
            l2,
            Duration::from_secs(60),
            vec!["logout:".into()],
        )
    };
    let (a, b) = (start(), start());
    crate::support::wait_until("hybrid subscriptions", async || a.is_subscribed() && b.is_subscribed()).await;

    assert_eq!(b.get("logout:sid1").await.unwrap(), None);
    assert_eq!(b.fetch_local("logout:sid1"), Some(None), "B now knows the marker is absent");
    assert_eq!(b.fetch_local("session:x"), None, "absence is remembered only for the named prefixes");
    b.get("session:x").await.unwrap();
    assert_eq!(b.fetch_local("session:x"), None);

    let written_at = Instant::now();
    a.set("logout:sid1", b"revoked", Duration::from_secs(60)).await.unwrap();
    while b.get("logout:sid1").await.unwrap().is_none() {
        assert!(written_at.elapsed() < Duration::from_secs(1), "B kept the stale absence");
        tokio::task::yield_now().await;
    }
    println!("a logout marker reached the other replica's L1 in {:?}", written_at.elapsed());
}

/// A paused Redis (SIGSTOP: sockets stay open, nothing answers) does not stall a hybrid
/// replica's session requests: the session and the absence of its logout markers come from
/// L1 without a Redis round trip, and those L1 answers neither reset the breaker's failure
/// count nor get refused while it is open.
#[tokio::test]
async fn a_hybrid_replica_serves_warm_sessions_through_a_redis_pause() {
    let redis = RedisServer::start();
    let mut config = system_config(&redis, CacheMode::Hybrid, true);
    config.redis.read_timeout = Seconds(Duration::from_millis(200));
    config.redis.circuit_breaker_timeout = Seconds(Duration::from_secs(30));
    let system = CacheSystem::start(&config).unwrap();
    let hybrid = system.hybrid().cloned().unwrap();
    crate::support::wait_until("subscribed", async || hybrid.is_subscribed()).await;
    let cache = system.cache();
    let breaker = system.breaker().cloned().unwrap();
    cache.set_raw(Kind::Session, "warm", b"record", Duration::from_secs(60)).await.unwrap();
    // Warm: the session and its marker's absence.
    assert!(cache.get_raw(Kind::Session, "warm").await.unwrap().is_some());
    assert!(cache.get_json::<String>(Kind::Logout, "sid:warm").await.unwrap().is_none());

    redis.signal("STOP");
    // A miss goes to Redis and times out: failures count...
    for i in 0..2 {
        let _ = cache.get_raw(Kind::Session, &format!("cold{i}")).await;
        // ...and L1 hits in between do not reset the count.
        let started = Instant::now();
        assert!(cache.get_raw(Kind::Session, "warm").await.unwrap().is_some());
        assert!(cache.get_json::<String>(Kind::Logout, "sid:warm").await.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_millis(50), "an L1 answer waited on redis: {:?}", started.elapsed());
    }
    assert_eq!(breaker.state(), CircuitState::Open, "two timeouts open the breaker (threshold 2)");
    // With the breaker open, L1 still answers (not the empty memory fallback).
    let started = Instant::now();
    assert!(cache.get_raw(Kind::Session, "warm").await.unwrap().is_some());
    assert!(cache.get_json::<String>(Kind::Logout, "sid:warm").await.unwrap().is_none());
    let took = started.elapsed();
    // An unknown marker cannot be looked up: an error, never "not revoked".
    assert!(cache.get_json::<String>(Kind::Logout, "sid:unknown").await.is_err());
    redis.signal("CONT");
    assert!(took < Duration::from_millis(50), "{took:?}");
}

/// Each kind of Redis trouble that a real server can be made to show is named by its class
/// (the label of `authgate_redis_errors_total` and `/healthz`'s `error_class`).
#[tokio::test]
async fn redis_trouble_is_named_by_its_class() {
    use authgate::cache::ErrorClass;
    // Nothing listens.
    let port = crate::support::free_port();
    let store = RedisStore::new(&redis_config(&format!("127.0.0.1:{port}"))).unwrap();
    assert!(store.health().await.is_err());
    assert_eq!(store.error_class(), Some(ErrorClass::ConnectionRefused));

    // An ACL user without the permission for a command authgate needs.
    let redis = RedisServer::start();
    redis.cli(&["ACL", "SETUSER", "limited", "on", ">limited-pw", "~*", "&*", "+@all", "-set"]);
    let mut config = redis_config(&redis.address());
    config.username = "limited".into();
    config.password = authgate::config::Secret::new("limited-pw");
    let store = RedisStore::new(&config).unwrap();
    assert!(matches!(store.set("k", b"v", Duration::from_secs(5)).await, Err(CacheError::Refused(_))));
    assert_eq!(store.error_class(), Some(ErrorClass::NoPerm));
    // And a success clears it.
    store.health().await.unwrap();
    assert_eq!(store.error_class(), None);

    // A replica refuses writes (what a client stuck on a demoted master sees).
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &redis.port.to_string()]);
    let store = RedisStore::new(&redis_config(&replica.address())).unwrap();
    assert!(matches!(store.set("k", b"v", Duration::from_secs(5)).await, Err(CacheError::NotServing(_))));
    assert_eq!(store.error_class(), Some(ErrorClass::ReadOnly));

    // TLS to a server whose certificate we do not trust.
    let tls = crate::support::TlsFiles::generate();
    let tls_redis = RedisServer::start_tls(&tls);
    let mut config = redis_config(&tls_redis.address());
    config.tls.enabled = true;
    let store = RedisStore::new(&config).unwrap();
    assert!(store.health().await.is_err());
    assert_eq!(store.error_class(), Some(ErrorClass::Tls), "{:?}", store.last_error());
}

/// A warm hybrid session reads only its record: its logout markers are read again only
/// when a marker may have been written (the absence epoch moved). A logout on another
/// replica, heard over pub/sub, ends it at once; a marker written behind pub/sub's back is
/// seen as soon as the subscription is re-established.
#[tokio::test]
async fn a_warm_hybrid_session_skips_its_marker_reads_until_a_marker_is_written() {
    use authgate::claims::Claims;
    use authgate::session::{Cipher, Purpose, SessionRecord, Sessions};
    let redis = RedisServer::start();
    let mut config = system_config(&redis, CacheMode::Hybrid, true);
    config.session_encryption_key = authgate::config::Secret::new(crate::support::random_hex(32));
    let replica = || {
        let system = CacheSystem::start(&config).unwrap();
        let cipher = Arc::new(Cipher::new(&config, Purpose::SessionRecord));
        let sessions = Sessions::new(system.cache().clone(), cipher, Duration::from_secs(600));
        (system, sessions)
    };
    let ((a_system, a), (b_system, b)) = (replica(), replica());
    crate::support::wait_until("subscriptions", async || {
        a_system.hybrid().unwrap().is_subscribed() && b_system.hybrid().unwrap().is_subscribed()
    })
    .await;
    let mut claims = Claims::new();
    claims.insert("sub".into(), serde_json::json!("alice"));
    claims.insert("sid".into(), serde_json::json!("provider-session-1"));
    let record = SessionRecord {
        claims,
        id_token: "id".into(),
        access_token: "access".into(),
        refresh_token: None,
        access_expires_at: authgate::clock::now() + 600,
        created_at: authgate::clock::now(),
    };
    let marker_reads = |system: &CacheSystem| system.cache().stats().requests(Kind::Logout);

    // Two sessions of alice (two provider sessions), served by B.
    let first = a.create(&record).await.unwrap();
    let mut other = record.clone();
    other.claims.insert("sid".into(), serde_json::json!("provider-session-2"));
    let second = a.create(&other).await.unwrap();
    assert!(b.load(&first).await.unwrap().is_some());
    let after_first_load = marker_reads(&b_system);
    assert_eq!(after_first_load, 2, "sid and sub markers read once");
    for _ in 0..10 {
        assert!(b.load(&first).await.unwrap().is_some());
    }
    assert_eq!(marker_reads(&b_system), after_first_load, "no marker read while nothing was written");

    // A back-channel logout of the provider session on A: B hears of it and rereads.
    a.end_provider_session(Some("provider-session-1"), None).await.unwrap();
    let logged_out = Instant::now();
    while b.load(&first).await.unwrap().is_some() {
        assert!(logged_out.elapsed() < Duration::from_secs(1), "B kept serving a logged-out session");
        tokio::task::yield_now().await;
    }

    // A marker written straight into Redis (no invalidation published): B cannot know...
    assert!(b.load(&second).await.unwrap().is_some());
    let direct = RedisStore::new(&config.redis).unwrap();
    let sub_marker = format!("logout:sub:{}", authgate::cache::token_key("alice"));
    let value = authgate::cache::value::encode_json(Kind::Logout, &authgate::clock::now().to_string()).unwrap();
    direct.set(&sub_marker, &value, Duration::from_secs(600)).await.unwrap();
    // ...until its subscription drops and comes back (messages may have been lost).
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let killed = Instant::now();
    while b.load(&second).await.unwrap().is_some() {
        assert!(killed.elapsed() < Duration::from_secs(5), "a resubscribed replica trusted an old absence");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
