//! A whole deployment as one value, so an end-to-end test reads as its scenario:
//! the real oidc-provider, an echo upstream, N authgate replicas (sharing Redis and the
//! session key when the mode uses Redis), and a real Envoy in front of replica 0, or
//! round-robining over all of them (`balanced`), as a deployment runs.
//!
//! ```ignore
//! let stack = Stack::builder().cache("hybrid").replicas(2).start().await;
//! ```

use super::{Authgate, EchoUpstream, Envoy, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, RedisServer, free_port, random_hex};
use reqwest::cookie::CookieStore;

/// The `redis:` block that points authgate at `redis` in `mode` (`redis` or `hybrid`).
pub fn redis_yaml(redis: &RedisServer, mode: &str) -> String {
    format!("redis:\n  enabled: true\n  address: {}\n  cacheMode: {mode}", redis.address())
}

pub struct StackBuilder {
    cache: String,
    replicas: usize,
    balanced: bool,
    provider_keys: bool,
    redis_yaml: Option<String>,
    idp_env: Vec<(String, String)>,
    keys: Vec<(String, String)>,
    yaml: Vec<String>,
}

pub struct Stack {
    pub idp: Idp,
    /// Replica 0 is the one behind Envoy (unless balanced); the others are reached over
    /// their bridges.
    pub replicas: Vec<Authgate>,
    pub envoy: Envoy,
    pub upstream: EchoUpstream,
    /// The Redis the stack started (not one handed in with `redis_yaml`).
    pub redis: Option<RedisServer>,
    /// With `provider_keys`: the provider's signing keys, `<kid>.pem`.
    pub provider_keys: Option<tempfile::TempDir>,
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            cache: "memory".into(),
            replicas: 1,
            balanced: false,
            provider_keys: false,
            redis_yaml: None,
            idp_env: Vec::new(),
            keys: Vec::new(),
            yaml: Vec::new(),
        }
    }

    /// Signs `claims` with the provider's current signing key (`kid`), RS256: a token the
    /// provider could have issued. Needs `provider_keys`.
    pub fn sign_as_provider(&self, kid: &str, claims: &serde_json::Value) -> String {
        let dir = self.provider_keys.as_ref().expect("Stack::builder().provider_keys()");
        let pem = std::fs::read(dir.path().join(format!("{kid}.pem"))).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    }

    /// The replica behind Envoy.
    pub fn authgate(&self) -> &Authgate {
        &self.replicas[0]
    }

    /// A URL of the application, through Envoy.
    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }

    /// The `Cookie` header a browser with `jar` sends to the application.
    pub fn cookie(&self, jar: &reqwest::cookie::Jar) -> String {
        jar.cookies(&self.url("/").parse().unwrap()).map(|c| c.to_str().unwrap().to_owned()).unwrap_or_default()
    }

    /// Every replica's log, for assertion messages.
    pub fn logs(&self) -> String {
        self.replicas.iter().enumerate().map(|(i, r)| format!("--- replica {i}:\n{}", r.logs())).collect()
    }
}

impl StackBuilder {
    /// `memory` (default), `redis` or `hybrid`; with Redis, one real `redis-server` is shared.
    pub fn cache(mut self, mode: &str) -> Self {
        self.cache = mode.into();
        self
    }

    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// Envoy round-robins Checks over every replica, health-checking them.
    pub fn balanced(mut self) -> Self {
        self.balanced = true;
        self
    }

    /// The provider signs with keys the test can read (`Stack::sign_as_provider`).
    pub fn provider_keys(mut self) -> Self {
        self.provider_keys = true;
        self
    }

    /// Use this `redis:` block (a Sentinel or Cluster the test started) instead of
    /// starting a single `redis-server`.
    pub fn redis_yaml(mut self, yaml: &str) -> Self {
        self.redis_yaml = Some(yaml.into());
        self
    }

    /// An environment variable of the test provider (`tests/idp/server.mjs`).
    pub fn idp_env(mut self, name: &str, value: &str) -> Self {
        self.idp_env.push((name.into(), value.into()));
        self
    }

    /// A top-level authgate key for every replica (value in YAML syntax).
    pub fn key(mut self, key: &str, yaml_value: &str) -> Self {
        self.keys.push((key.into(), yaml_value.into()));
        self
    }

    /// Raw YAML for every replica.
    pub fn yaml(mut self, yaml: &str) -> Self {
        self.yaml.push(yaml.into());
        self
    }

    pub async fn start(self) -> Stack {
        // The provider registers the application's origin (Envoy's port) as redirect target.
        let app_port = free_port();
        let provider_keys = self.provider_keys.then(|| tempfile::tempdir().unwrap());
        let key_dir = provider_keys.as_ref().map(|d| d.path().to_str().unwrap().to_owned());
        let mut env: Vec<(&str, &str)> = self.idp_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(dir) = &key_dir {
            env.push(("IDP_KEY_DIR", dir));
        }
        let idp = Idp::start(&format!("http://127.0.0.1:{app_port}"), &env).await;
        let redis = (self.cache != "memory" && self.redis_yaml.is_none()).then(RedisServer::start);
        let redis_block = match (&self.redis_yaml, &redis) {
            (Some(yaml), _) => Some(yaml.clone()),
            (None, Some(redis)) => Some(redis_yaml(redis, &self.cache)),
            (None, None) => None,
        };
        let session_key = random_hex(32);
        let mut replicas = Vec::new();
        for _ in 0..self.replicas {
            let mut builder = Authgate::builder()
                .key("providerURL", &idp.issuer())
                .key("clientID", IDP_CLIENT_ID)
                .key("clientSecret", IDP_CLIENT_SECRET)
                .key("sessionEncryptionKey", &session_key);
            for (key, value) in &self.keys {
                builder = builder.key(key, value);
            }
            if let Some(block) = &redis_block {
                builder = builder.yaml(block);
            }
            for yaml in &self.yaml {
                builder = builder.yaml(yaml);
            }
            replicas.push(builder.start().await);
        }
        for replica in &replicas {
            replica.wait_ready().await;
        }
        let upstream = EchoUpstream::start().await;
        let envoy = if self.balanced {
            let grpcs: Vec<_> = replicas.iter().map(|r| r.grpc).collect();
            Envoy::start_balanced(app_port, &grpcs, upstream.addr).await
        } else {
            Envoy::start_on(app_port, replicas[0].grpc, upstream.addr).await
        };
        Stack { idp, replicas, envoy, upstream, redis, provider_keys }
    }
}
