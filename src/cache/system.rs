//! Assembles the configured cache (mode, breaker, fallback) and reports on it.

use super::breaker::{BreakerStore, CircuitBreaker, CircuitState};
use super::hybrid::HybridStore;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::{Cache, CacheError, Store};
use crate::config::{CacheMode, Config};
use crate::health::{BreakerReport, CacheReport, MemoryReport, PoolReport, RedisReport, format_bytes};
use std::sync::Arc;
use std::time::Duration;

const MB: u64 = 1024 * 1024;

/// How often Redis is PINGed (through the breaker) for `/healthz` and the breaker.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The cache of a running server and the parts `/healthz` and the metrics look into.
pub struct CacheSystem {
    pub cache: Cache,
    pub mode: CacheMode,
    /// The memory store: the whole cache in memory mode, the fallback otherwise.
    pub memory: MemoryStore,
    pub redis: Option<Arc<RedisStore>>,
    pub hybrid: Option<Arc<HybridStore>>,
    pub breaker: Option<Arc<CircuitBreaker>>,
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
        let mode = config.effective_cache_mode();
        let memory = MemoryStore::new(config.memory_cache_size, config.memory_cache_memory_mb.saturating_mul(MB));
        if mode == CacheMode::Memory {
            if config.redis.cache_mode.is_some_and(|m| m != CacheMode::Memory) {
                tracing::warn!(
                    cache_mode = config.redis.cache_mode.map(CacheMode::as_str),
                    "redis.enabled is false: using the memory cache"
                );
            }
            return Ok(CacheSystem {
                cache: Cache::new(Arc::new(memory.clone())),
                mode,
                memory,
                redis: None,
                hybrid: None,
                breaker: None,
                memory_fallback: true,
            });
        }

        let redis_config = &config.redis;
        let redis = Arc::new(RedisStore::new(redis_config)?);
        let (primary, hybrid): (Arc<dyn Store>, _) = match mode {
            CacheMode::Hybrid => {
                let l1 =
                    MemoryStore::new(redis_config.hybrid_l1_size, redis_config.hybrid_l1_memory_mb.saturating_mul(MB));
                let hybrid = HybridStore::start(l1, redis.clone(), redis_config.hybrid_l1_max_ttl.get());
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
        let guarded = Arc::new(BreakerStore::new(primary, fallback, breaker.clone()));
        guarded.spawn_health_checks(redis_config.circuit_breaker_timeout.get().min(HEALTH_INTERVAL));
        log_initialization(Arc::downgrade(&redis), mode, redis_config.address.clone());

        Ok(CacheSystem {
            cache: Cache::new(guarded),
            mode,
            memory,
            redis: Some(redis),
            hybrid,
            breaker: Some(breaker),
            memory_fallback: redis_config.memory_fallback,
        })
    }

    /// The `cache` part of `/healthz`.
    pub fn report(&self) -> CacheReport {
        self.memory.sync();
        let memory = match &self.hybrid {
            // In hybrid mode the interesting memory is the L1.
            Some(hybrid) => {
                hybrid.l1().sync();
                MemoryReport { entries: hybrid.l1().entries(), size: format_bytes(hybrid.l1().size_bytes()) }
            }
            None => MemoryReport { entries: self.memory.entries(), size: format_bytes(self.memory.size_bytes()) },
        };
        CacheReport {
            mode: self.mode.as_str(),
            redis: self.redis.as_ref().map(|redis| {
                let (connected, latency) = redis.last_health();
                let pool = redis.pool_figures();
                RedisReport {
                    connected,
                    latency: format_latency(latency),
                    pool: PoolReport { active: pool.active, idle: pool.idle, total: pool.total },
                }
            }),
            memory,
            circuit_breaker: self
                .breaker
                .as_ref()
                .map(|b| BreakerReport { state: b.state().as_str(), failures: u64::from(b.failures()) }),
        }
    }

    /// Why the cache cannot serve requests, if it cannot.
    pub fn unready_reason(&self) -> Option<String> {
        let breaker = self.breaker.as_ref()?;
        (breaker.state() != CircuitState::Closed && !self.memory_fallback)
            .then(|| format!("redis circuit breaker {} and redis.memoryFallback is false", breaker.state().as_str()))
    }

    /// Whether the cache is running on its fallback.
    pub fn degraded(&self) -> bool {
        self.breaker.as_ref().is_some_and(|b| b.state() != CircuitState::Closed)
    }
}

fn format_latency(latency: Duration) -> String {
    if latency < Duration::from_millis(1) {
        format!("{}µs", latency.as_micros())
    } else {
        format!("{}ms", latency.as_millis())
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
                tracing::info!(mode = mode.as_str(), %address, latency = %format_latency(latency), "Redis cache initialized");
                return;
            }
            if !warned && redis.health_checked() {
                warned = true;
                tracing::warn!(%address, "redis not reachable yet; serving from memory until it is");
            }
        }
    });
}
