//! One conformance suite, run against every backend: memory, Redis (plain and TLS with a
//! client certificate), Redis Cluster (6 nodes), hybrid (over a node and over a cluster),
//! and the breaker-guarded store the server really uses.

use crate::support::{RedisCluster, RedisServer, TlsFiles, tool, wait_until};
use authgate::cache::Store;
use authgate::cache::hybrid::HybridStore;
use authgate::cache::memory::MemoryStore;
use authgate::cache::redis::RedisStore;
use authgate::config::RedisConfig;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn redis_config(address: &str) -> RedisConfig {
    RedisConfig {
        enabled: true,
        address: address.to_owned(),
        key_prefix: format!("t{}", crate::support::random_hex(4)),
        read_timeout: authgate::config::Seconds(Duration::from_millis(500)),
        ..RedisConfig::default()
    }
}

fn unique(name: &str) -> String {
    format!("{name}:{}", crate::support::random_hex(6))
}

/// Every case of the suite, against one store.
pub async fn conformance(store: Arc<dyn Store>) {
    round_trip(&*store).await;
    ttl_is_reported_and_enforced(&*store).await;
    delete_and_exists(&*store).await;
    set_if_absent_is_atomic(store.clone()).await;
    compare_operations(&*store).await;
    binary_values(&*store).await;
    store.health().await.expect("healthy");
}

async fn round_trip(store: &dyn Store) {
    let key = unique("rt");
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.set(&key, b"one", Duration::from_secs(30)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"one"[..]));
    store.set(&key, b"two", Duration::from_secs(30)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
}

async fn ttl_is_reported_and_enforced(store: &dyn Store) {
    let key = unique("ttl");
    store.set(&key, b"v", Duration::from_secs(30)).await.unwrap();
    let (_, remaining) = store.get_with_ttl(&key).await.unwrap().unwrap();
    assert!(remaining <= Duration::from_secs(30) && remaining > Duration::from_secs(25), "{remaining:?}");

    let short = unique("short");
    store.set(&short, b"v", Duration::from_millis(300)).await.unwrap();
    assert!(store.exists(&short).await.unwrap(), "present before its TTL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get(&short).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "value outlived its TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!store.exists(&short).await.unwrap());
}

async fn delete_and_exists(store: &dyn Store) {
    let key = unique("del");
    assert!(!store.delete(&key).await.unwrap(), "deleting an absent key reports false");
    store.set(&key, b"v", Duration::from_secs(30)).await.unwrap();
    assert!(store.exists(&key).await.unwrap());
    assert!(store.delete(&key).await.unwrap());
    assert!(!store.exists(&key).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);
}

async fn set_if_absent_is_atomic(store: Arc<dyn Store>) {
    let key = unique("nx");
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(
                async move { store.set_if_absent(&key, format!("{i}").as_bytes(), Duration::from_secs(30)).await },
            )
        })
        .collect();
    let mut winners = 0;
    for caller in callers {
        if caller.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 100 concurrent callers wins");
    // Distinct keys never collide.
    for i in 0..20 {
        assert!(store.set_if_absent(&unique(&format!("nx{i}")), b"x", Duration::from_secs(30)).await.unwrap());
    }
    // After expiry the key can be claimed again.
    let short = unique("nx-short");
    assert!(store.set_if_absent(&short, b"a", Duration::from_millis(200)).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store.set_if_absent(&short, b"b", Duration::from_secs(30)).await.unwrap() {
        assert!(Instant::now() < deadline, "claim never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn compare_operations(store: &dyn Store) {
    let key = unique("lock");
    assert!(store.set_if_absent(&key, b"owner-a", Duration::from_secs(2)).await.unwrap());
    assert!(!store.compare_and_delete(&key, b"owner-b").await.unwrap(), "another owner cannot release");
    assert!(!store.compare_and_expire(&key, b"owner-b", Duration::from_secs(60)).await.unwrap());
    assert!(store.compare_and_expire(&key, b"owner-a", Duration::from_secs(60)).await.unwrap());
    let (_, remaining) = store.get_with_ttl(&key).await.unwrap().unwrap();
    assert!(remaining > Duration::from_secs(50), "lease renewed: {remaining:?}");
    assert!(store.compare_and_delete(&key, b"owner-a").await.unwrap());
    assert!(!store.exists(&key).await.unwrap());
}

async fn binary_values(store: &dyn Store) {
    let key = unique("bin");
    let all: Vec<u8> = (0..=255).collect();
    store.set(&key, &all, Duration::from_secs(30)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap(), all);
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new(10_000, 64 << 20))).await;
}

#[tokio::test]
async fn redis_store_conforms() {
    let redis = RedisServer::start();
    conformance(Arc::new(RedisStore::new(&redis_config(&redis.address())).unwrap())).await;
}

#[tokio::test]
async fn redis_store_over_tls_with_a_client_certificate_conforms() {
    let tls = TlsFiles::generate();
    let redis = RedisServer::start_tls(&tls);
    let mut config = redis_config(&redis.address());
    config.tls.enabled = true;
    config.tls.ca_file = tls.path("ca.pem");
    config.tls.cert_file = tls.path("client.pem");
    config.tls.key_file = tls.path("client.key");
    conformance(Arc::new(RedisStore::new(&config).unwrap())).await;

    // Without the client certificate the server refuses us: TLS settings are really used.
    config.tls.cert_file.clear();
    config.tls.key_file.clear();
    let refused = RedisStore::new(&config).unwrap();
    assert!(refused.health().await.is_err(), "a server requiring client certificates accepted none");
}

#[tokio::test]
async fn redis_cluster_store_conforms() {
    let cluster = RedisCluster::start();
    let mut config = redis_config(&cluster.address());
    config.cluster_mode = true;
    let store = Arc::new(RedisStore::new(&config).unwrap());
    conformance(store.clone()).await;
    // Keys really spread over the three primaries.
    for i in 0..30 {
        store.set(&format!("spread:{i}"), b"v", Duration::from_secs(30)).await.unwrap();
    }
    let holding = cluster.nodes.iter().filter(|n| n.cli(&["DBSIZE"]).trim() != "0").count();
    assert!(holding >= 3, "keys on {holding} nodes");
}

#[tokio::test]
async fn hybrid_store_conforms() {
    let redis = RedisServer::start();
    let l2 = Arc::new(RedisStore::new(&redis_config(&redis.address())).unwrap());
    let hybrid = HybridStore::start(MemoryStore::new(1000, 8 << 20), l2, Duration::from_secs(60));
    conformance(hybrid).await;
}

#[tokio::test]
async fn hybrid_store_over_a_cluster_conforms() {
    let cluster = RedisCluster::start();
    let mut config = redis_config(&cluster.address());
    config.cluster_mode = true;
    let l2 = Arc::new(RedisStore::new(&config).unwrap());
    let hybrid = HybridStore::start(MemoryStore::new(1000, 8 << 20), l2, Duration::from_secs(60));
    conformance(hybrid).await;
}

#[tokio::test]
async fn clear_removes_only_our_prefix() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis_config(&redis.address())).unwrap();
    for i in 0..50 {
        store.set(&format!("k{i}"), b"v", Duration::from_secs(30)).await.unwrap();
    }
    redis.cli(&["SET", "someone-elses-key", "precious"]);
    store.clear().await.unwrap();
    assert_eq!(store.get("k1").await.unwrap(), None);
    assert_eq!(redis.cli(&["GET", "someone-elses-key"]).trim(), "precious");
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1");
}

#[tokio::test]
async fn keys_in_redis_carry_the_prefix() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis.address());
    config.key_prefix = "myapp".into();
    let store = RedisStore::new(&config).unwrap();
    store.set("session:abc", b"v", Duration::from_secs(30)).await.unwrap();
    assert_eq!(redis.cli(&["KEYS", "*"]).trim(), "myapp:session:abc");
    let ttl: u64 = redis.cli(&["TTL", "myapp:session:abc"]).trim().parse().unwrap();
    assert!((28..=30).contains(&ttl), "ttl {ttl}");
}

/// GET calls served by each node of the cluster so far.
fn gets_per_node(cluster: &RedisCluster) -> Vec<(bool, u64)> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let is_replica = node.cli(&["INFO", "replication"]).contains("role:slave");
            let stats = node.cli(&["INFO", "commandstats"]);
            let calls = stats
                .lines()
                .find(|l| l.starts_with("cmdstat_get:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (is_replica, calls)
        })
        .collect()
}

#[tokio::test]
async fn cluster_read_routing_options_send_reads_where_they_say() {
    let cluster = RedisCluster::start();
    let mut config = redis_config(&cluster.address());
    config.cluster_mode = true;
    // Below, one primary answers only between 200 ms sleeps: connecting to the cluster
    // (every node) then takes longer than the default dialTimeout allows.
    config.dial_timeout = authgate::config::Seconds(Duration::from_secs(2));
    config.read_timeout = authgate::config::Seconds(Duration::from_secs(1));
    let writer = RedisStore::new(&config).unwrap();
    for i in 0..60 {
        writer.set(&format!("r{i}"), b"v", Duration::from_secs(60)).await.unwrap();
    }
    let reads = |store: RedisStore| async move {
        for _ in 0..5 {
            for i in 0..60 {
                // Replication is asynchronous: a replica may briefly miss a fresh key.
                let _ = store.get(&format!("r{i}")).await.unwrap();
            }
        }
    };
    let before = gets_per_node(&cluster);
    assert!(before.iter().all(|(_, calls)| *calls == 0), "{before:?}");

    // Default: primaries only.
    reads(RedisStore::new(&config).unwrap()).await;
    let primaries_only = gets_per_node(&cluster);
    assert!(primaries_only.iter().all(|(replica, calls)| !replica || *calls == 0), "{primaries_only:?}");

    // readOnly: replicas.
    let mut read_only = config.clone();
    read_only.read_only = true;
    reads(RedisStore::new(&read_only).unwrap()).await;
    let after_replicas = gets_per_node(&cluster);
    let replica_gets: u64 = after_replicas.iter().filter(|(r, _)| *r).map(|(_, c)| c).sum();
    let stats: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            n.cli(&["INFO", "commandstats"])
                .lines()
                .filter(|l| l.starts_with("cmdstat_get") || l.starts_with("cmdstat_readonly"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(replica_gets >= 250, "readOnly sent {replica_gets} of 300 reads to replicas: {after_replicas:?} {stats:?}");

    // routeRandomly: both primaries and replicas get some.
    let mut random = config.clone();
    random.route_randomly = true;
    reads(RedisStore::new(&random).unwrap()).await;
    let after_random = gets_per_node(&cluster);
    let delta = |replica: bool| -> u64 {
        after_random.iter().zip(&after_replicas).filter(|((r, _), _)| *r == replica).map(|((_, a), (_, b))| a - b).sum()
    };
    assert!(
        delta(true) > 30 && delta(false) > 30,
        "routeRandomly: replicas {} primaries {}",
        delta(true),
        delta(false)
    );

    // routeByLatency: reads go to the node measured fastest. One primary is kept busy
    // (DEBUG SLEEP over and over), so every read of its slots must go to its replica,
    // which no other option would choose.
    let slow = cluster.nodes.iter().find(|n| n.cli(&["INFO", "replication"]).contains("role:master")).unwrap();
    let partner = cluster
        .nodes
        .iter()
        .find(|n| n.cli(&["INFO", "replication"]).contains(&format!("master_port:{}", slow.port)))
        .unwrap();
    let keys_on_slow: u64 = slow.cli(&["DBSIZE"]).trim().parse().unwrap();
    assert!(keys_on_slow > 0);
    let mut busy = Command::new(tool("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &slow.port.to_string(), "-r", "1000000", "-i", "0", "DEBUG", "SLEEP", "0.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gets_of = |node: &RedisServer| -> u64 {
        node.cli(&["INFO", "commandstats"])
            .lines()
            .find(|l| l.starts_with("cmdstat_get:"))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut latency = config.clone();
    latency.route_by_latency = true;
    let store = RedisStore::new(&latency).unwrap();
    // Ready once the probes have measured every node: a read of a key on the busy primary
    // then lands on its replica.
    let slow_key =
        (0..60).map(|i| format!("r{i}")).find(|k| slow.cli(&["EXISTS", &writer.redis_key(k)]).trim() == "1").unwrap();
    let partner_before = gets_of(partner);
    wait_until("latency probes measured the busy primary", async || {
        let _ = store.get(&slow_key).await.unwrap();
        gets_of(partner) > partner_before
    })
    .await;
    let (slow_before, partner_before) = (gets_of(slow), gets_of(partner));
    reads(store).await;
    let (slow_gets, partner_gets) = (gets_of(slow) - slow_before, gets_of(partner) - partner_before);
    let _ = busy.kill();
    let _ = busy.wait();
    assert_eq!(slow_gets, 0, "routeByLatency read from the busy primary");
    assert!(
        partner_gets >= keys_on_slow * 5,
        "routeByLatency sent {partner_gets} of {} reads of the busy shard to its replica",
        keys_on_slow * 5
    );
}
