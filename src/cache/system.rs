//! Assembles the configured cache (mode, breaker, fallback) and reports on it.

use super::breaker::{BreakerStore, CircuitBreaker, CircuitState};
use super::hybrid::HybridStore;
use super::markers::MarkerStore;
use super::memory::MemoryStore;
use super::peers::{PeerStatus, RollCall};
use super::redis::PoolFigures;
use super::redis::RedisStore;
use super::{Cache, CacheError, CacheObserver, ErrorClass, Kind, NoObserver, Store};
use crate::config::{CacheMode, Config};
use std::sync::Arc;
use std::time::Duration;

const MB: u64 = 1024 * 1024;

/// How often Redis is PINGed (through the breaker) for `/healthz` and the breaker.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// What the cache says about itself (`/healthz` serialises it).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheStatus {
    pub mode: CacheMode,
    /// Present when Redis is part of the mode.
    pub redis: Option<RedisStatus>,
    /// The memory store that matters: the whole cache in memory mode, the L1 in hybrid
    /// mode, the fallback in redis mode.
    pub memory: MemoryStatus,
    /// Present when Redis (and so the breaker) is part of the mode.
    pub breaker: Option<BreakerStatus>,
    /// The other replicas of this deployment, when Redis is part of the mode.
    pub peers: Option<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisStatus {
    /// Whether the last health check reached Redis.
    pub connected: bool,
    /// Why Redis is failing, if the last request to it failed.
    pub error: Option<String>,
    pub error_class: Option<ErrorClass>,
    /// Round trip of the last successful health check.
    pub latency: Duration,
    pub pool: PoolFigures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStatus {
    pub entries: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStatus {
    pub state: CircuitState,
    pub failures: u32,
}

/// The cache of a running server.
pub struct CacheSystem {
    cache: Cache,
    mode: CacheMode,
    /// The memory store: the whole cache in memory mode, the fallback otherwise.
    memory: MemoryStore,
    redis: Option<Arc<RedisStore>>,
    hybrid: Option<Arc<HybridStore>>,
    breaker: Option<Arc<CircuitBreaker>>,
    roll_call: Option<Arc<RollCall>>,
    memory_fallback: bool,
}

impl std::fmt::Debug for CacheSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSystem").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl CacheSystem {
    /// Builds the cache of `config`. Connects to Redis in the background: Redis being down
    /// at start-up degrades service (the breaker opens) rather than preventing it; only a
    /// configuration that cannot work (unreadable TLS files) is an error here.
    pub fn start(config: &Config) -> Result<Self, CacheError> {
        Self::start_observed(config, Arc::new(NoObserver))
    }

    /// Like [`CacheSystem::start`], reporting Redis round trips to `observer`.
    pub fn start_observed(config: &Config, observer: Arc<dyn CacheObserver>) -> Result<Self, CacheError> {
        let mode = config.effective_cache_mode();
        let memory = MemoryStore::new(config.memory_cache_size, config.memory_cache_memory_mb.saturating_mul(MB));
        if mode == CacheMode::Memory {
            if config.redis.cache_mode.is_some_and(|m| m != CacheMode::Memory) {
                tracing::warn!(
                    cache_mode = config.redis.cache_mode.map(CacheMode::as_str),
                    "redis.enabled is false: using the memory cache"
                );
            }
            let store: Arc<dyn Store> = Arc::new(memory.clone());
            let markers = Arc::new(MarkerStore::new(usize::try_from(config.memory_cache_size).unwrap_or(usize::MAX)));
            return Ok(CacheSystem {
                cache: Cache::routed(store.clone(), store, markers),
                mode,
                memory,
                redis: None,
                hybrid: None,
                breaker: None,
                roll_call: None,
                memory_fallback: true,
            });
        }

        let redis_config = &config.redis;
        let redis = Arc::new(RedisStore::observed(redis_config, observer)?);
        let (primary, hybrid): (Arc<dyn Store>, _) = match mode {
            CacheMode::Hybrid => {
                let l1 =
                    MemoryStore::new(redis_config.hybrid_l1_size, redis_config.hybrid_l1_memory_mb.saturating_mul(MB));
                // Logout markers are absent on nearly every read: remember that in L1 too.
                let absent_prefixes =
                    Kind::ALL.iter().filter(|k| k.absence_is_published()).map(|k| format!("{}:", k.as_str())).collect();
                let hybrid = HybridStore::start_remembering_absent(
                    l1,
                    redis.clone(),
                    redis_config.hybrid_l1_max_ttl.get(),
                    absent_prefixes,
                );
                (hybrid.clone(), Some(hybrid))
            }
            _ => (redis.clone(), None),
        };
        let breaker = Arc::new(CircuitBreaker::new(
            redis_config.circuit_breaker_threshold,
            redis_config.circuit_breaker_timeout.get(),
        ));
        breaker.set_memory_fallback(redis_config.memory_fallback);
        let fallback = redis_config.memory_fallback.then(|| memory.clone());
        let guarded = Arc::new(BreakerStore::new(primary.clone(), fallback, breaker.clone()));
        // Deletes and revocation markers: Redis or an error, never one replica's memory.
        let shared: Arc<dyn Store> = Arc::new(BreakerStore::new(primary, None, breaker.clone()));
        guarded.spawn_health_checks(redis_config.circuit_breaker_timeout.get().min(HEALTH_INTERVAL));
        log_initialization(Arc::downgrade(&redis), mode, redis_config.address.clone());
        let roll_call =
            Arc::new(RollCall::new(&config.provider_url, &config.client_id, mode, &redis_config.key_prefix));
        roll_call.spawn(Arc::downgrade(&redis));

        Ok(CacheSystem {
            cache: Cache::routed(guarded, shared.clone(), shared),
            mode,
            memory,
            redis: Some(redis),
            hybrid,
            breaker: Some(breaker),
            roll_call: Some(roll_call),
            memory_fallback: redis_config.memory_fallback,
        })
    }

    /// The typed cache the rest of authgate uses.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn mode(&self) -> CacheMode {
        self.mode
    }

    /// The circuit breaker, when Redis is part of the mode.
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.breaker.as_ref()
    }

    /// The Redis store's pool figures, when Redis is part of the mode.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.redis.as_ref()
    }

    /// The hybrid store, in hybrid mode.
    pub fn hybrid(&self) -> Option<&Arc<HybridStore>> {
        self.hybrid.as_ref()
    }

    /// The cache's own account of itself, for `/healthz`.
    pub fn status(&self) -> CacheStatus {
        let memory = match &self.hybrid {
            // In hybrid mode the interesting memory is the L1.
            Some(hybrid) => hybrid.l1(),
            None => &self.memory,
        };
        memory.sync();
        CacheStatus {
            mode: self.mode,
            redis: self.redis.as_ref().map(|redis| {
                let (connected, latency) = redis.last_health();
                let error = redis.last_error().map(|e| e.to_string());
                RedisStatus { connected, error, error_class: redis.error_class(), latency, pool: redis.pool_figures() }
            }),
            memory: MemoryStatus { entries: memory.entries(), size_bytes: memory.size_bytes() },
            breaker: self.breaker.as_ref().map(|b| BreakerStatus { state: b.state(), failures: b.failures() }),
            peers: self.roll_call.as_ref().map(|r| r.status()),
        }
    }

    /// Why the cache cannot serve requests, if it cannot.
    pub fn unready_reason(&self) -> Option<String> {
        // Redis refusing authgate is a configuration error, not an outage to ride out.
        if let Some(error @ CacheError::Refused(_)) = self.redis.as_ref().and_then(|r| r.last_error()) {
            return Some(error.to_string());
        }
        let breaker = self.breaker.as_ref()?;
        (breaker.state() != CircuitState::Closed && !self.memory_fallback)
            .then(|| format!("redis circuit breaker {} and redis.memoryFallback is false", breaker.state().as_str()))
    }

    /// Whether the cache is running on its fallback.
    pub fn degraded(&self) -> bool {
        self.breaker.as_ref().is_some_and(|b| b.state() != CircuitState::Closed)
    }
}

/// Logs "Redis cache initialized" once the first health check has succeeded (or that
/// Redis is not reachable yet), from the figures the breaker's health checks record.
fn log_initialization(redis: std::sync::Weak<RedisStore>, mode: CacheMode, address: String) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(redis) = redis.upgrade() else { return };
            let (connected, latency) = redis.last_health();
            if connected {
                tracing::info!(mode = mode.as_str(), %address, latency_us = latency.as_micros() as u64, "Redis cache initialized");
                return;
            }
            if !warned && redis.health_checked() {
                warned = true;
                tracing::warn!(%address, "redis not reachable yet; serving from memory until it is");
            }
        }
    });
}
