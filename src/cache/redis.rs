//! Redis store: single node, TLS (with client certificates), Cluster and Sentinel.
//!
//! Consistency: every operation goes to Redis, so all replicas see the same state;
//! `set_if_absent` is one `SET NX PX`, lock release and renewal are Lua scripts, all atomic
//! on the server. TTL: Redis expires keys itself (`PX`, millisecond precision).
//!
//! # Connections
//!
//! The pool (bb8) holds up to `poolSize` *multiplexed* connections (a cluster connection
//! in cluster mode). A request takes a connection from the pool, clones its handle and
//! gives it back at once, then sends its command on the clone: many requests pipeline on
//! one socket instead of each holding a socket for a round trip, which would cap
//! throughput at a tenth. A handle is reused for up to a second, so most requests skip
//! the pool's lock; when it is retired (age, failure, failover) the next one comes from
//! the pool, whose other connections are kept open and warm. The pool settings keep their seed meaning for the sockets:
//! `poolSize` sockets at most, `minIdleConns` kept open, replaced after `maxConnAge`,
//! closed after `idleTimeout` unused, `poolTimeout` the longest wait for one.
//!
//! Timeouts: `dialTimeout` bounds connecting (TCP + TLS + AUTH), `readTimeout` the wait
//! for each reply, and `writeTimeout` becomes the socket's `TCP_USER_TIMEOUT` (how long
//! written data may stay unacknowledged before the connection is declared dead), the
//! closest thing to a write timeout that a multiplexed connection has.
//!
//! Retries: commands that are safe to repeat are retried up to `maxRetries` times on a
//! connection error, on a fresh connection; `SET NX` and the lock scripts are not (a
//! retry after a lost reply could report "taken" for our own write). In cluster mode the
//! client's own retry budget (`maxRetries + maxRedirects`) covers MOVED/ASK redirects.

use super::{CacheError, CacheObserver, ErrorClass, NoObserver, Store, Tier, ttl_millis};
use crate::config::RedisConfig;
use crate::retry::Backoff;
use async_trait::async_trait;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, ProtocolVersion,
    PushInfo, RedisError, RedisFuture, RedisResult, ServerErrorKind, TlsCertificates, Value,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod routing;
mod sentinel;

/// Handles reused at once. One: a multiplexed connection batches the commands of all
/// concurrent requests into few writes, and measured on loopback one connection carried
/// more than five sharing the load (BENCHMARKS.md). The rest of the pool stays warm.
const HOT_SLOTS: usize = 1;

/// How long a request handle taken from the pool is reused before going back to the pool,
/// so the pool's `maxConnAge`, `idleTimeout` and retirements take effect within this time.
const HOT_HANDLE_LIFETIME: Duration = Duration::from_secs(1);

/// Waits between retries of an idempotent command after a connection error.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(5);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// Releases a lock only if we still own it.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Renews a lock's lease only if we still own it.
const COMPARE_AND_EXPIRE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// One connection of the pool: a node (possibly found through Sentinel) or a cluster.
#[derive(Clone)]
enum Connection {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// Subscribes this (RESP3) connection to `channel`; messages go to its push sender.
    pub(crate) async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Connection::Node(c) => c.subscribe(channel).await,
            Connection::Cluster(c) => c.subscribe(channel).await,
        }
    }
}

/// A subscribed connection; dropping it closes the subscription.
pub(crate) struct Subscription {
    _connection: Connection,
}

/// A pooled connection and what retires it: its own `broken` flag, or an `epoch` older
/// than the store's (bumped when Sentinel announces a new master, or when a socket dies
/// and its siblings to the same server are suspect).
#[derive(Clone)]
struct Pooled {
    connection: Connection,
    broken: Arc<AtomicBool>,
    epoch: u64,
}

enum Target {
    Node(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// Rebuilt per connection (cheap, no I/O): the builder is not `Clone`, and a
    /// subscriber connection needs its own push sender.
    Cluster(Box<RedisConfig>, Option<TlsCertificates>),
}

struct Manager {
    target: Target,
    dial_timeout: Duration,
    read_timeout: Duration,
    epoch: Arc<AtomicU64>,
}

impl Manager {
    fn node_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.dial_timeout))
            .set_response_timeout(Some(self.read_timeout))
    }

    async fn open(&self, push: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>) -> RedisResult<Connection> {
        let mut config = self.node_config();
        if let Some(push) = push.clone() {
            config = config.set_push_sender(push);
        }
        let open = async {
            match &self.target {
                Target::Node(client) => {
                    client.get_multiplexed_async_connection_with_config(&config).await.map(Connection::Node)
                }
                Target::Sentinel(client) => {
                    client.lock().await.get_async_connection_with_config(&config).await.map(Connection::Node)
                }
                Target::Cluster(config, certs) => {
                    let mut builder = cluster_builder(config, certs.clone()).map_err(|e| {
                        RedisError::from((ErrorKind::InvalidClientConfig, "cluster configuration", e.to_string()))
                    })?;
                    if let Some(push) = push {
                        builder = builder.push_sender(push);
                    }
                    builder.build()?.get_async_connection().await.map(Connection::Cluster)
                }
            }
        };
        // Sentinel discovery and cluster topology take several round trips; bound them all.
        match tokio::time::timeout(self.dial_timeout * 2, open).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from((
                ErrorKind::Io,
                "connect timed out",
                format!("after {:?}", self.dial_timeout * 2),
            ))),
        }
    }
}

/// The pool owns its manager; the store keeps a second handle to open subscriber connections.
#[derive(Clone)]
struct SharedManager(Arc<Manager>);

impl bb8::ManageConnection for SharedManager {
    type Connection = Pooled;
    type Error = RedisError;

    async fn connect(&self) -> Result<Pooled, RedisError> {
        let epoch = self.0.epoch.load(Ordering::SeqCst);
        let connection = self.0.open(None).await?;
        Ok(Pooled { connection, broken: Arc::new(AtomicBool::new(false)), epoch })
    }

    async fn is_valid(&self, conn: &mut Pooled) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.connection).await
    }

    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.broken.load(Ordering::Relaxed) || conn.epoch != self.0.epoch.load(Ordering::SeqCst)
    }
}

/// What [`RedisStore::run`] sends.
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl Request<'_> {
    /// The `op` label of the Redis latency histogram (a fixed set of names).
    fn op(&self) -> &'static str {
        match self {
            Request::Pipe(_) => "pipeline",
            Request::Script(_) => "script",
            Request::Cmd(cmd) => match cmd.args_iter().next() {
                Some(redis::Arg::Simple(name)) => match name {
                    b"GET" => "get",
                    b"SET" => "set",
                    b"DEL" => "del",
                    b"EXISTS" => "exists",
                    b"PING" => "ping",
                    b"PUBLISH" => "publish",
                    b"SCAN" => "scan",
                    b"UNLINK" => "unlink",
                    _ => "other",
                },
                _ => "other",
            },
        }
    }
}

/// Whether `error` is a pre-6.0 server failing the RESP3 handshake (`HELLO 3`).
fn is_unsupported_version(error: &RedisError) -> bool {
    let text = error.to_string();
    text.contains("HELLO") && (text.contains("unknown command") || text.contains("unknown subcommand"))
}

/// Sorts a client error into what the breaker and the caller need to know.
fn classify(error: &RedisError, read_timeout: Duration) -> CacheError {
    if error.is_timeout() {
        return CacheError::Timeout(read_timeout);
    }
    if is_unsupported_version(error) {
        return CacheError::Refused(format!(
            "Redis 6.0 or later is needed (authgate speaks RESP3, and this server does not know HELLO): {error}"
        ));
    }
    let refused = matches!(error.kind(), ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm))
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
    if refused {
        return CacheError::Refused(error.to_string());
    }
    match error.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain,
        ) => CacheError::NotServing(error.to_string()),
        ErrorKind::Server(_) | ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            CacheError::Rejected(error.to_string())
        }
        _ => CacheError::Unavailable(error.to_string()),
    }
}

/// What kind of trouble `error` is, for the operator (metric label, log, `/healthz`).
fn error_class(error: &RedisError) -> ErrorClass {
    if error.is_timeout() {
        return ErrorClass::Timeout;
    }
    if is_unsupported_version(error) {
        return ErrorClass::UnsupportedVersion;
    }
    match error.code() {
        Some("NOAUTH" | "WRONGPASS") => return ErrorClass::Auth,
        Some("NOPERM") => return ErrorClass::NoPerm,
        Some("LOADING") => return ErrorClass::Loading,
        Some("READONLY") => return ErrorClass::ReadOnly,
        Some("MOVED" | "ASK") => return ErrorClass::Moved,
        Some("CLUSTERDOWN" | "MASTERDOWN" | "TRYAGAIN") => return ErrorClass::ClusterDown,
        _ => {}
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed => return ErrorClass::Auth,
        ErrorKind::Server(ServerErrorKind::NoPerm) => return ErrorClass::NoPerm,
        ErrorKind::Server(ServerErrorKind::BusyLoading) => return ErrorClass::Loading,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => return ErrorClass::ReadOnly,
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => return ErrorClass::Moved,
        ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::MasterDown | ServerErrorKind::TryAgain) => {
            return ErrorClass::ClusterDown;
        }
        ErrorKind::Server(_) | ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            return ErrorClass::CommandRejected;
        }
        _ => {}
    }
    // rustls reports handshake failures as I/O errors; its messages name what failed.
    let text = error.to_string().to_ascii_lowercase();
    if ["tls", "certificate", "handshake", "corrupt message", "invalid peer"].iter().any(|w| text.contains(w)) {
        return ErrorClass::Tls;
    }
    if error.is_connection_refusal() {
        return ErrorClass::ConnectionRefused;
    }
    if error.is_io_error() || error.is_connection_dropped() {
        return ErrorClass::ConnectionLost;
    }
    ErrorClass::Other
}

/// Whether the connection that produced `error` should be retired.
fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(error.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown))
}

fn is_readonly(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
}

/// Commands in flight, counted in per-thread shards: one shared counter bounced its cache
/// line between the cores on every command.
#[derive(Default)]
struct InFlight {
    shards: [Shard; 16],
}

#[derive(Default)]
#[repr(align(64))]
struct Shard(std::sync::atomic::AtomicI64);

thread_local! {
    static SHARD: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % 16
    };
}

impl InFlight {
    fn add(&self, delta: i64) {
        let shard = SHARD.with(|s| *s);
        self.shards[shard].0.fetch_add(delta, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        u64::try_from(self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum::<i64>()).unwrap_or(0)
    }
}

/// Pool figures for `/healthz` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Connections with at least one command in flight (at most `total`).
    pub active: u64,
    pub idle: u64,
    pub total: u64,
}

/// The Redis backend.
pub struct RedisStore {
    pool: bb8::Pool<SharedManager>,
    manager: Arc<Manager>,
    connecting: tokio::sync::Mutex<()>,
    /// Handles of pooled connections kept for up to [`HOT_HANDLE_LIFETIME`], so that most
    /// requests skip the pool's lock.
    hot: Vec<std::sync::RwLock<Option<(Pooled, Instant)>>>,
    next_slot: std::sync::atomic::AtomicUsize,
    /// Stops the Sentinel watchers when the store is dropped.
    _watchers: tokio_util::sync::DropGuard,
    prefix: String,
    read_timeout: Duration,
    max_retries: u32,
    in_flight: InFlight,
    /// Round-trip time of the last successful health check, in microseconds.
    latency_micros: AtomicU64,
    connected: AtomicBool,
    health_checks: AtomicU64,
    cluster: bool,
    compare_and_delete: redis::Script,
    compare_and_expire: redis::Script,
    observer: Arc<dyn CacheObserver>,
    /// The class of trouble Redis is in as the last request saw it (`ErrorClass as u8`, 0
    /// when it answered): read on every success, so recovering costs one atomic load.
    trouble: AtomicU8,
    /// The error behind `trouble`, for `/healthz` and readiness.
    last_error: std::sync::Mutex<Option<CacheError>>,
    /// When the last attempt to connect with an empty pool failed, and why: requests that
    /// were waiting for that attempt fail with it at once instead of each dialling again.
    connect_failure: std::sync::Mutex<Option<(Instant, CacheError)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).field("cluster", &self.cluster).finish()
    }
}

fn tcp_settings(config: &RedisConfig) -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true).set_user_timeout(config.write_timeout.get())
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>, CacheError> {
    std::fs::read(path).map_err(|e| CacheError::Unavailable(format!("cannot read redis.tls.{what} {path}: {e}")))
}

/// Certificates for TLS, when any file is configured.
fn certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, CacheError> {
    let tls = &config.tls;
    if !tls.enabled || (tls.ca_file.is_empty() && tls.cert_file.is_empty()) {
        return Ok(None);
    }
    let client_tls = if tls.cert_file.is_empty() {
        None
    } else {
        Some(redis::ClientTlsConfig {
            client_cert: read_file("certFile", &tls.cert_file)?,
            client_key: read_file("keyFile", &tls.key_file)?,
        })
    };
    let root_cert = if tls.ca_file.is_empty() { None } else { Some(read_file("caFile", &tls.ca_file)?) };
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

fn split_host_port(address: &str) -> Result<(String, u16), CacheError> {
    let (host, port) = address
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| CacheError::Unavailable(format!("redis address {address:?} is not host:port")))?;
    let port =
        port.parse().map_err(|_| CacheError::Unavailable(format!("redis address {address:?} has no valid port")))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

fn connection_addr(config: &RedisConfig, address: &str) -> Result<ConnectionAddr, CacheError> {
    let (host, port) = split_host_port(address)?;
    Ok(if config.tls.enabled {
        ConnectionAddr::TcpTls { host, port, insecure: config.tls.insecure_skip_verify, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

fn connection_info(config: &RedisConfig, address: &str) -> Result<ConnectionInfo, CacheError> {
    let mut redis =
        redis::RedisConnectionInfo::default().set_protocol(ProtocolVersion::RESP3).set_db(i64::from(config.db));
    if !config.username.is_empty() {
        redis = redis.set_username(&config.username);
    }
    if !config.password.is_empty() {
        redis = redis.set_password(config.password.expose());
    }
    let info =
        connection_addr(config, address)?.into_connection_info().map_err(|e| CacheError::Unavailable(e.to_string()))?;
    Ok(info.set_redis_settings(redis).set_tcp_settings(tcp_settings(config)))
}

fn target(config: &RedisConfig) -> Result<Target, CacheError> {
    let config_error = |e: RedisError| CacheError::Unavailable(format!("invalid redis configuration: {e}"));
    let certs = certificates(config)?;
    if config.sentinel.enabled() {
        let sentinels =
            config.sentinel.addresses.iter().map(|a| connection_addr(config, a)).collect::<Result<Vec<_>, _>>()?;
        let mut builder =
            SentinelClientBuilder::new(sentinels, &config.sentinel.master_name, SentinelServerType::Master)
                .map_err(config_error)?
                .set_client_to_redis_db(i64::from(config.db))
                .set_client_to_redis_protocol(ProtocolVersion::RESP3)
                .set_client_to_redis_tcp_settings(tcp_settings(config));
        if !config.username.is_empty() {
            builder = builder.set_client_to_redis_username(&config.username);
        }
        if !config.password.is_empty() {
            builder = builder.set_client_to_redis_password(config.password.expose());
        }
        if !config.sentinel.username.is_empty() {
            builder = builder.set_client_to_sentinel_username(&config.sentinel.username);
        }
        if !config.sentinel.password.is_empty() {
            builder = builder.set_client_to_sentinel_password(config.sentinel.password.expose());
        }
        if config.tls.enabled {
            let mode = if config.tls.insecure_skip_verify { redis::TlsMode::Insecure } else { redis::TlsMode::Secure };
            builder = builder.set_client_to_redis_tls_mode(mode).set_client_to_sentinel_tls_mode(mode);
            if let Some(certs) = certs {
                builder =
                    builder.set_client_to_redis_certificates(certs.clone()).set_client_to_sentinel_certificates(certs);
            }
        }
        return Ok(Target::Sentinel(tokio::sync::Mutex::new(builder.build().map_err(config_error)?)));
    }
    if config.cluster_mode {
        cluster_builder(config, certs.clone())?; // fail at start-up on bad addresses
        return Ok(Target::Cluster(Box::new(config.clone()), certs));
    }
    let info = connection_info(config, &config.address)?;
    let client = match certs {
        Some(certs) => Client::build_with_tls(info, certs),
        None => Client::open(info),
    }
    .map_err(config_error)?;
    Ok(Target::Node(client))
}

fn cluster_builder(config: &RedisConfig, certs: Option<TlsCertificates>) -> Result<ClusterClientBuilder, CacheError> {
    let nodes = config
        .address
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .map(|a| connection_info(config, a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(config.dial_timeout.get())
        .response_timeout(config.read_timeout.get())
        .retries(config.max_retries.saturating_add(config.max_redirects))
        .tcp_settings(tcp_settings(config));
    if !config.username.is_empty() {
        builder = builder.username(&config.username);
    }
    if !config.password.is_empty() {
        builder = builder.password(config.password.expose());
    }
    if config.tls.enabled {
        let mode = if config.tls.insecure_skip_verify { redis::TlsMode::Insecure } else { redis::TlsMode::Secure };
        builder = builder.tls(mode);
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
    }
    builder = routing::apply(builder, config);
    Ok(builder)
}

fn none_if_zero(d: Duration) -> Option<Duration> {
    if d.is_zero() { None } else { Some(d) }
}

impl RedisStore {
    /// Builds the store from the `redis` block. Reads TLS files now (a missing file is a
    /// start-up error); connects lazily (Redis being down is not). TLS needs the process's
    /// rustls provider (`crate::tls`) installed first.
    pub fn new(config: &RedisConfig) -> Result<Self, CacheError> {
        Self::observed(config, Arc::new(NoObserver))
    }

    /// Like [`RedisStore::new`], reporting every round trip to `observer` (the metrics).
    pub fn observed(config: &RedisConfig, observer: Arc<dyn CacheObserver>) -> Result<Self, CacheError> {
        let epoch = Arc::new(AtomicU64::new(0));
        let manager = Arc::new(Manager {
            target: target(config)?,
            dial_timeout: config.dial_timeout.get(),
            read_timeout: config.read_timeout.get(),
            epoch: epoch.clone(),
        });
        let stop_watchers = tokio_util::sync::CancellationToken::new();
        if config.sentinel.enabled() {
            sentinel::watch_switches(config, epoch, stop_watchers.clone())?;
        }
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size.max(1))
            .min_idle(config.min_idle_conns)
            .max_lifetime(none_if_zero(config.max_conn_age.get()))
            .idle_timeout(none_if_zero(config.idle_timeout.get()))
            .connection_timeout(config.pool_timeout.get())
            // A PING per checkout would double every round trip; broken connections are
            // retired by the `broken` flag instead.
            .test_on_check_out(false)
            // Fail fast when Redis refuses connections: the breaker needs to hear about it.
            .retry_connection(false)
            .build_unchecked(SharedManager(manager.clone()));
        Ok(RedisStore {
            pool,
            manager,
            connecting: tokio::sync::Mutex::new(()),
            hot: (0..HOT_SLOTS).map(|_| std::sync::RwLock::new(None)).collect(),
            next_slot: std::sync::atomic::AtomicUsize::new(0),
            _watchers: stop_watchers.drop_guard(),
            prefix: format!("{}:", config.key_prefix),
            read_timeout: config.read_timeout.get(),
            max_retries: config.max_retries,
            in_flight: InFlight::default(),
            latency_micros: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            health_checks: AtomicU64::new(0),
            cluster: config.cluster_mode,
            compare_and_delete: redis::Script::new(COMPARE_AND_DELETE),
            compare_and_expire: redis::Script::new(COMPARE_AND_EXPIRE),
            observer,
            trouble: AtomicU8::new(0),
            last_error: std::sync::Mutex::new(None),
            connect_failure: std::sync::Mutex::new(None),
        })
    }

    /// The full Redis key for a logical key.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The pub/sub channel for cache invalidations, under the key prefix.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    pub fn pool_figures(&self) -> PoolFigures {
        let state = self.pool.state();
        let total = u64::from(state.connections);
        let active = self.in_flight.total().min(total);
        PoolFigures { active, idle: total - active, total }
    }

    /// Whether a health check has completed at all.
    pub fn health_checked(&self) -> bool {
        self.health_checks.load(Ordering::Relaxed) > 0
    }

    /// Why Redis is failing, if the last request to it failed.
    pub fn last_error(&self) -> Option<CacheError> {
        self.last_error.lock().expect("last error lock").clone()
    }

    /// The class of trouble Redis is in, if the last request to it failed.
    pub fn error_class(&self) -> Option<ErrorClass> {
        ErrorClass::from_u8(self.trouble.load(Ordering::Relaxed))
    }

    /// Converts a client error, counting it by class and logging a change of trouble once.
    fn failure(&self, error: &RedisError) -> CacheError {
        let classified = classify(error, self.read_timeout);
        self.note_failure(error_class(error), &classified);
        classified
    }

    fn note_failure(&self, class: ErrorClass, error: &CacheError) {
        self.observer.redis_error(class);
        if !class.is_health() {
            return;
        }
        let mut last = self.last_error.lock().expect("last error lock");
        let previous = self.trouble.swap(class as u8, Ordering::Relaxed);
        if previous != class as u8 {
            tracing::error!(class = class.as_str(), %error, "redis failing");
        }
        *last = Some(error.clone());
    }

    /// A request succeeded: clears the trouble (logged once).
    fn note_success(&self) {
        if self.trouble.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut last = self.last_error.lock().expect("last error lock");
        let previous = self.trouble.swap(0, Ordering::Relaxed);
        if let Some(class) = ErrorClass::from_u8(previous) {
            tracing::info!(was = class.as_str(), "redis answering again");
        }
        *last = None;
    }

    /// Whether the last health check succeeded, and its round-trip time.
    pub fn last_health(&self) -> (bool, Duration) {
        (self.connected.load(Ordering::Relaxed), Duration::from_micros(self.latency_micros.load(Ordering::Relaxed)))
    }

    /// A connection for one request: a handle from the hot set when it is fresh, else one
    /// taken from the pool (which then refreshes that slot).
    async fn connection(&self) -> Result<Pooled, CacheError> {
        let epoch = self.manager.epoch.load(Ordering::SeqCst);
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.hot.len();
        {
            let hot = self.hot[slot].read().expect("hot connection lock");
            if let Some((conn, taken_at)) = hot.as_ref()
                && taken_at.elapsed() < HOT_HANDLE_LIFETIME
                && conn.epoch == epoch
                && !conn.broken.load(Ordering::Relaxed)
            {
                return Ok(conn.clone());
            }
        }
        let conn = self.pooled_connection().await?;
        *self.hot[slot].write().expect("hot connection lock") = Some((conn.clone(), Instant::now()));
        Ok(conn)
    }

    async fn pooled_connection(&self) -> Result<Pooled, CacheError> {
        // With no connection at all (start-up, or every socket died with Redis), connect
        // here: bb8 would make us wait the whole poolTimeout for a connection that cannot
        // be made, and the breaker must hear about a refused connection at once.
        if self.pool.state().connections == 0 {
            // One request connects; the others wait for it and then share the pool, or
            // share its failure: a queue of requests each dialling a dead Redis in turn
            // would hold Checks for a multiple of dialTimeout.
            let waiting_since = Instant::now();
            let _connecting = self.connecting.lock().await;
            if let Some((failed_at, error)) = &*self.connect_failure.lock().expect("connect failure lock")
                && *failed_at >= waiting_since
            {
                return Err(error.clone());
            }
            if self.pool.state().connections == 0 {
                let epoch = self.manager.epoch.load(Ordering::SeqCst);
                let connection = match self.manager.open(None).await {
                    Ok(connection) => connection,
                    Err(error) => {
                        let error = self.failure(&error);
                        *self.connect_failure.lock().expect("connect failure lock") =
                            Some((Instant::now(), error.clone()));
                        return Err(error);
                    }
                };
                let pooled = Pooled { connection, broken: Arc::new(AtomicBool::new(false)), epoch };
                // If the pool filled up meanwhile, this connection serves one request.
                let _ = self.pool.add(pooled.clone());
                return Ok(pooled);
            }
        }
        loop {
            let pooled = self.pool.get().await.map_err(|e| match e {
                bb8::RunError::User(e) => self.failure(&e),
                bb8::RunError::TimedOut => {
                    let error =
                        CacheError::Unavailable("timed out waiting for a pooled connection (poolTimeout)".into());
                    self.note_failure(ErrorClass::PoolTimeout, &error);
                    error
                }
            })?;
            let conn = pooled.clone();
            // Returning a retired connection makes the pool drop it; then take another.
            if conn.epoch != self.manager.epoch.load(Ordering::SeqCst) {
                conn.broken.store(true, Ordering::Relaxed);
                continue;
            }
            if !conn.broken.load(Ordering::Relaxed) {
                return Ok(conn);
            }
        }
    }

    /// Runs one request, retrying on connection errors when `idempotent`.
    async fn run<T: redis::FromRedisValue>(&self, idempotent: bool, request: Request<'_>) -> Result<T, CacheError> {
        let attempts = if idempotent { self.max_retries + 1 } else { 1 };
        // Retries stop once the request has used one readTimeout: a Redis that cannot be
        // reached must not hold a Check for maxRetries times a connect attempt.
        let started = Instant::now();
        let mut last = None;
        let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
        for attempt in 0..attempts {
            if attempt > 0 {
                if started.elapsed() >= self.read_timeout {
                    break;
                }
                backoff.wait().await;
            }
            let mut conn = match self.connection().await {
                Ok(conn) => conn,
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            self.in_flight.add(1);
            let started = Instant::now();
            let result = match &request {
                Request::Cmd(cmd) => cmd.query_async(&mut conn.connection).await,
                Request::Pipe(pipe) => pipe.query_async(&mut conn.connection).await,
                Request::Script(script) => script.invoke_async(&mut conn.connection).await,
            };
            self.in_flight.add(-1);
            self.observer.redis_operation(request.op(), started.elapsed());
            match result {
                Ok(value) => {
                    self.note_success();
                    return Ok(value);
                }
                Err(error) => {
                    if breaks_connection(&error) {
                        conn.broken.store(true, Ordering::Relaxed);
                    }
                    // A dead socket or a demoted master: the other connections to the same
                    // server are suspect too (cluster connections reconnect per node themselves).
                    let server_gone = error.is_io_error() || error.is_connection_dropped() || is_readonly(&error);
                    if server_gone && !self.cluster && conn.epoch == self.manager.epoch.load(Ordering::SeqCst) {
                        self.manager.epoch.fetch_add(1, Ordering::SeqCst);
                    }
                    let classified = self.failure(&error);
                    // A timeout is not retried: it would multiply the caller's wait.
                    if !breaks_connection(&error) || error.is_timeout() {
                        return Err(classified);
                    }
                    last = Some(classified);
                }
            }
        }
        Err(last.unwrap_or_else(|| CacheError::Unavailable("no attempt made".into())))
    }

    /// `SET key value PX ttl` and `PUBLISH channel message` in one round trip.
    pub(crate) async fn set_and_publish(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        channel: &str,
        message: &str,
    ) -> Result<(), CacheError> {
        let key = self.redis_key(key);
        let ms = ttl_millis(ttl);
        if self.cluster {
            // A pipeline must stay within one slot in cluster mode; PUBLISH has none.
            self.run::<()>(true, Request::Cmd(redis::cmd("SET").arg(&key).arg(value).arg("PX").arg(ms))).await?;
            return self.publish(channel, message).await;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .ignore();
        self.run(true, Request::Pipe(&pipe)).await
    }

    /// `DEL key` and `PUBLISH channel message` in one round trip; `true` if the key existed.
    pub(crate) async fn delete_and_publish(&self, key: &str, channel: &str, message: &str) -> Result<bool, CacheError> {
        if self.cluster {
            let deleted = self.delete(key).await?;
            self.publish(channel, message).await?;
            return Ok(deleted);
        }
        let key = self.redis_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&key).cmd("PUBLISH").arg(channel).arg(message).ignore();
        let (deleted,): (u64,) = self.run(true, Request::Pipe(&pipe)).await?;
        Ok(deleted > 0)
    }

    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), CacheError> {
        self.run(true, Request::Cmd(redis::cmd("PUBLISH").arg(channel).arg(message))).await
    }

    /// A dedicated RESP3 connection subscribed to `channel`, whose messages (and a
    /// `Disconnection` notice when it drops) arrive on `push`. Unsubscribed when dropped.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        push: tokio::sync::mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Subscription, CacheError> {
        let mut connection = self.manager.open(Some(push)).await.map_err(|e| self.failure(&e))?;
        connection.subscribe(channel).await.map_err(|e| self.failure(&e))?;
        Ok(Subscription { _connection: connection })
    }

    /// Writes `field = value` into the hash `key` (outside the key prefix: replicas with
    /// different prefixes must meet there), keeps the hash for `ttl`, and returns all its
    /// fields: the roll call of the replicas of one deployment (see `cache::peers`).
    pub(crate) async fn roll_call(
        &self,
        key: &str,
        field: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<std::collections::HashMap<String, String>, CacheError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(key).arg(field).arg(value).ignore();
        pipe.cmd("PEXPIRE").arg(key).arg(ttl_millis(ttl)).ignore();
        pipe.cmd("HGETALL").arg(key);
        let (fields,): (std::collections::HashMap<String, String>,) = self.run(true, Request::Pipe(&pipe)).await?;
        Ok(fields)
    }

    /// All primaries' addresses in cluster mode, for commands that must run on every node.
    async fn cluster_primaries(&self) -> Result<Vec<(String, u16)>, CacheError> {
        let slots: Vec<Vec<Value>> = self.run(true, Request::Cmd(redis::cmd("CLUSTER").arg("SLOTS"))).await?;
        let mut primaries = Vec::new();
        for range in slots {
            if let Some(Value::Array(node)) = range.get(2)
                && let (Some(host), Some(Value::Int(port))) = (node.first(), node.get(1))
            {
                let host = match host {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    Value::SimpleString(s) => s.clone(),
                    _ => continue,
                };
                let entry = (host, u16::try_from(*port).unwrap_or(0));
                if !primaries.contains(&entry) {
                    primaries.push(entry);
                }
            }
        }
        Ok(primaries)
    }

    /// Deletes every key under our prefix on the node that `route` names (or the only node).
    async fn clear_node(&self, route: Option<redis::cluster_routing::RoutingInfo>) -> Result<(), CacheError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, keys): (u64, Vec<Vec<u8>>) = match &route {
                None => self.run(true, Request::Cmd(&scan)).await?,
                Some(route) => {
                    let mut conn = self.connection().await?;
                    let Connection::Cluster(cluster) = &mut conn.connection else {
                        unreachable!("routes only in cluster mode")
                    };
                    let value =
                        cluster.route_command(scan.clone(), route.clone()).await.map_err(|e| self.failure(&e))?;
                    redis::from_redis_value(value).map_err(|e| self.failure(&e.into()))?
                }
            };
            for key in keys {
                // One key per command: in cluster mode keys of one batch may span slots.
                self.run::<()>(true, Request::Cmd(redis::cmd("UNLINK").arg(&key))).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Escapes Redis glob characters in a literal prefix.
fn escape_glob(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Store for RedisStore {
    fn tier(&self) -> Tier {
        Tier::Redis
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let key = self.redis_key(key);
        self.run(true, Request::Cmd(redis::cmd("GET").arg(&key))).await
    }

    // Overridden so a read is one future, not `fetch` wrapping `get` (each async-trait layer
    // is a boxed future that is moved on every call: measured with callgrind).
    async fn fetch(&self, key: &str) -> Result<Option<(Vec<u8>, Tier)>, CacheError> {
        let key = self.redis_key(key);
        let value: Option<Vec<u8>> = self.run(true, Request::Cmd(redis::cmd("GET").arg(&key))).await?;
        Ok(value.map(|v| (v, Tier::Redis)))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        let key = self.redis_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let (value, pttl): (Option<Vec<u8>>, i64) = self.run(true, Request::Pipe(&pipe)).await?;
        // PTTL: -2 gone (expired between the two commands), -1 no TTL (not ours: treat as
        // one readTimeout, the shortest sensible remaining life).
        Ok(match (value, pttl) {
            (Some(value), ms) if ms > 0 => Some((value, Duration::from_millis(ms as u64))),
            (Some(value), -1) => Some((value, self.read_timeout)),
            _ => None,
        })
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let key = self.redis_key(key);
        let ms = ttl_millis(ttl);
        self.run(true, Request::Cmd(redis::cmd("SET").arg(&key).arg(value).arg("PX").arg(ms))).await
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let key = self.redis_key(key);
        let ms = ttl_millis(ttl);
        let reply: Option<String> =
            self.run(false, Request::Cmd(redis::cmd("SET").arg(&key).arg(value).arg("NX").arg("PX").arg(ms))).await?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.redis_key(key);
        let deleted: u64 = self.run(true, Request::Cmd(redis::cmd("DEL").arg(&key))).await?;
        Ok(deleted > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.redis_key(key);
        let n: u64 = self.run(true, Request::Cmd(redis::cmd("EXISTS").arg(&key))).await?;
        Ok(n > 0)
    }

    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError> {
        let key = self.redis_key(key);
        let mut invocation = self.compare_and_delete.key(&key);
        invocation.arg(expected);
        let n: i64 = self.run(false, Request::Script(&invocation)).await?;
        Ok(n > 0)
    }

    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let key = self.redis_key(key);
        let ms = ttl_millis(ttl);
        let mut invocation = self.compare_and_expire.key(&key);
        invocation.arg(expected).arg(ms);
        let n: i64 = self.run(false, Request::Script(&invocation)).await?;
        Ok(n > 0)
    }

    async fn clear(&self) -> Result<(), CacheError> {
        if !self.cluster {
            return self.clear_node(None).await;
        }
        for (host, port) in self.cluster_primaries().await? {
            let route = redis::cluster_routing::RoutingInfo::SingleNode(
                redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
            );
            self.clear_node(Some(route)).await?;
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), CacheError> {
        let started = Instant::now();
        let result = self.run::<()>(false, Request::Cmd(&redis::cmd("PING"))).await;
        let ok = result.is_ok();
        if ok {
            self.latency_micros
                .store(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        self.connected.store(ok, Ordering::Relaxed);
        self.health_checks.fetch_add(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors_for_the_breaker() {
        let timeout = Duration::from_secs(3);
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert!(classify(&io, timeout).counts_as_failure());
        let readonly = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(matches!(classify(&readonly, timeout), CacheError::NotServing(_)));
        assert!(breaks_connection(&readonly));
        let wrongtype = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "WRONGTYPE"));
        assert!(!classify(&wrongtype, timeout).counts_as_failure());
        // authgate's own credentials or permissions: refused, and it counts.
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "Password authentication failed"));
        assert!(matches!(classify(&auth, timeout), CacheError::Refused(_)));
        let noperm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "NOPERM"));
        assert!(matches!(classify(&noperm, timeout), CacheError::Refused(_)));
        assert!(classify(&noperm, timeout).counts_as_failure());
    }

    #[test]
    fn names_the_class_of_each_failure() {
        let cases = [
            (
                RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")),
                ErrorClass::ConnectionRefused,
            ),
            (
                RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")),
                ErrorClass::ConnectionLost,
            ),
            (RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")), ErrorClass::Timeout),
            (RedisError::from((ErrorKind::AuthenticationFailed, "Password authentication failed")), ErrorClass::Auth),
            (RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "NOPERM")), ErrorClass::NoPerm),
            (RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "LOADING")), ErrorClass::Loading),
            (RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY")), ErrorClass::ReadOnly),
            (RedisError::from((ErrorKind::Server(ServerErrorKind::Moved), "MOVED")), ErrorClass::Moved),
            (
                RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "CLUSTERDOWN")),
                ErrorClass::ClusterDown,
            ),
            (
                RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "WRONGTYPE")),
                ErrorClass::CommandRejected,
            ),
            (RedisError::from(std::io::Error::other("invalid peer certificate: UnknownIssuer")), ErrorClass::Tls),
            (
                RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ResponseError),
                    "An error was signalled by the server",
                    "unknown command 'HELLO'".to_owned(),
                )),
                ErrorClass::UnsupportedVersion,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error_class(&error), class, "{error}");
        }
    }

    /// Redis 5 and older answer the RESP3 handshake with "unknown command 'HELLO'": a
    /// refusal that names the version needed, not a rejected command.
    #[test]
    fn a_server_without_resp3_is_refused_with_the_version_needed() {
        let old = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "unknown command 'HELLO', with args beginning with: '3'".to_owned(),
        ));
        let error = classify(&old, Duration::from_secs(1));
        assert!(matches!(&error, CacheError::Refused(m) if m.contains("Redis 6.0 or later")), "{error}");
    }

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(escape_glob("app[1]*:"), "app\\[1\\]\\*:");
    }
}
