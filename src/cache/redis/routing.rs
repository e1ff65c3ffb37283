//! Cluster read routing for `readOnly`, `routeRandomly` and `routeByLatency`, with the
//! meaning go-redis gives them (the seed's keys come from there): any of them lets reads go
//! to replicas; `readOnly` alone picks a random replica, `routeRandomly` a random node of
//! the slot (primary included), `routeByLatency` the node with the lowest measured
//! round-trip time. Writes and atomic operations always go to the primary. Reads from a
//! replica may lag the primary by the replication delay (usually well under a millisecond
//! on a LAN); leave these off when a read must see the write just made by another replica.

use crate::config::RedisConfig;
use redis::cluster::{ClusterClientBuilder, NodeAddress};
use redis::cluster_read_routing::{ClusterTopology, ReadCandidates, ReadRoutingStrategy, ReadRoutingStrategyFactory};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often each node's latency is measured for `routeByLatency`.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

pub(super) fn apply(builder: ClusterClientBuilder, config: &RedisConfig) -> ClusterClientBuilder {
    if config.route_by_latency {
        builder.read_routing_strategy(LatencyFactory { latencies: Latencies::default(), config: config.clone() })
    } else if config.route_randomly {
        builder.read_routing_strategy(AnyNodeRandom)
    } else if config.read_only {
        builder.read_routing_strategy(ReplicaRandom)
    } else {
        builder
    }
}

fn candidates<'a>(c: &ReadCandidates<'a>) -> Vec<&'a NodeAddress> {
    match c {
        ReadCandidates::AnyNode(any) => std::iter::once(any.primary()).chain(any.replicas().iter()).collect(),
        ReadCandidates::ReplicasOnly(only) => only.replicas().iter().collect(),
    }
}

/// A uniformly random index below `len` (load balancing, not anything secret).
fn random_index(len: usize) -> usize {
    fastrand::usize(..len.max(1))
}

#[derive(Default)]
struct ReplicaRandom;

impl ReadRoutingStrategy for ReplicaRandom {
    fn route_read<'a>(&self, c: &ReadCandidates<'a>) -> &'a NodeAddress {
        match c {
            ReadCandidates::AnyNode(any) => any.replicas().choose_random(),
            ReadCandidates::ReplicasOnly(only) => only.replicas().choose_random(),
        }
    }
}

#[derive(Default)]
struct AnyNodeRandom;

impl ReadRoutingStrategy for AnyNodeRandom {
    fn route_read<'a>(&self, c: &ReadCandidates<'a>) -> &'a NodeAddress {
        let nodes = candidates(c);
        nodes[random_index(nodes.len())]
    }
}

/// Smoothed round-trip times per node, shared by every connection's strategy.
#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<HashMap<NodeAddress, Duration>>>);

struct LatencyFactory {
    latencies: Latencies,
    config: RedisConfig,
}

impl ReadRoutingStrategyFactory for LatencyFactory {
    fn create_strategy(&self) -> Box<dyn ReadRoutingStrategy> {
        Box::new(ByLatency {
            latencies: self.latencies.clone(),
            config: self.config.clone(),
            probing: Mutex::new(None),
        })
    }
}

struct ByLatency {
    latencies: Latencies,
    config: RedisConfig,
    probing: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ByLatency {
    fn drop(&mut self) {
        if let Some(task) = self.probing.lock().expect("probe lock").take() {
            task.abort();
        }
    }
}

impl ReadRoutingStrategy for ByLatency {
    fn on_topology_changed(&self, topology: ClusterTopology) {
        let nodes: Vec<NodeAddress> = topology
            .shards()
            .flat_map(|s| std::iter::once(s.primary().clone()).chain(s.replicas().iter().cloned()))
            .collect();
        let latencies = self.latencies.clone();
        let config = self.config.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let task = runtime.spawn(async move {
            loop {
                for node in &nodes {
                    let address = format!("{}:{}", node.host(), node.port());
                    let measured = probe(&config, &address).await;
                    let mut map = latencies.0.lock().expect("latency lock");
                    let smoothed = match (map.get(node), measured) {
                        (Some(old), Some(new)) => (*old * 3 + new) / 4,
                        (_, Some(new)) => new,
                        (_, None) => Duration::from_secs(3600),
                    };
                    map.insert(node.clone(), smoothed);
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
        if let Some(old) = self.probing.lock().expect("probe lock").replace(task) {
            old.abort();
        }
    }

    fn route_read<'a>(&self, c: &ReadCandidates<'a>) -> &'a NodeAddress {
        let nodes = candidates(c);
        let map = self.latencies.0.lock().expect("latency lock");
        // Unmeasured nodes count as slow until measured, so a fresh topology still works.
        nodes
            .into_iter()
            .min_by_key(|n| map.get(*n).copied().unwrap_or(Duration::from_secs(60)))
            .expect("a slot has at least one candidate")
    }
}

/// One PING round trip to `address`, or `None` if it fails.
async fn probe(config: &RedisConfig, address: &str) -> Option<Duration> {
    let info = super::connection_info(config, address).ok()?;
    let client = redis::Client::open(info).ok()?;
    let mut conn =
        tokio::time::timeout(config.dial_timeout.get(), client.get_multiplexed_async_connection()).await.ok()?.ok()?;
    let started = Instant::now();
    tokio::time::timeout(config.read_timeout.get(), redis::cmd("PING").query_async::<()>(&mut conn))
        .await
        .ok()?
        .ok()?;
    Some(started.elapsed())
}
