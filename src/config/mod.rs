//! The configuration tree: one YAML file plus environment variables, the environment wins.
//!
//! Key names are the seed's (traefikoidc) camelCase names, so that a traefikoidc
//! configuration works unchanged. Every field documents its default; every key that is
//! accepted has an effect; an unknown key is an error. Loading ([`load`]) reports every
//! problem at once, each with its key path; [`Config::validate`] is pure (no network).

mod display;
mod duration;
mod env;
mod load;
mod secret;
mod validate;

pub use duration::Seconds;
pub use env::{ENV_VARIABLES, EnvKind, EnvVariable};
pub use load::{ConfigError, Problem, load, load_lenient, load_str, load_str_lenient};
pub use secret::Secret;
pub use validate::parse_cidr;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The whole configuration. Field docs end with the default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Issuer URL of the OpenID Provider; discovery is read from
    /// `{providerURL}/.well-known/openid-configuration`. Required.
    #[serde(rename = "providerURL")]
    pub provider_url: String,
    /// OAuth 2.0 client id registered at the provider. Required.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// OAuth 2.0 client secret; empty for a public client (then PKCE is required). Default: none.
    #[serde(rename = "clientSecret")]
    pub client_secret: Secret,
    /// How the client authenticates at the token endpoint: `client_secret_basic` or
    /// `client_secret_post`; empty picks basic unless the provider only offers post. Default empty.
    #[serde(rename = "tokenEndpointAuthMethod")]
    pub token_endpoint_auth_method: String,
    /// Secret of at least 32 characters from which the AES-256-GCM session key is derived
    /// (HKDF-SHA256). Required, never defaulted.
    #[serde(rename = "sessionEncryptionKey")]
    pub session_encryption_key: Secret,
    /// Earlier `sessionEncryptionKey` values still accepted for decrypting sessions, so a key
    /// can be rotated without logging everyone out. Default: none.
    #[serde(rename = "previousSessionEncryptionKeys")]
    pub previous_session_encryption_keys: Vec<Secret>,
    /// Path (or absolute URL) of the OIDC redirect URI handled by authgate. Default `/oauth2/callback`.
    #[serde(rename = "callbackURL")]
    pub callback_url: String,
    /// Path (or absolute URL) that logs the user out. Default `/oauth2/logout`.
    #[serde(rename = "logoutURL")]
    pub logout_url: String,
    /// Where the provider sends the browser after logout. Default `/`.
    #[serde(rename = "postLogoutRedirectURI")]
    pub post_logout_redirect_uri: String,
    /// Scopes requested at login; must include `openid`. Default `[openid, profile, email]`.
    pub scopes: Vec<String>,
    /// Path prefixes (segment-aware) that are allowed without authentication. Default none.
    #[serde(rename = "excludedURLs")]
    pub excluded_urls: Vec<String>,
    /// Users allowed in, matched ASCII-case-insensitively against `userIdentifierClaim` or
    /// the verified `email`; empty means no user restriction. Default none.
    #[serde(rename = "allowedUsers")]
    pub allowed_users: Vec<String>,
    /// Domains of verified e-mails allowed in (ASCII-case-insensitive). Default none.
    #[serde(rename = "allowedUserDomains")]
    pub allowed_user_domains: Vec<String>,
    /// Trust an `email` the provider has not verified (`email_verified` not true) as an
    /// identity, in `X-Auth-Request-Email`, `allowedUsers` and `allowedUserDomains`. Unsafe
    /// with providers where users choose or change their address unverified. Default false.
    #[serde(rename = "allowUnverifiedEmail")]
    pub allow_unverified_email: bool,
    /// Roles or groups of which the user needs at least one. Default none.
    #[serde(rename = "allowedRolesAndGroups")]
    pub allowed_roles_and_groups: Vec<String>,
    /// Claim (dotted path allowed, e.g. `realm_access.roles`) holding roles. Default `roles`.
    #[serde(rename = "roleClaimName")]
    pub role_claim_name: String,
    /// Claim (dotted path allowed) holding groups. Default `groups`.
    #[serde(rename = "groupClaimName")]
    pub group_claim_name: String,
    /// Claim that identifies the user in `X-Forwarded-User` and `allowedUsers`; a token
    /// without it (or with it empty) names nobody, there is no fallback. With `email` (the
    /// traefikoidc default) the address must be verified (`allowUnverifiedEmail`); `sub` is
    /// the provider's stable identifier and the safer choice where upstreams map identities
    /// to accounts. Default `email`.
    #[serde(rename = "userIdentifierClaim")]
    pub user_identifier_claim: String,
    /// Extra headers for the upstream, each a name and a template over the claims. Default none.
    pub headers: Vec<HeaderTemplate>,
    /// More request headers removed before the upstream sees the request (on top of the
    /// identity headers authgate sets and the `headers` names), because some upstream
    /// might trust them. Default: the identity headers other proxies use
    /// (`X-Forwarded-Email`, `X-Forwarded-Groups`, `X-Forwarded-Preferred-Username`,
    /// `X-Forwarded-Access-Token`, `X-Auth-Request-Groups`,
    /// `X-Auth-Request-Preferred-Username`, `X-Auth-Request-Access-Token`, `Remote-User`,
    /// `X-Remote-User`, `X-Remote-Email`, `X-Remote-Groups`).
    #[serde(rename = "stripHeaders")]
    pub strip_headers: Vec<String>,
    /// Prefix of the cookies authgate sets. Default `_authgate_`.
    #[serde(rename = "cookiePrefix")]
    pub cookie_prefix: String,
    /// `Domain` attribute of the session cookie; empty means host-only. Default empty.
    #[serde(rename = "cookieDomain")]
    pub cookie_domain: String,
    /// `Max-Age` of the session cookie in seconds; 0 makes it a browser-session cookie. Default 86400.
    #[serde(rename = "cookieMaxAge")]
    pub cookie_max_age: Seconds,
    /// Absolute lifetime of a session (not sliding). Default 86400 s.
    #[serde(rename = "sessionMaxAge")]
    pub session_max_age: Seconds,
    /// Build redirect URLs with `https` and mark cookies `Secure`. Default true.
    #[serde(rename = "forceHTTPS")]
    pub force_https: bool,
    /// Use PKCE (S256) in the authorization code flow. Default true.
    #[serde(rename = "enablePKCE")]
    pub enable_pkce: bool,
    /// Expected `aud` of bearer tokens; empty means the `clientID`. Give APIs an audience
    /// of their own: with the default, every token issued *to* authgate's client (ID
    /// tokens included) is also an audience match. Default empty.
    pub audience: String,
    /// JOSE `typ` header values a bearer token may carry (case-insensitive; `application/`
    /// ignored), e.g. `[at+jwt]` for RFC 9068 access tokens. Empty accepts any `typ` except
    /// those naming another kind of token (`logout+jwt`, `id_token+jwt`, …). Default empty.
    #[serde(rename = "bearerTokenTypes")]
    pub bearer_token_types: Vec<String>,
    /// Accept bearer tokens carrying a `nonce` claim (for providers that put one in access
    /// tokens). By default such a token is taken for an ID token and refused. Default false.
    #[serde(rename = "bearerAllowNonce")]
    pub bearer_allow_nonce: bool,
    /// Refresh tokens this many seconds before they expire. Default 60.
    #[serde(rename = "refreshGracePeriodSeconds")]
    pub refresh_grace_period_seconds: u64,
    /// After login, also read the provider's userinfo endpoint and add its claims to the
    /// ID token's (for providers that keep e-mail or groups out of the ID token). Default false.
    #[serde(rename = "fetchUserInfo")]
    pub fetch_user_info: bool,
    /// Clock skew tolerated on `exp` and `nbf` of tokens from the provider (and on an ID
    /// token's `iat`), in seconds. Default 30.
    #[serde(rename = "clockSkewSeconds")]
    pub clock_skew_seconds: u64,
    /// Remove authgate's own cookies (session, login flow) from the request the upstream
    /// gets, so it never sees a session id. Default true.
    #[serde(rename = "stripAuthCookies")]
    pub strip_auth_cookies: bool,
    /// Turn off replay detection for the one-time tokens: the ID token at the callback (one
    /// session per ID token) and back-channel logout tokens (their `jti`). Default false.
    #[serde(rename = "disableReplayDetection")]
    pub disable_replay_detection: bool,
    /// `trace`, `debug`, `info`, `warn` or `error`. Default `info`.
    #[serde(rename = "logLevel")]
    pub log_level: LogLevel,
    /// `text` or `json`. Default `text`.
    #[serde(rename = "logFormat")]
    pub log_format: LogFormat,
    /// Listener for ext_authz Check, gRPC health and reflection: `ip:port`, or
    /// `unix:/absolute/path` for a Unix-domain socket (a sidecar beside Envoy in the same pod
    /// or host: cheaper than TCP; Envoy's cluster uses a `pipe` address). Default `0.0.0.0:9001`.
    #[serde(rename = "grpcAddress")]
    pub grpc_address: String,
    /// Listener for the forward-auth bridge and back-channel logout. Default `0.0.0.0:8080`.
    #[serde(rename = "httpAddress")]
    pub http_address: String,
    /// Listener for `/healthz`, `/readyz` and `/metrics`. Default `0.0.0.0:9090`.
    #[serde(rename = "adminAddress")]
    pub admin_address: String,
    /// After SIGTERM/SIGINT, how long authgate keeps serving while it already reports
    /// NOT_SERVING (gRPC health) and 503 (`/readyz`), so that proxies health-checking it
    /// stop sending requests before the listeners close. Longer than the proxies' health-check
    /// interval times their unhealthy threshold. Default 5 s.
    #[serde(rename = "drainDelay")]
    pub drain_delay: Seconds,
    /// Longest wait for one request to the provider (discovery, keys, token endpoint,
    /// userinfo), connecting included. A login or refresh makes such requests inside a
    /// Check, so a hung provider must fail the Check (with an error page) before the
    /// proxy's ext_authz timeout does (3 s in the examples). Default 2 s.
    #[serde(rename = "providerTimeout")]
    pub provider_timeout: Seconds,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT. Default 15 s.
    #[serde(rename = "shutdownTimeout")]
    pub shutdown_timeout: Seconds,
    /// Most entries of the memory cache (memory mode, and the fallback while Redis is
    /// down). Default 100000.
    #[serde(rename = "memoryCacheSize")]
    pub memory_cache_size: u64,
    /// Most megabytes of keys and values in the memory cache. Default 256.
    #[serde(rename = "memoryCacheMemoryMB")]
    pub memory_cache_memory_mb: u64,
    /// The seed's Redis / cache block.
    pub redis: RedisConfig,
    /// The forward-auth bridge (`/auth`): which proxy calls it, and from where.
    #[serde(rename = "forwardAuth")]
    pub forward_auth: ForwardAuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            provider_url: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            token_endpoint_auth_method: String::new(),
            session_encryption_key: Secret::default(),
            previous_session_encryption_keys: Vec::new(),
            callback_url: "/oauth2/callback".into(),
            logout_url: "/oauth2/logout".into(),
            post_logout_redirect_uri: "/".into(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            excluded_urls: Vec::new(),
            allowed_users: Vec::new(),
            allowed_user_domains: Vec::new(),
            allow_unverified_email: false,
            allowed_roles_and_groups: Vec::new(),
            role_claim_name: "roles".into(),
            group_claim_name: "groups".into(),
            user_identifier_claim: "email".into(),
            headers: Vec::new(),
            strip_headers: [
                "X-Forwarded-Email",
                "X-Forwarded-Groups",
                "X-Forwarded-Preferred-Username",
                "X-Forwarded-Access-Token",
                "X-Auth-Request-Groups",
                "X-Auth-Request-Preferred-Username",
                "X-Auth-Request-Access-Token",
                "Remote-User",
                "X-Remote-User",
                "X-Remote-Email",
                "X-Remote-Groups",
            ]
            .map(String::from)
            .to_vec(),
            cookie_prefix: "_authgate_".into(),
            cookie_domain: String::new(),
            cookie_max_age: Seconds::from_secs(86_400),
            session_max_age: Seconds::from_secs(86_400),
            force_https: true,
            enable_pkce: true,
            audience: String::new(),
            bearer_token_types: Vec::new(),
            bearer_allow_nonce: false,
            refresh_grace_period_seconds: 60,
            fetch_user_info: false,
            clock_skew_seconds: 30,
            strip_auth_cookies: true,
            disable_replay_detection: false,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            grpc_address: "0.0.0.0:9001".into(),
            http_address: "0.0.0.0:8080".into(),
            admin_address: "0.0.0.0:9090".into(),
            drain_delay: Seconds::from_secs(5),
            provider_timeout: Seconds::from_secs(2),
            shutdown_timeout: Seconds::from_secs(15),
            memory_cache_size: 100_000,
            memory_cache_memory_mb: 256,
            redis: RedisConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
        }
    }
}

impl Config {
    /// The cache mode in effect: `memory` whenever Redis is not enabled (the seed's
    /// rollback: `REDIS_ENABLED=false` falls back to memory whatever `cacheMode` says),
    /// otherwise `cacheMode`, which defaults to `hybrid` once Redis is enabled.
    pub fn effective_cache_mode(&self) -> CacheMode {
        if !self.redis.enabled {
            return CacheMode::Memory;
        }
        self.redis.cache_mode.unwrap_or(CacheMode::Hybrid)
    }

    /// The listener addresses, parsed. Valid after [`Config::validate`] passed.
    pub fn listen_addresses(&self) -> Result<ListenAddresses, String> {
        let tcp = |key: &str, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| format!("{key} must be ip:port, got {value:?}"))
        };
        Ok(ListenAddresses {
            grpc: ListenAddress::parse(&self.grpc_address).map_err(|e| format!("grpcAddress {e}"))?,
            http: tcp("httpAddress", &self.http_address)?,
            admin: tcp("adminAddress", &self.admin_address)?,
        })
    }

    /// The `aud` expected in bearer tokens.
    pub fn expected_audience(&self) -> &str {
        if self.audience.is_empty() { &self.client_id } else { &self.audience }
    }
}

/// The three listener addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddresses {
    pub grpc: ListenAddress,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// Where a listener accepts connections: a TCP address, or a Unix-domain socket
/// (`unix:/absolute/path`; only `grpcAddress` offers it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

/// Longest socket path Linux accepts (`sun_path` is 108 bytes with its terminating NUL).
const MAX_UNIX_SOCKET_PATH: usize = 107;

impl ListenAddress {
    /// `ip:port` or `unix:/absolute/path`; the error says what was expected.
    pub fn parse(value: &str) -> Result<ListenAddress, String> {
        if let Some(path) = value.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!(
                    "must be unix: followed by an absolute path such as unix:/run/authgate/grpc.sock, got {value:?}"
                ));
            }
            if path.len() > MAX_UNIX_SOCKET_PATH {
                return Err(format!(
                    "socket path is {} bytes; Unix sockets allow at most {MAX_UNIX_SOCKET_PATH}",
                    path.len()
                ));
            }
            if path.ends_with('/') || path.contains('\0') {
                return Err(format!("must name a socket file, got {value:?}"));
            }
            return Ok(ListenAddress::Unix(path.into()));
        }
        value
            .parse()
            .map(ListenAddress::Tcp)
            .map_err(|_| format!("must be ip:port such as 0.0.0.0:9001, or unix:/absolute/path, got {value:?}"))
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Tcp(addr) => addr.fmt(f),
            ListenAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A header sent to the upstream on every allowed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeaderTemplate {
    /// Header name, e.g. `X-User-Email`.
    pub name: String,
    /// Template, e.g. `{{.Claims.email}}` (the seed's Go-template syntax).
    pub value: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where state lives: the seed's three cache modes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// In-process only; for a single instance.
    Memory,
    /// Every operation goes to Redis; shared by all replicas.
    Redis,
    /// A local L1 in front of Redis, invalidated across replicas.
    Hybrid,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Memory => "memory",
            CacheMode::Redis => "redis",
            CacheMode::Hybrid => "hybrid",
        }
    }
}

/// Which headers describe the original request on the forward-auth bridge.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardAuthConvention {
    /// Traefik `ForwardAuth`: `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`.
    Traefik,
    /// Caddy `forward_auth`: the same `X-Forwarded-*` headers.
    Caddy,
    /// nginx `auth_request` (and ingress-nginx): `X-Original-Method`, `X-Original-URI` or
    /// `X-Original-URL`, and `Host`.
    Nginx,
}

impl ForwardAuthConvention {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardAuthConvention::Traefik => "traefik",
            ForwardAuthConvention::Caddy => "caddy",
            ForwardAuthConvention::Nginx => "nginx",
        }
    }
}

/// The forward-auth bridge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// The proxy convention: `traefik` or `caddy` (original request in `X-Forwarded-Method`,
    /// `-Proto`, `-Host`, `-Uri`) or `nginx` (`X-Original-Method`, `X-Original-URI` or
    /// `X-Original-URL`, `Host`). Only those headers are read; a call missing them, or carrying
    /// the other convention's with different values, is refused (400). Default `traefik`.
    pub convention: ForwardAuthConvention,
    /// Addresses or CIDRs of the proxies allowed to call the bridge; a call from anywhere
    /// else is refused (400). Default loopback (`127.0.0.0/8`, `::1`).
    #[serde(rename = "trustedProxies")]
    pub trusted_proxies: Vec<String>,
    /// A secret the proxy adds to every call in `sharedSecretHeader`, so that clients who
    /// can reach the bridge cannot drive it. Default empty (not required).
    #[serde(rename = "sharedSecret")]
    pub shared_secret: Secret,
    /// The header that carries `sharedSecret`. Default `X-Authgate-Secret`.
    #[serde(rename = "sharedSecretHeader")]
    pub shared_secret_header: String,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            convention: ForwardAuthConvention::Traefik,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1/128".into()],
            shared_secret: Secret::default(),
            shared_secret_header: "X-Authgate-Secret".into(),
        }
    }
}

/// The seed's `redis` block, plus ACL `username` and Sentinel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Use Redis at all; when false the cache is memory-only whatever `cacheMode` says. Default false.
    pub enabled: bool,
    /// `host:port`; in cluster mode a comma-separated list of seed nodes. Default `localhost:6379`.
    pub address: String,
    /// ACL user name (Redis 6+); empty means the `default` user. Default empty.
    pub username: String,
    /// Password (`AUTH`). Default empty.
    pub password: Secret,
    /// Database number; must be 0 in cluster mode. Default 0.
    pub db: u32,
    /// Prefix of every key authgate writes, and of its pub/sub channel. Default `authgate`.
    #[serde(rename = "keyPrefix")]
    pub key_prefix: String,
    /// `memory`, `redis` or `hybrid`. Default: `hybrid` when `enabled`, else `memory`.
    #[serde(rename = "cacheMode")]
    pub cache_mode: Option<CacheMode>,
    /// Retries of an idempotent command after a connection error. Default 3.
    #[serde(rename = "maxRetries")]
    pub max_retries: u32,
    /// Most connections kept open to Redis. Default 10.
    #[serde(rename = "poolSize")]
    pub pool_size: u32,
    /// Connections kept open even when idle. Default 5.
    #[serde(rename = "minIdleConns")]
    pub min_idle_conns: u32,
    /// A connection older than this is replaced; 0 disables. Default 3600 s.
    #[serde(rename = "maxConnAge")]
    pub max_conn_age: Seconds,
    /// Longest wait for a connection from the pool. Default 250 ms (the seed's 4 s is
    /// longer than any proxy waits for a Check; see `readTimeout`).
    #[serde(rename = "poolTimeout")]
    pub pool_timeout: Seconds,
    /// An idle connection beyond `minIdleConns` is closed after this; 0 disables. Default 900 s.
    #[serde(rename = "idleTimeout")]
    pub idle_timeout: Seconds,
    /// Connect timeout: TCP, TLS and the `HELLO`/`AUTH` handshake. Default 500 ms.
    #[serde(rename = "dialTimeout")]
    pub dial_timeout: Seconds,
    /// Longest wait for a reply. Default 250 ms: a Check makes a few Redis round trips in
    /// a row and must fail over to memory well within the proxy's ext_authz timeout (3 s
    /// recommended), and the breaker must hear of a stalled Redis from the Checks
    /// themselves, not only from its once-a-second health probe. Redis answers in well
    /// under a millisecond on a LAN.
    #[serde(rename = "readTimeout")]
    pub read_timeout: Seconds,
    /// How long written data may stay unacknowledged before the connection is declared
    /// dead (the socket's `TCP_USER_TIMEOUT`). Default 1 s (below that, one lost segment
    /// can kill a healthy connection).
    #[serde(rename = "writeTimeout")]
    pub write_timeout: Seconds,
    /// Consecutive failures that open the circuit breaker. Default 5.
    #[serde(rename = "circuitBreakerThreshold")]
    pub circuit_breaker_threshold: u32,
    /// How long the breaker stays open before a trial request (half-open); the health
    /// probe makes the trial, so the breaker closes by itself this long after Redis is
    /// back at the latest. Default 10 s.
    #[serde(rename = "circuitBreakerTimeout")]
    pub circuit_breaker_timeout: Seconds,
    /// TLS to Redis.
    pub tls: RedisTlsConfig,
    /// Talk to a Redis Cluster. Default false.
    #[serde(rename = "clusterMode")]
    pub cluster_mode: bool,
    /// Most MOVED/ASK redirects followed for one command in cluster mode. Default 3.
    #[serde(rename = "maxRedirects")]
    pub max_redirects: u32,
    /// Cluster mode: send reads to replicas. Default false.
    #[serde(rename = "readOnly")]
    pub read_only: bool,
    /// Cluster mode: send reads to the node with the lowest latency. Default false.
    #[serde(rename = "routeByLatency")]
    pub route_by_latency: bool,
    /// Cluster mode: send reads to a random node of the slot. Default false.
    #[serde(rename = "routeRandomly")]
    pub route_randomly: bool,
    /// Redis Sentinel; when `masterName` is set, `address` is ignored and the master is
    /// discovered (and followed across failovers) through the sentinels.
    pub sentinel: SentinelConfig,
    /// Hybrid mode: most entries in the local L1. Default 10000.
    #[serde(rename = "hybridL1Size")]
    pub hybrid_l1_size: u64,
    /// Hybrid mode: most megabytes of keys and values in the local L1. Default 64.
    #[serde(rename = "hybridL1MemoryMB")]
    pub hybrid_l1_memory_mb: u64,
    /// Hybrid mode: longest time an L1 copy is served without asking Redis, the bound on
    /// staleness if an invalidation is ever lost. Default 60 s.
    #[serde(rename = "hybridL1MaxTTL")]
    pub hybrid_l1_max_ttl: Seconds,
    /// While the circuit breaker is open, serve from memory (true) or fail requests that
    /// need the cache (false; readiness then fails too). Default true.
    #[serde(rename = "memoryFallback")]
    pub memory_fallback: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: "localhost:6379".into(),
            username: String::new(),
            password: Secret::default(),
            db: 0,
            key_prefix: "authgate".into(),
            cache_mode: None,
            max_retries: 3,
            pool_size: 10,
            min_idle_conns: 5,
            max_conn_age: Seconds::from_secs(3600),
            pool_timeout: Seconds::from_millis(250),
            idle_timeout: Seconds::from_secs(900),
            dial_timeout: Seconds::from_millis(500),
            read_timeout: Seconds::from_millis(250),
            write_timeout: Seconds::from_secs(1),
            circuit_breaker_threshold: 5,
            circuit_breaker_timeout: Seconds::from_secs(10),
            tls: RedisTlsConfig::default(),
            cluster_mode: false,
            max_redirects: 3,
            read_only: false,
            route_by_latency: false,
            route_randomly: false,
            sentinel: SentinelConfig::default(),
            hybrid_l1_size: 10_000,
            hybrid_l1_memory_mb: 64,
            hybrid_l1_max_ttl: Seconds::from_secs(60),
            memory_fallback: true,
        }
    }
}

/// The seed's `redis.tls` block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// Connect with TLS (`rediss://`). Default false.
    pub enabled: bool,
    /// Client certificate (PEM) for mutual TLS; needs `keyFile`. Default none.
    #[serde(rename = "certFile")]
    pub cert_file: String,
    /// Client private key (PEM); needs `certFile`. Default none.
    #[serde(rename = "keyFile")]
    pub key_file: String,
    /// CA bundle (PEM) that signs the server certificate; empty means the system roots. Default none.
    #[serde(rename = "caFile")]
    pub ca_file: String,
    /// Accept any server certificate. For tests only. Default false.
    #[serde(rename = "insecureSkipVerify")]
    pub insecure_skip_verify: bool,
}

/// Redis Sentinel discovery (new; the seed has none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// Name of the monitored master; empty disables Sentinel. Default empty.
    #[serde(rename = "masterName")]
    pub master_name: String,
    /// Sentinel `host:port` list. Default none.
    pub addresses: Vec<String>,
    /// ACL user for the sentinels. Default empty.
    pub username: String,
    /// Password of the sentinels (often different from the data nodes'). Default empty.
    pub password: Secret,
}

impl SentinelConfig {
    pub fn enabled(&self) -> bool {
        !self.master_name.is_empty()
    }
}
