//! Environment variables that override the file: the seed's `REDIS_*` list verbatim, plus
//! `AUTHGATE_*` for everything else. The table is the documentation: `docs/configuration.md`
//! lists the same names, and a test checks that every entry names a real key.

/// How an environment variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// Taken verbatim as a string.
    Text,
    /// `true`/`false` (also `1`/`0`, any case).
    Bool,
    /// A non-negative integer.
    Integer,
    /// Seconds (`60`) or a duration string (`1m`).
    Duration,
    /// A comma-separated list; blanks around items are trimmed, empty items dropped.
    List,
}

/// One environment variable and the key path it sets.
#[derive(Debug, Clone, Copy)]
pub struct EnvVariable {
    pub name: &'static str,
    pub path: &'static str,
    pub kind: EnvKind,
}

const fn var(name: &'static str, path: &'static str, kind: EnvKind) -> EnvVariable {
    EnvVariable { name, path, kind }
}

use EnvKind::{Bool, Duration, Integer, List, Text};

/// Every environment variable authgate reads (besides the standard `OTEL_*` ones).
pub const ENV_VARIABLES: &[EnvVariable] = &[
    // The seed's list, verbatim.
    var("REDIS_ENABLED", "redis.enabled", Bool),
    var("REDIS_ADDRESS", "redis.address", Text),
    var("REDIS_PASSWORD", "redis.password", Text),
    var("REDIS_DB", "redis.db", Integer),
    var("REDIS_KEY_PREFIX", "redis.keyPrefix", Text),
    var("REDIS_CACHE_MODE", "redis.cacheMode", Text),
    var("REDIS_MAX_RETRIES", "redis.maxRetries", Integer),
    var("REDIS_POOL_SIZE", "redis.poolSize", Integer),
    var("REDIS_MIN_IDLE_CONNS", "redis.minIdleConns", Integer),
    var("REDIS_MAX_CONN_AGE", "redis.maxConnAge", Duration),
    var("REDIS_POOL_TIMEOUT", "redis.poolTimeout", Duration),
    var("REDIS_IDLE_TIMEOUT", "redis.idleTimeout", Duration),
    var("REDIS_DIAL_TIMEOUT", "redis.dialTimeout", Duration),
    var("REDIS_READ_TIMEOUT", "redis.readTimeout", Duration),
    var("REDIS_WRITE_TIMEOUT", "redis.writeTimeout", Duration),
    var("REDIS_CIRCUIT_BREAKER_THRESHOLD", "redis.circuitBreakerThreshold", Integer),
    var("REDIS_CIRCUIT_BREAKER_TIMEOUT", "redis.circuitBreakerTimeout", Duration),
    var("REDIS_TLS_ENABLED", "redis.tls.enabled", Bool),
    var("REDIS_TLS_CERT_FILE", "redis.tls.certFile", Text),
    var("REDIS_TLS_KEY_FILE", "redis.tls.keyFile", Text),
    var("REDIS_TLS_CA_FILE", "redis.tls.caFile", Text),
    var("REDIS_TLS_INSECURE_SKIP_VERIFY", "redis.tls.insecureSkipVerify", Bool),
    // Redis keys the seed documents without a variable, and our additions.
    var("REDIS_USERNAME", "redis.username", Text),
    var("REDIS_CLUSTER_MODE", "redis.clusterMode", Bool),
    var("REDIS_MAX_REDIRECTS", "redis.maxRedirects", Integer),
    var("REDIS_READ_ONLY", "redis.readOnly", Bool),
    var("REDIS_ROUTE_BY_LATENCY", "redis.routeByLatency", Bool),
    var("REDIS_ROUTE_RANDOMLY", "redis.routeRandomly", Bool),
    var("REDIS_SENTINEL_MASTER_NAME", "redis.sentinel.masterName", Text),
    var("REDIS_SENTINEL_ADDRESSES", "redis.sentinel.addresses", List),
    var("REDIS_SENTINEL_USERNAME", "redis.sentinel.username", Text),
    var("REDIS_SENTINEL_PASSWORD", "redis.sentinel.password", Text),
    var("REDIS_HYBRID_L1_SIZE", "redis.hybridL1Size", Integer),
    var("REDIS_HYBRID_L1_MEMORY_MB", "redis.hybridL1MemoryMB", Integer),
    var("REDIS_HYBRID_L1_MAX_TTL", "redis.hybridL1MaxTTL", Duration),
    var("REDIS_MEMORY_FALLBACK", "redis.memoryFallback", Bool),
    // Everything else.
    var("AUTHGATE_PROVIDER_URL", "providerURL", Text),
    var("AUTHGATE_CLIENT_ID", "clientID", Text),
    var("AUTHGATE_CLIENT_SECRET", "clientSecret", Text),
    var("AUTHGATE_TOKEN_ENDPOINT_AUTH_METHOD", "tokenEndpointAuthMethod", Text),
    var("AUTHGATE_SESSION_ENCRYPTION_KEY", "sessionEncryptionKey", Text),
    var("AUTHGATE_PREVIOUS_SESSION_ENCRYPTION_KEYS", "previousSessionEncryptionKeys", List),
    var("AUTHGATE_CALLBACK_URL", "callbackURL", Text),
    var("AUTHGATE_LOGOUT_URL", "logoutURL", Text),
    var("AUTHGATE_POST_LOGOUT_REDIRECT_URI", "postLogoutRedirectURI", Text),
    var("AUTHGATE_SCOPES", "scopes", List),
    var("AUTHGATE_EXCLUDED_URLS", "excludedURLs", List),
    var("AUTHGATE_ALLOWED_USERS", "allowedUsers", List),
    var("AUTHGATE_ALLOWED_USER_DOMAINS", "allowedUserDomains", List),
    var("AUTHGATE_ALLOWED_ROLES_AND_GROUPS", "allowedRolesAndGroups", List),
    var("AUTHGATE_ALLOW_UNVERIFIED_EMAIL", "allowUnverifiedEmail", Bool),
    var("AUTHGATE_ROLE_CLAIM_NAME", "roleClaimName", Text),
    var("AUTHGATE_GROUP_CLAIM_NAME", "groupClaimName", Text),
    var("AUTHGATE_USER_IDENTIFIER_CLAIM", "userIdentifierClaim", Text),
    var("AUTHGATE_STRIP_HEADERS", "stripHeaders", List),
    var("AUTHGATE_FORWARD_AUTH_CONVENTION", "forwardAuth.convention", Text),
    var("AUTHGATE_FORWARD_AUTH_TRUSTED_PROXIES", "forwardAuth.trustedProxies", List),
    var("AUTHGATE_FORWARD_AUTH_SHARED_SECRET", "forwardAuth.sharedSecret", Text),
    var("AUTHGATE_FORWARD_AUTH_SHARED_SECRET_HEADER", "forwardAuth.sharedSecretHeader", Text),
    var("AUTHGATE_COOKIE_PREFIX", "cookiePrefix", Text),
    var("AUTHGATE_COOKIE_DOMAIN", "cookieDomain", Text),
    var("AUTHGATE_COOKIE_MAX_AGE", "cookieMaxAge", Duration),
    var("AUTHGATE_SESSION_MAX_AGE", "sessionMaxAge", Duration),
    var("AUTHGATE_FORCE_HTTPS", "forceHTTPS", Bool),
    var("AUTHGATE_ENABLE_PKCE", "enablePKCE", Bool),
    var("AUTHGATE_AUDIENCE", "audience", Text),
    var("AUTHGATE_BEARER_TOKEN_TYPES", "bearerTokenTypes", List),
    var("AUTHGATE_BEARER_ALLOW_NONCE", "bearerAllowNonce", Bool),
    var("AUTHGATE_REFRESH_GRACE_PERIOD_SECONDS", "refreshGracePeriodSeconds", Integer),
    var("AUTHGATE_DISABLE_REPLAY_DETECTION", "disableReplayDetection", Bool),
    var("AUTHGATE_CLOCK_SKEW_SECONDS", "clockSkewSeconds", Integer),
    var("AUTHGATE_FETCH_USER_INFO", "fetchUserInfo", Bool),
    var("AUTHGATE_STRIP_AUTH_COOKIES", "stripAuthCookies", Bool),
    var("AUTHGATE_LOG_LEVEL", "logLevel", Text),
    var("AUTHGATE_LOG_FORMAT", "logFormat", Text),
    var("AUTHGATE_GRPC_ADDRESS", "grpcAddress", Text),
    var("AUTHGATE_HTTP_ADDRESS", "httpAddress", Text),
    var("AUTHGATE_ADMIN_ADDRESS", "adminAddress", Text),
    var("AUTHGATE_SHUTDOWN_TIMEOUT", "shutdownTimeout", Duration),
    var("AUTHGATE_DRAIN_DELAY", "drainDelay", Duration),
    var("AUTHGATE_PROVIDER_TIMEOUT", "providerTimeout", Duration),
    var("AUTHGATE_MEMORY_CACHE_SIZE", "memoryCacheSize", Integer),
    var("AUTHGATE_MEMORY_CACHE_MEMORY_MB", "memoryCacheMemoryMB", Integer),
];
