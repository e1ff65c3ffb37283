//! State storage: one [`Store`] interface, three backends, decorators around them.
//!
//! # Layout
//!
//! - [`memory`]: bounded in-process store (moka); the default mode and every fallback.
//! - [`markers`]: in-process store that never evicts, for revocation markers in memory mode.
//! - [`redis`]: Redis (single node, TLS, Cluster, Sentinel) over a bb8 pool of multiplexed
//!   connections; the only module that knows the client and pool types.
//! - [`hybrid`]: a memory L1 in front of the Redis store, invalidated across replicas by
//!   pub/sub.
//! - [`breaker`]: the circuit breaker state machine and the store decorator that serves
//!   from memory while Redis is failing.
//! - [`value`]: the versioned, typed envelope every value is stored in.
//! - [`peers`]: the roll call that detects replicas disagreeing on mode or key prefix.
//! - [`system`]: builds the configured combination and reports its own status
//!   ([`CacheStatus`]), which `/healthz` serialises.
//! - [`Cache`] (this file): what the rest of authgate uses: typed get/set per [`Kind`],
//!   hit/miss counters, health figures.
//!
//! Keys given to a store are logical (`session:…`); the Redis store prefixes them with
//! `redis.keyPrefix`. Callers never put a raw token in a key: [`token_key`] hashes it.

pub mod breaker;
pub mod hybrid;
pub mod markers;
pub mod memory;
pub mod peers;
pub mod redis;
pub mod system;
pub mod value;

mod typed;

pub use system::{BreakerStatus, CacheStatus, CacheSystem, MemoryStatus, RedisStatus};
pub use typed::{Cache, CacheStats, Kind, token_key};

use async_trait::async_trait;
use std::time::Duration;

/// What can go wrong talking to a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The store cannot be reached (connection refused or lost, pool exhausted, DNS).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// No answer within the configured time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error about its own state (LOADING, READONLY after a
    /// failover, CLUSTERDOWN, MASTERDOWN…): unusable for now, like `Unavailable`.
    #[error("redis is not serving: {0}")]
    NotServing(String),
    /// Redis refuses authgate itself: wrong password or ACL user (`WRONGPASS`, `NOAUTH`,
    /// failed `AUTH`), a missing ACL permission (`NOPERM`), or a server too old to speak
    /// RESP3 (before Redis 6). A configuration problem: it counts towards the breaker, and
    /// readiness fails while it lasts.
    #[error("redis refuses authgate's credentials or permissions: {0}")]
    Refused(String),
    /// Redis rejected this command (e.g. WRONGTYPE): a problem with the request, not with
    /// the server's health.
    #[error("redis rejected the command: {0}")]
    Rejected(String),
    /// The circuit breaker is open and there is no memory fallback.
    #[error("circuit breaker open: redis is not being tried")]
    BreakerOpen,
    /// A stored value could not be read back (corrupt, another version, another type).
    #[error("stored value unreadable: {0}")]
    Decode(String),
}

impl CacheError {
    /// Whether this error says something about the store's health, and so counts towards
    /// opening the circuit breaker. A missing key is not an error at all; a rejected
    /// command or an undecodable value is the caller's problem, not the store's.
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            CacheError::Unavailable(_) | CacheError::Timeout(_) | CacheError::NotServing(_) | CacheError::Refused(_)
        )
    }
}

/// What kind of Redis trouble an error is: the label of `authgate_redis_errors_total`,
/// the `error_class` of `/healthz`, and what the log names when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorClass {
    /// Nothing listens at the address (connection refused, DNS failure).
    ConnectionRefused = 1,
    /// An established connection broke (reset, closed, I/O error).
    ConnectionLost,
    /// No reply within `readTimeout` (or no connection within `dialTimeout`).
    Timeout,
    /// No connection free in the pool within `poolTimeout`.
    PoolTimeout,
    /// `NOAUTH`, `WRONGPASS`, a failed `AUTH`: the password or ACL user is wrong.
    Auth,
    /// `NOPERM`: the ACL user lacks a command or key permission.
    NoPerm,
    /// The TLS handshake failed (certificate, protocol, plain-text server).
    Tls,
    /// `MOVED`/`ASK` redirections not settled within `maxRedirects` (a resharding or a
    /// stale cluster map).
    Moved,
    /// `LOADING`: Redis is loading its dataset after a restart.
    Loading,
    /// `READONLY`: the node became a replica (failover) and refuses writes.
    ReadOnly,
    /// `CLUSTERDOWN`, `MASTERDOWN`, `TRYAGAIN`: the cluster or the master is not serving.
    ClusterDown,
    /// The server does not speak RESP3 (`HELLO`): older than Redis 6.
    UnsupportedVersion,
    /// Redis rejected one command (e.g. `WRONGTYPE`): not a sign of ill health.
    CommandRejected,
    /// Anything else.
    Other,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::ConnectionRefused,
        ErrorClass::ConnectionLost,
        ErrorClass::Timeout,
        ErrorClass::PoolTimeout,
        ErrorClass::Auth,
        ErrorClass::NoPerm,
        ErrorClass::Tls,
        ErrorClass::Moved,
        ErrorClass::Loading,
        ErrorClass::ReadOnly,
        ErrorClass::ClusterDown,
        ErrorClass::UnsupportedVersion,
        ErrorClass::CommandRejected,
        ErrorClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectionRefused => "connection_refused",
            ErrorClass::ConnectionLost => "connection_lost",
            ErrorClass::Timeout => "timeout",
            ErrorClass::PoolTimeout => "pool_timeout",
            ErrorClass::Auth => "auth",
            ErrorClass::NoPerm => "noperm",
            ErrorClass::Tls => "tls",
            ErrorClass::Moved => "moved",
            ErrorClass::Loading => "loading",
            ErrorClass::ReadOnly => "readonly",
            ErrorClass::ClusterDown => "clusterdown",
            ErrorClass::UnsupportedVersion => "unsupported_version",
            ErrorClass::CommandRejected => "command_rejected",
            ErrorClass::Other => "other",
        }
    }

    /// Whether errors of this class say Redis (or authgate's access to it) is unwell.
    pub fn is_health(self) -> bool {
        self != ErrorClass::CommandRejected
    }

    /// The inverse of `self as u8` (0 and unknown values are `None`).
    pub fn from_u8(value: u8) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| *c as u8 == value)
    }
}

/// What the cache reports to whoever watches it (the metrics), handed in at construction
/// so the cache never reaches up into telemetry.
pub trait CacheObserver: Send + Sync + 'static {
    /// One Redis round trip of command `op` took `took`.
    fn redis_operation(&self, op: &'static str, took: Duration);

    /// One Redis request failed with an error of `class`.
    fn redis_error(&self, _class: ErrorClass) {}
}

/// An observer that ignores everything (tests, benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl CacheObserver for NoObserver {
    fn redis_operation(&self, _: &'static str, _: Duration) {}
}

/// Which tier answered a read: the process's memory or Redis (a label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Memory,
    Redis,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        }
    }
}

/// The operations every backend offers. Every entry has a time to live: nothing in
/// authgate's state is meant to be kept forever.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value, or `None` when absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// The tier this store's reads come from (the hybrid store answers per read).
    fn tier(&self) -> Tier;

    /// The answer to a read that this store can give from process memory, without any
    /// I/O and so without the circuit breaker: `Some(Some(value))` or `Some(None)` ("known
    /// absent"), or `None` when only the backing store can tell. The hybrid store answers
    /// from its L1 here; the others never do.
    fn fetch_local(&self, _key: &str) -> Option<Option<Vec<u8>>> {
        None
    }

    /// When this store can vouch, without I/O, that keys it remembers as absent (the
    /// logout markers: see [`Kind::absence_is_published`]) stayed absent: an epoch that
    /// changes after every write of such a key made through this store or announced to it.
    /// `None` when it cannot vouch (Redis alone; a hybrid store while its invalidation
    /// subscription is down). See [`AbsenceEpoch`].
    fn absence_epoch(&self) -> Option<AbsenceEpoch> {
        None
    }

    /// Like [`Store::get`], also saying which tier answered.
    async fn fetch(&self, key: &str) -> Result<Option<(Vec<u8>, Tier)>, CacheError> {
        Ok(self.get(key).await?.map(|value| (value, self.tier())))
    }

    /// The value and its remaining time to live.
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError>;

    /// Stores `value` for `ttl`, replacing any previous value.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Stores `value` for `ttl` only if `key` is absent, atomically (`SET NX PX` on Redis):
    /// of any number of concurrent callers, exactly one gets `true`.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError>;

    /// Removes `key`; `true` if it was there.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    async fn exists(&self, key: &str) -> Result<bool, CacheError>;

    /// Removes `key` only if it holds `expected` (releasing a lock we own), atomically.
    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError>;

    /// Sets a new `ttl` on `key` only if it holds `expected` (renewing a lock's lease), atomically.
    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError>;

    /// Removes every key of this store (our key prefix only; never `FLUSHDB`).
    async fn clear(&self) -> Result<(), CacheError>;

    /// Whether the store answers (a `PING` for Redis).
    async fn health(&self) -> Result<(), CacheError>;
}

/// A moment in a store's record of writes to remembered-absent keys (see
/// [`Store::absence_epoch`]). A reader that saw such keys absent after reading epoch `e`
/// may rely on them still being absent while the store still answers `e` and no more than
/// `trusted_for` has passed since: any write since would have moved the generation. The
/// time bound covers what the store cannot hear of (a hybrid L1's subscriber socket that
/// died silently: `hybridL1MaxTTL`, the bound on any L1 copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsenceEpoch {
    pub generation: u64,
    pub trusted_for: Duration,
}

/// Redis wants at least one millisecond; a zero TTL would mean "expire now" anyway.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
