//! Every OpenTelemetry instrument authgate has, created here and nowhere else.
//!
//! Names follow the seed's with our prefix; the Prometheus exporter adds `_total` to
//! counters and the unit (`_seconds`) to histograms, so `/metrics` shows exactly:
//!
//! | Prometheus name | kind | labels |
//! |---|---|---|
//! | `authgate_check_requests_total` | counter | `decision` (allow, deny, redirect, error), `transport` (grpc, http) |
//! | `authgate_check_duration_seconds` | histogram | `transport` |
//! | `authgate_cache_requests_total` | counter | `kind` |
//! | `authgate_cache_hits_total` | counter | `tier` (memory, redis), `kind` |
//! | `authgate_cache_rejected_total` | counter | `kind` (values that failed their seal) |
//! | `authgate_redis_operation_duration_seconds` | histogram | `op` |
//! | `authgate_redis_errors_total` | counter | `class` (connection_refused, timeout, auth, noperm, tls, moved, loading, readonly, …) |
//! | `authgate_circuit_breaker_state` | gauge | — (0 closed, 1 open, 2 half-open) |
//! | `authgate_circuit_breaker_transitions_total` | counter | `to` |
//! | `authgate_redis_pool_connections` | gauge | `state` (active, idle) |
//!
//! Labels stay low-cardinality: never a user, a session, a token or a full path.

use crate::cache::{CacheObserver, CacheSystem, ErrorClass, Kind, Tier};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Latency buckets (seconds) for Checks and Redis operations: 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The synchronous instruments (the observable ones are registered by [`observe_cache`]).
pub struct Metrics {
    check_requests: Counter<u64>,
    check_duration: Histogram<f64>,
    redis_operation_duration: Histogram<f64>,
    redis_errors: Counter<u64>,
    breaker_transitions: Counter<u64>,
}

fn meter() -> Meter {
    opentelemetry::global::meter("authgate")
}

/// The instruments, created on first use from the global meter provider.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = meter();
        Metrics {
            check_requests: meter
                .u64_counter("authgate_check_requests")
                .with_description("Authorization decisions, by outcome and transport")
                .build(),
            check_duration: meter
                .f64_histogram("authgate_check_duration")
                .with_unit("s")
                .with_description("Time to decide on a request")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            redis_operation_duration: meter
                .f64_histogram("authgate_redis_operation_duration")
                .with_unit("s")
                .with_description("Redis round trips, by command")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            redis_errors: meter
                .u64_counter("authgate_redis_errors")
                .with_description("Failed Redis requests, by class of trouble")
                .build(),
            breaker_transitions: meter
                .u64_counter("authgate_circuit_breaker_transitions")
                .with_description("Circuit breaker state changes, by new state")
                .build(),
        }
    })
}

impl Metrics {
    pub fn record_check(&self, transport: &'static str, decision: &'static str, took: Duration) {
        self.check_requests.add(1, &[KeyValue::new("decision", decision), KeyValue::new("transport", transport)]);
        self.check_duration.record(took.as_secs_f64(), &[KeyValue::new("transport", transport)]);
    }

    pub fn record_redis(&self, op: &'static str, took: Duration) {
        self.redis_operation_duration.record(took.as_secs_f64(), &[KeyValue::new("op", op)]);
    }

    pub fn record_redis_error(&self, class: ErrorClass) {
        self.redis_errors.add(1, &[KeyValue::new("class", class.as_str())]);
    }

    pub fn record_breaker_transition(&self, to: &'static str) {
        self.breaker_transitions.add(1, &[KeyValue::new("to", to)]);
    }
}

/// The cache reports its Redis round trips here.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheMetrics;

impl CacheObserver for CacheMetrics {
    fn redis_operation(&self, op: &'static str, took: Duration) {
        metrics().record_redis(op, took);
    }

    fn redis_error(&self, class: ErrorClass) {
        metrics().record_redis_error(class);
    }
}

/// Registers the observable instruments that read the cache's own figures at each
/// collection (so the breaker gauge is exact at every scrape), and counts breaker
/// transitions as they happen.
pub fn observe_cache(system: &Arc<CacheSystem>) {
    let meter = meter();
    let stats = system.cache().stats().clone();
    let hits = stats.clone();
    let rejected = stats.clone();
    let _requests = meter
        .u64_observable_counter("authgate_cache_requests")
        .with_description("Cache lookups, by kind of value")
        .with_callback(move |observer| {
            for kind in Kind::ALL {
                observer.observe(stats.requests(kind), &[KeyValue::new("kind", kind.as_str())]);
            }
        })
        .build();
    let _hits = meter
        .u64_observable_counter("authgate_cache_hits")
        .with_description("Cache lookups that found a value, by tier and kind")
        .with_callback(move |observer| {
            for kind in Kind::ALL {
                for tier in [Tier::Memory, Tier::Redis] {
                    observer.observe(
                        hits.hits(kind, tier),
                        &[KeyValue::new("tier", tier.as_str()), KeyValue::new("kind", kind.as_str())],
                    );
                }
            }
        })
        .build();
    let _rejected = meter
        .u64_observable_counter("authgate_cache_rejected")
        .with_description("Cached values rejected because their seal did not verify, by kind")
        .with_callback(move |observer| {
            for kind in Kind::ALL {
                observer.observe(rejected.rejected(kind), &[KeyValue::new("kind", kind.as_str())]);
            }
        })
        .build();
    if let Some(breaker) = system.breaker() {
        let state = Arc::downgrade(breaker);
        let _state = meter
            .i64_observable_gauge("authgate_circuit_breaker_state")
            .with_description("Redis circuit breaker: 0 closed, 1 open, 2 half-open")
            .with_callback(move |observer| {
                if let Some(breaker) = state.upgrade() {
                    observer.observe(breaker.state().gauge_value(), &[]);
                }
            })
            .build();
        breaker.on_transition(Arc::new(|_, to| metrics().record_breaker_transition(to.as_str())));
    }
    if let Some(redis) = system.redis() {
        let redis = Arc::downgrade(redis);
        let _pool = meter
            .u64_observable_gauge("authgate_redis_pool_connections")
            .with_description("Redis connections, by state")
            .with_callback(move |observer| {
                if let Some(redis) = redis.upgrade() {
                    let figures = redis.pool_figures();
                    observer.observe(figures.active, &[KeyValue::new("state", "active")]);
                    observer.observe(figures.idle, &[KeyValue::new("state", "idle")]);
                }
            })
            .build();
    }
}
