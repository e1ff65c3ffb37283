//! Health as the admin listener reports it: `/healthz` (liveness plus the seed's JSON),
//! `/readyz`, and the draining flag that gRPC health mirrors during shutdown.

use crate::cache::{CacheStatus, CacheSystem, ErrorClass};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Shared, cheap to read on every probe.
#[derive(Debug)]
pub struct HealthState {
    cache: Arc<CacheSystem>,
    discovery: Option<Arc<crate::oidc::discovery::Discovery>>,
    draining: AtomicBool,
}

/// The `/healthz` body, in the seed's shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthReport {
    /// `healthy`; `degraded` while the cache runs on its memory fallback; `draining` once
    /// shutdown began.
    pub status: &'static str,
    pub cache: CacheReport,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheReport {
    pub mode: &'static str,
    /// Present when Redis is part of the mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReport>,
    pub memory: MemoryReport,
    /// Present when Redis (and so the breaker) is part of the mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerReport>,
    /// Other replicas of this deployment seen in Redis, and those that disagree on
    /// `cacheMode`/`keyPrefix` (not in the seed's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicasReport {
    pub seen: usize,
    pub disagreeing: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RedisReport {
    pub connected: bool,
    /// Why the last health check failed (not in the seed's shape; absent when healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The class of that error (`authgate_redis_errors_total`'s label); absent when healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'static str>,
    pub latency: String,
    pub pool: PoolReport,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolReport {
    pub active: u64,
    pub idle: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryReport {
    pub entries: u64,
    pub size: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerReport {
    pub state: &'static str,
    pub failures: u64,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadinessReport {
    pub ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl HealthState {
    pub fn new(cache: Arc<CacheSystem>) -> Self {
        HealthState { cache, discovery: None, draining: AtomicBool::new(false) }
    }

    /// Readiness also waits for the provider's discovery to have succeeded.
    pub fn with_discovery(mut self, discovery: Arc<crate::oidc::discovery::Discovery>) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// Marks the server as shutting down: readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn report(&self) -> HealthReport {
        let status = if self.is_draining() {
            "draining"
        } else if self.cache.degraded() {
            "degraded"
        } else {
            "healthy"
        };
        HealthReport { status, cache: CacheReport::from(self.cache.status()) }
    }

    pub fn readiness(&self) -> ReadinessReport {
        let mut reasons = Vec::new();
        if self.is_draining() {
            reasons.push("shutting down".to_owned());
        }
        reasons.extend(self.cache.unready_reason());
        reasons.extend(self.discovery.as_ref().and_then(|d| d.unready_reason()));
        ReadinessReport { ready: reasons.is_empty(), reasons }
    }
}

impl From<CacheStatus> for CacheReport {
    fn from(status: CacheStatus) -> Self {
        CacheReport {
            mode: status.mode.as_str(),
            redis: status.redis.map(|redis| RedisReport {
                connected: redis.connected,
                error: redis.error,
                error_class: redis.error_class.map(ErrorClass::as_str),
                latency: format_latency(redis.latency),
                pool: PoolReport { active: redis.pool.active, idle: redis.pool.idle, total: redis.pool.total },
            }),
            memory: MemoryReport { entries: status.memory.entries, size: format_bytes(status.memory.size_bytes) },
            circuit_breaker: status
                .breaker
                .map(|b| BreakerReport { state: b.state.as_str(), failures: u64::from(b.failures) }),
            replicas: status.peers.map(|p| ReplicasReport { seen: p.seen, disagreeing: p.disagreeing }),
        }
    }
}

/// A latency as the seed writes it: `850µs`, `2ms`.
pub fn format_latency(latency: Duration) -> String {
    if latency < Duration::from_millis(1) {
        format!("{}µs", latency.as_micros())
    } else {
        format!("{}ms", latency.as_millis())
    }
}

/// Bytes as the seed writes them: `512B`, `1.5KB`, `50MB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 10.0 || value.fract() < 0.05 {
        format!("{:.0}{}", value, UNITS[unit])
    } else {
        format!("{:.1}{}", value, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_the_seed() {
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_bytes(1536), "1.5KB");
        assert_eq!(format_bytes(50 * 1024 * 1024), "50MB");
    }

    fn memory_health() -> HealthState {
        let config = crate::config::Config::default();
        HealthState::new(Arc::new(CacheSystem::start(&config).unwrap()))
    }

    #[test]
    fn draining_fails_readiness() {
        let health = memory_health();
        assert!(health.readiness().ready);
        health.start_draining();
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert_eq!(health.report().status, "draining");
    }

    #[test]
    fn memory_mode_report_has_the_seeds_shape() {
        let json = serde_json::to_value(memory_health().report()).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["cache"]["mode"], "memory");
        assert_eq!(json["cache"]["memory"]["entries"], 0);
        assert!(json["cache"].get("redis").is_none());
    }
}
