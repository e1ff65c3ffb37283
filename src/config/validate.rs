//! Validation: pure (no network, no clock), returns every problem at once with its key path.
//! Reachability of the provider and of Redis is checked by readiness, not here.

use super::{Config, ListenAddress, Problem, RedisConfig};
use std::net::SocketAddr;

/// The shortest accepted `sessionEncryptionKey`, in bytes (the seed's rule).
pub const MIN_SESSION_KEY_LEN: usize = 32;

impl Config {
    /// Every problem with this configuration; empty when it is usable.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Problems::default();

        // Identity provider and client.
        if self.provider_url.is_empty() {
            p.add("providerURL", "required: the issuer URL of the OpenID Provider");
        } else if let Err(why) = absolute_http_url(&self.provider_url) {
            p.add("providerURL", why);
        }
        if self.client_id.is_empty() {
            p.add("clientID", "required: the client id registered at the OpenID Provider");
        }
        if self.client_secret.is_empty() && !self.enable_pkce {
            p.add("clientSecret", "required unless enablePKCE is true (a public client must use PKCE)");
        }

        if !["", "client_secret_basic", "client_secret_post"].contains(&self.token_endpoint_auth_method.as_str()) {
            p.add(
                "tokenEndpointAuthMethod",
                format!("must be client_secret_basic or client_secret_post, got {:?}", self.token_endpoint_auth_method),
            );
        }

        // Session encryption: required, never defaulted, long enough, not obviously guessable.
        let key = self.session_encryption_key.expose();
        if key.is_empty() {
            p.add("sessionEncryptionKey", format!("required: a secret of at least {MIN_SESSION_KEY_LEN} characters"));
        } else if key.len() < MIN_SESSION_KEY_LEN {
            p.add(
                "sessionEncryptionKey",
                format!("too short: {} characters, at least {MIN_SESSION_KEY_LEN} needed", key.len()),
            );
        } else if estimated_entropy_bits(key) < MIN_SESSION_KEY_BITS {
            p.add(
                "sessionEncryptionKey",
                format!(
                    "not random enough (about {:.0} bits by its characters, at least {MIN_SESSION_KEY_BITS} needed): \
                     use 32 random bytes, e.g. `openssl rand -base64 32`",
                    estimated_entropy_bits(key)
                ),
            );
        }
        for (i, old) in self.previous_session_encryption_keys.iter().enumerate() {
            if old.expose().len() < MIN_SESSION_KEY_LEN {
                p.add(
                    format!("previousSessionEncryptionKeys[{i}]"),
                    format!("too short: at least {MIN_SESSION_KEY_LEN} characters needed"),
                );
            }
        }

        // Endpoints handled by authgate.
        for (key, value) in [("callbackURL", &self.callback_url), ("logoutURL", &self.logout_url)] {
            if let Err(why) = path_or_url(value) {
                p.add(key, why);
            }
        }
        if self.callback_url == self.logout_url {
            p.add("logoutURL", format!("must differ from callbackURL ({:?})", self.callback_url));
        }
        if let Err(why) = path_or_url(&self.post_logout_redirect_uri) {
            p.add("postLogoutRedirectURI", why);
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            p.add("scopes", "must include \"openid\"");
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
                p.add(format!("scopes[{i}]"), format!("not a valid scope token: {scope:?}"));
            }
        }
        for (i, prefix) in self.excluded_urls.iter().enumerate() {
            if !prefix.starts_with('/') {
                p.add(format!("excludedURLs[{i}]"), format!("must be a path starting with '/', got {prefix:?}"));
            }
        }

        // Policy inputs.
        for (i, domain) in self.allowed_user_domains.iter().enumerate() {
            if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
                p.add(
                    format!("allowedUserDomains[{i}]"),
                    format!("must be a bare domain such as example.com, got {domain:?}"),
                );
            }
        }
        for (key, claim) in [
            ("roleClaimName", &self.role_claim_name),
            ("groupClaimName", &self.group_claim_name),
            ("userIdentifierClaim", &self.user_identifier_claim),
        ] {
            if claim.is_empty() || claim.split('.').any(str::is_empty) {
                p.add(key, format!("must be a claim name or dotted path, got {claim:?}"));
            }
        }
        for (i, header) in self.headers.iter().enumerate() {
            if !is_header_name(&header.name) {
                p.add(format!("headers[{i}].name"), format!("not a valid HTTP header name: {:?}", header.name));
            }
        }

        // Cookies and session lifetime.
        if self.cookie_prefix.is_empty() || !self.cookie_prefix.chars().all(is_cookie_name_char) {
            p.add(
                "cookiePrefix",
                format!("must be non-empty and use only cookie-name characters, got {:?}", self.cookie_prefix),
            );
        }
        if !self.cookie_domain.is_empty() && !is_cookie_domain(&self.cookie_domain) {
            p.add(
                "cookieDomain",
                format!(
                    "must be a domain name such as example.com (no scheme, port or path), got {:?}",
                    self.cookie_domain
                ),
            );
        }
        if self.session_max_age.is_zero() {
            p.add("sessionMaxAge", "must be greater than 0");
        }
        if self.provider_timeout.is_zero() {
            p.add("providerTimeout", "must be greater than 0");
        }
        if self.shutdown_timeout.is_zero() {
            p.add("shutdownTimeout", "must be greater than 0");
        }

        // Listeners.
        let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
        match ListenAddress::parse(&self.grpc_address) {
            Err(problem) => p.add("grpcAddress", problem),
            Ok(ListenAddress::Tcp(addr)) => bound.push(("grpcAddress", addr)),
            Ok(ListenAddress::Unix(_)) => {}
        }
        for (key, value) in [("httpAddress", &self.http_address), ("adminAddress", &self.admin_address)] {
            match value.parse::<SocketAddr>() {
                Err(_) => p.add(key, format!("must be ip:port such as 0.0.0.0:8080, got {value:?}")),
                Ok(addr) => {
                    if let Some((other, _)) = bound.iter().find(|(_, a)| addr.port() != 0 && *a == addr) {
                        p.add(key, format!("{addr} is already used by {other}"));
                    }
                    bound.push((key, addr));
                }
            }
        }

        if self.memory_cache_size == 0 {
            p.add("memoryCacheSize", "must be at least 1");
        }
        if self.memory_cache_memory_mb == 0 {
            p.add("memoryCacheMemoryMB", "must be at least 1");
        }
        self.redis.validate_into(&mut p);
        for (i, proxy) in self.forward_auth.trusted_proxies.iter().enumerate() {
            if parse_cidr(proxy).is_none() {
                p.add(
                    format!("forwardAuth.trustedProxies[{i}]"),
                    format!("must be an IP address or CIDR, got {proxy:?}"),
                );
            }
        }
        if axum_header_name_invalid(&self.forward_auth.shared_secret_header) {
            p.add(
                "forwardAuth.sharedSecretHeader",
                format!("must be a header name, got {:?}", self.forward_auth.shared_secret_header),
            );
        }
        p.0
    }
}

impl RedisConfig {
    fn validate_into(&self, p: &mut Problems) {
        let nodes: Vec<&str> = self.address.split(',').map(str::trim).collect();
        if self.enabled && !self.sentinel.enabled() {
            if nodes.iter().all(|n| n.is_empty()) {
                p.add("redis.address", "required when redis.enabled is true");
            }
            if nodes.len() > 1 && !self.cluster_mode {
                p.add("redis.address", "several addresses need clusterMode: true (or use redis.sentinel for Sentinel)");
            }
        }
        for node in nodes.iter().filter(|n| !n.is_empty()) {
            if !is_host_port(node) {
                p.add("redis.address", format!("must be host:port, got {node:?}"));
            }
        }
        if self.key_prefix.is_empty()
            || self.key_prefix.contains(|c: char| c.is_whitespace() || c == '*' || c == '?' || c == '[')
        {
            p.add(
                "redis.keyPrefix",
                format!("must be non-empty without spaces or glob characters, got {:?}", self.key_prefix),
            );
        }
        if self.pool_size == 0 {
            p.add("redis.poolSize", "must be at least 1");
        }
        if self.min_idle_conns > self.pool_size {
            p.add("redis.minIdleConns", format!("{} is more than poolSize ({})", self.min_idle_conns, self.pool_size));
        }
        for (key, value) in [
            ("redis.poolTimeout", self.pool_timeout),
            ("redis.dialTimeout", self.dial_timeout),
            ("redis.readTimeout", self.read_timeout),
            ("redis.writeTimeout", self.write_timeout),
            ("redis.circuitBreakerTimeout", self.circuit_breaker_timeout),
        ] {
            if value.is_zero() {
                p.add(key, "must be greater than 0");
            }
        }
        if self.hybrid_l1_size == 0 {
            p.add("redis.hybridL1Size", "must be at least 1");
        }
        if self.hybrid_l1_memory_mb == 0 {
            p.add("redis.hybridL1MemoryMB", "must be at least 1");
        }
        if self.hybrid_l1_max_ttl.is_zero() {
            p.add("redis.hybridL1MaxTTL", "must be greater than 0");
        }
        if self.circuit_breaker_threshold == 0 {
            p.add("redis.circuitBreakerThreshold", "must be at least 1");
        }

        let tls = &self.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            let (missing, given) =
                if tls.cert_file.is_empty() { ("certFile", "keyFile") } else { ("keyFile", "certFile") };
            p.add(format!("redis.tls.{missing}"), format!("required when redis.tls.{given} is set"));
        }
        // Whether the files exist and parse is checked when the Redis client is built at
        // start-up, keeping this function free of I/O.
        for (key, file) in [
            ("redis.tls.certFile", &tls.cert_file),
            ("redis.tls.keyFile", &tls.key_file),
            ("redis.tls.caFile", &tls.ca_file),
        ] {
            if !file.is_empty() && !tls.enabled {
                p.add(key, "is set but redis.tls.enabled is false");
            }
        }

        if self.cluster_mode {
            if self.db != 0 {
                p.add("redis.db", "must be 0 in cluster mode (Redis Cluster has one database)");
            }
            if self.sentinel.enabled() {
                p.add("redis.sentinel.masterName", "cannot be combined with clusterMode");
            }
        } else {
            for (key, on) in [
                ("redis.readOnly", self.read_only),
                ("redis.routeByLatency", self.route_by_latency),
                ("redis.routeRandomly", self.route_randomly),
            ] {
                if on {
                    p.add(key, "only applies with clusterMode: true");
                }
            }
        }
        if self.sentinel.enabled() {
            if self.sentinel.addresses.is_empty() {
                p.add("redis.sentinel.addresses", "required when redis.sentinel.masterName is set");
            }
            for (i, addr) in self.sentinel.addresses.iter().enumerate() {
                if !is_host_port(addr) {
                    p.add(format!("redis.sentinel.addresses[{i}]"), format!("must be host:port, got {addr:?}"));
                }
            }
        } else if !self.sentinel.addresses.is_empty() {
            p.add("redis.sentinel.masterName", "required when redis.sentinel.addresses is set");
        }
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }
}

fn absolute_http_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a valid URL ({e}): {value:?}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("must be an http or https URL, got {value:?}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("must name a host, got {value:?}"));
    }
    Ok(url)
}

/// A path such as `/oauth2/callback`, or an absolute http(s) URL.
fn path_or_url(value: &str) -> Result<(), String> {
    if value.starts_with('/') {
        if value.starts_with("//") {
            return Err(format!("a path must not start with '//', got {value:?}"));
        }
        return Ok(());
    }
    absolute_http_url(value)
        .map(|_| ())
        .map_err(|_| format!("must be a path starting with '/' or an http(s) URL, got {value:?}"))
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_cookie_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_cookie_domain(domain: &str) -> bool {
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// An address (`10.0.0.1`, `::1`) or a CIDR (`10.0.0.0/8`) as a network.
pub fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn axum_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The least a session key must carry by [`estimated_entropy_bits`]: an offline guess at
/// it from a flow cookie anyone can obtain must stay out of reach.
pub const MIN_SESSION_KEY_BITS: f64 = 96.0;

/// An upper estimate of a secret's entropy from its characters alone: length times the
/// Shannon entropy of their distribution. It cannot prove a key random; it catches keys
/// that are certainly not (`aaaa…`, `abababab…`, a short word repeated).
pub fn estimated_entropy_bits(secret: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for byte in secret.bytes() {
        *counts.entry(byte).or_insert(0u32) += 1;
    }
    let len = secret.len() as f64;
    let per_char: f64 = counts.values().map(|&n| f64::from(n) / len).map(|p| -p * p.log2()).sum();
    per_char * len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert!(is_host_port("redis:6379"));
        assert!(is_host_port("[::1]:6379"));
        assert!(!is_host_port("redis"));
        assert!(!is_host_port(":6379"));
        assert!(!is_host_port("redis:0"));
        assert!(!is_host_port("redis:http"));
    }

    #[test]
    fn cookie_domain() {
        assert!(is_cookie_domain("example.com"));
        assert!(is_cookie_domain(".example.com"));
        assert!(!is_cookie_domain("https://example.com"));
        assert!(!is_cookie_domain("example.com:443"));
        assert!(!is_cookie_domain("exa mple.com"));
    }

    #[test]
    fn paths_and_urls() {
        assert!(path_or_url("/oauth2/callback").is_ok());
        assert!(path_or_url("https://app.example.com/cb").is_ok());
        assert!(path_or_url("//evil.example").is_err());
        assert!(path_or_url("oauth2/callback").is_err());
        assert!(path_or_url("javascript:alert(1)").is_err());
    }

    /// L8: a key that is certainly not random is refused.
    #[test]
    fn l8_low_entropy_session_keys_are_refused() {
        for weak in ["a".repeat(40), "ab".repeat(20), "abc1".repeat(10)] {
            assert!(estimated_entropy_bits(&weak) < MIN_SESSION_KEY_BITS, "{weak}");
        }
        for fine in ["0123456789abcdef0123456789abcdef", "q3Zr9Lk2Vx8WmT4nB7cP1sD6fG0hJ5yA"] {
            assert!(estimated_entropy_bits(fine) >= MIN_SESSION_KEY_BITS, "{fine}");
        }
    }
}
