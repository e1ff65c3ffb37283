//! Test helpers: real processes on free loopback ports, stopped when dropped.
//!
//! - [`Authgate`]: the `authgate` binary under test, with a generated configuration.
//! - [`Envoy`]: a real Envoy whose `ext_authz` filter calls an authgate, in front of an upstream.
//! - [`EchoUpstream`]: an HTTP upstream (in the test process) answering with the headers it got.
//! - [`RedisServer`]: a real `redis-server`.
//! - [`stack::Stack`]: IdP + upstream + N replicas (+ Redis) + Envoy, one builder per scenario.
//! - [`proxies::Proxy`]: real Caddy and nginx running the shipped example configurations.
//! - [`provider::TestProvider`]: an OpenID Provider inside the test process, for fast decision tests.
//! - [`tool`]: paths of the tools `scripts/install-test-deps.sh` installs.
#![allow(dead_code)] // each test module uses a different part of the harness

pub mod load;
pub mod provider;
pub mod proxies;
pub mod stack;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any helper waits for a process to become ready before failing the test.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A port that was free a moment ago on 127.0.0.1.
/// A port for a server a test starts itself (Redis, Envoy, the provider…), free when
/// chosen. Taken at random below the kernel's ephemeral range (32768–60999), so that the
/// outgoing connections of the tests running alongside (which get ephemeral ports) cannot
/// take it between now and the moment the server binds it; and below 22000, so that a
/// Redis Cluster node's bus port (its port + 10000) never lands on another server's port.
pub fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(12_000..22_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by `scripts/install-test-deps.sh` into `.tools/bin`, or on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    let local = repo_root().join(".tools/bin").join(name);
    if local.exists() {
        return local;
    }
    if let Some(found) = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
    {
        return found;
    }
    panic!("{name} is not installed: run scripts/install-test-deps.sh (the README's test command does)");
}

/// Random hex from the kernel, for secrets that must differ per test.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `ready` until it returns true; fails the test after [`READY_TIMEOUT`].
pub async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what} not ready within {READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends SIGTERM to a child we started (by its PID).
pub fn terminate(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits for a child to exit, failing the test after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return status;
        }
        assert!(Instant::now() < deadline, "process {} did not exit within {timeout:?}", child.id());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A forward-auth call as Traefik makes it: `GET /auth` with the original request in
/// `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` (host `app.example`).
pub fn forward_auth(client: &reqwest::Client, bridge: SocketAddr, path: &str) -> reqwest::RequestBuilder {
    client
        .get(format!("http://{bridge}/auth"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "app.example")
        .header("x-forwarded-uri", path)
}

/// The `authgate` binary under test.
pub struct Authgate {
    child: Child,
    /// The gRPC listener (unspecified when it is a Unix socket: see `grpc_socket`).
    pub grpc: SocketAddr,
    /// The gRPC listener's socket file, with `grpcAddress: unix:/path`.
    pub grpc_socket: Option<PathBuf>,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// Builds an authgate configuration: required keys filled in, free ports, extra YAML on top.
pub struct AuthgateBuilder {
    http_port: Option<u16>,
    keys: BTreeMap<String, String>,
    extra: String,
    env: Vec<(String, String)>,
}

impl Authgate {
    pub fn builder() -> AuthgateBuilder {
        // The tests' HTTP clients use rustls without a built-in crypto provider, like authgate.
        authgate::tls::install_crypto_provider();
        let mut keys = BTreeMap::new();
        keys.insert("providerURL".into(), "http://127.0.0.1:9/".into());
        keys.insert("clientID".into(), "authgate-test".into());
        keys.insert("clientSecret".into(), random_hex(16));
        keys.insert("sessionEncryptionKey".into(), random_hex(32));
        keys.insert("forceHTTPS".into(), "false".into());
        keys.insert("logLevel".into(), "debug".into());
        keys.insert("shutdownTimeout".into(), "5".into());
        // Tests that stop authgate do not wait for proxies to notice (lifecycle.rs tests it).
        keys.insert("drainDelay".into(), "0".into());
        AuthgateBuilder { http_port: None, keys, extra: String::new(), env: Vec::new() }
    }

    pub fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    /// Waits until `/readyz` answers 200 (provider discovered, cache usable).
    pub async fn wait_ready(&self) {
        let readyz = format!("http://{}/readyz", self.admin);
        wait_until("authgate ready", async || reqwest::get(&readyz).await.is_ok_and(|r| r.status() == 200)).await;
    }

    /// Asks the forward-auth bridge about an API request for `path` carrying `cookie`.
    pub async fn bridge(&self, path: &str, cookie: &str) -> reqwest::Response {
        forward_auth(&reqwest::Client::new(), self.http, path)
            .header("accept", "application/json")
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    /// What the process has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id (for RSS readings in the soak).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process in kilobytes (Linux `/proc`).
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn send_sigterm(&self) {
        terminate(&self.child);
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, Duration::from_secs(20))
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        terminate(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(20))
    }
}

impl AuthgateBuilder {
    /// Sets a top-level key (value in YAML syntax).
    pub fn key(mut self, key: &str, yaml_value: &str) -> Self {
        self.keys.insert(key.into(), yaml_value.into());
        self
    }

    /// Listens for HTTP (bridge, back-channel logout) on a port chosen beforehand.
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// Appends raw YAML (for nested blocks such as `redis:`).
    pub fn yaml(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self.extra.push('\n');
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the process on ports of its own choosing (port 0; it logs what it bound) and
    /// waits until `/healthz` answers.
    pub async fn start(self) -> Authgate {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = self.http_port.unwrap_or(0);
        let mut yaml = format!("grpcAddress: 127.0.0.1:0\nhttpAddress: 127.0.0.1:{http}\nadminAddress: 127.0.0.1:0\n");
        for (key, value) in &self.keys {
            yaml.push_str(&format!("{key}: {value}\n"));
        }
        // Extra YAML overrides the defaults above, key by key at the top level.
        let mut merged: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&yaml).expect("base test config is YAML");
        if !self.extra.trim().is_empty() {
            let extra: serde_yaml_ng::Mapping =
                serde_yaml_ng::from_str(&self.extra).expect("extra test config is YAML");
            merged.extend(extra);
        }
        let yaml = serde_yaml_ng::to_string(&merged).unwrap();
        let config = dir.path().join("authgate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.path().join("authgate.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn authgate");
        // "authgate started grpc=… http=… admin=…": the addresses it bound.
        let deadline = Instant::now() + READY_TIMEOUT;
        let bound = loop {
            let logs = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = logs.lines().find(|l| l.contains("authgate started")) {
                // Text (`grpc=ADDR`) or JSON (`"grpc":"ADDR"`) log format.
                let field = |name: &str| -> String {
                    let value = [format!("{name}="), format!("\"{name}\":\"")]
                        .iter()
                        .find_map(|prefix| line.find(prefix.as_str()).map(|at| &line[at + prefix.len()..]))
                        .unwrap_or_else(|| panic!("no {name} in {line}"));
                    value.split([' ', '"']).next().unwrap().to_owned()
                };
                let addr = |name: &str| -> SocketAddr { field(name).parse().unwrap() };
                break (field("grpc"), addr("http"), addr("admin"));
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("authgate exited during start-up ({status}):\n{logs}");
            }
            assert!(Instant::now() < deadline, "authgate did not start:\n{logs}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // A Unix-socket listener (`grpcAddress: unix:/path`) has no TCP address.
        let (grpc, grpc_socket) = match bound.0.strip_prefix("unix:") {
            Some(path) => (SocketAddr::from(([0, 0, 0, 0], 0)), Some(PathBuf::from(path))),
            None => (bound.0.parse().unwrap(), None),
        };
        let authgate = Authgate { child, grpc, grpc_socket, http: bound.1, admin: bound.2, log, dir };
        let healthz = format!("http://{}/healthz", authgate.admin);
        wait_until("authgate /healthz", async || reqwest::get(&healthz).await.is_ok_and(|r| r.status().is_success()))
            .await;
        authgate
    }
}

impl Drop for Authgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Envoy with the gRPC `ext_authz` filter in front of an upstream.
pub struct Envoy {
    child: Child,
    /// The HTTP listener clients send requests to.
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy routing everything to `upstream`, asking `authgate_grpc` via ext_authz.
    pub async fn start(authgate_grpc: SocketAddr, upstream: SocketAddr) -> Envoy {
        Envoy::start_on(free_port(), authgate_grpc, upstream).await
    }

    /// Like [`Envoy::start`], listening on a port chosen beforehand (the IdP needs the
    /// app's origin for its redirect URIs before Envoy runs).
    pub async fn start_on(listener: u16, authgate_grpc: SocketAddr, upstream: SocketAddr) -> Envoy {
        Envoy::start_with(listener, &[authgate_grpc], upstream).await
    }

    /// Envoy round-robining Checks over every replica in `authgate_grpcs` (each
    /// health-checked over gRPC health every second, as the shipped example does).
    pub async fn start_balanced(listener: u16, authgate_grpcs: &[SocketAddr], upstream: SocketAddr) -> Envoy {
        Envoy::start_with(listener, authgate_grpcs, upstream).await
    }

    /// The shipped `examples/envoy/envoy.yaml`, on the test's ports.
    async fn start_with(listener: u16, authgate_grpcs: &[SocketAddr], upstream: SocketAddr) -> Envoy {
        let config =
            Envoy::example_config("examples/envoy/envoy.yaml", listener, free_port(), authgate_grpcs, upstream);
        Envoy::start_config(&config).await
    }

    /// An Envoy configuration shipped with authgate (or a test fixture written like one),
    /// with its example addresses (listener :8000, admin :8001, upstream :8002, authgate
    /// :9001) replaced by the test's. Each replacement must apply once, so the example
    /// cannot drift away from what the tests run.
    pub fn example_config(
        path: &str,
        listener: u16,
        admin: u16,
        authgate_grpcs: &[SocketAddr],
        upstream: SocketAddr,
    ) -> String {
        let mut config = std::fs::read_to_string(repo_root().join(path)).unwrap();
        let endpoint = |a: &SocketAddr| {
            format!(
                "- endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}",
                a.ip(),
                a.port()
            )
        };
        let endpoints: Vec<String> = authgate_grpcs.iter().map(endpoint).collect();
        let replacements = [
            (
                "address: 127.0.0.1, port_value: 8001 }".to_owned(),
                format!("address: 127.0.0.1, port_value: {admin} }}"),
            ),
            (
                "address: 127.0.0.1, port_value: 8000 }".to_owned(),
                format!("address: 127.0.0.1, port_value: {listener} }}"),
            ),
            (endpoint(&"127.0.0.1:8002".parse().unwrap()), endpoint(&upstream)),
            (endpoint(&"127.0.0.1:9001".parse().unwrap()), endpoints.join("\n        ")),
        ];
        for (example, ours) in replacements {
            assert_eq!(config.matches(&example).count(), 1, "{path} should have `{example}` once");
            config = config.replace(&example, &ours);
        }
        config
    }

    /// Starts Envoy with `config`, a complete bootstrap (admin and one listener).
    pub async fn start_config(config: &str) -> Envoy {
        authgate::tls::install_crypto_provider();
        let port_after = |marker: &str| -> u16 {
            let tail = &config[config.find(marker).expect(marker)..];
            let at = tail.find("port_value: ").unwrap() + "port_value: ".len();
            tail[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        let (admin, listener) = (port_after("admin:"), port_after("listeners:"));
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("envoy.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(tool("envoy"))
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn envoy");
        let ready_url = format!("http://127.0.0.1:{admin}/ready");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "envoy exited during start-up ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(&ready_url).send().await
                && response.text().await.is_ok_and(|body| body.trim() == "LIVE")
            {
                break;
            }
            assert!(Instant::now() < deadline, "envoy not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Envoy {
            child,
            listener: ([127, 0, 0, 1], listener).into(),
            admin: ([127, 0, 0, 1], admin).into(),
            log,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream that answers every request with `200` and a JSON object of the request
/// headers it received (lower-case names), so tests can see what reached it.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        use axum::http::HeaderMap;
        async fn echo(uri: axum::http::Uri, headers: HeaderMap) -> axum::Json<serde_json::Value> {
            let mut map = serde_json::Map::new();
            for (name, value) in &headers {
                map.insert(name.as_str().to_owned(), value.to_str().unwrap_or("<binary>").into());
            }
            axum::Json(serde_json::json!({ "path": uri.to_string(), "headers": map }))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        EchoUpstream { addr, task }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real `redis-server` on a free port, without persistence.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts with extra command-line arguments (e.g. `["--requirepass", "x"]`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), args)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends an inline `PING` and expects `+PONG` (or `-NOAUTH`, which also means it is up).
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read(&mut reply).is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with
/// the `openssl` CLI into a temporary directory.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=authgate test CA",
        ]);
        for name in ["server", "client"] {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ]);
        }
        TlsFiles { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl RedisServer {
    /// A TLS-only redis-server that requires client certificates signed by the test CA.
    pub fn start_tls(tls: &TlsFiles) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let port_arg = port.to_string();
        let child = spawn_redis(
            dir.path(),
            &[
                "--port",
                "0",
                "--tls-port",
                &port_arg,
                "--tls-cert-file",
                &tls.path("server.pem"),
                "--tls-key-file",
                &tls.path("server.key"),
                "--tls-ca-cert-file",
                &tls.path("ca.pem"),
                "--tls-auth-clients",
                "yes",
            ],
        );
        let server = RedisServer { child, port, _dir: dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        // A TLS port accepts TCP as soon as it listens; that is our readiness signal.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server (TLS) on {port} not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. "STOP", "CONT") to this server, by its PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Kills the server and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new server on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        let again = RedisServer::start_on(self.port, &[]);
        *self = again;
    }

    fn start_on(port: u16, args: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port_arg = port.to_string();
        let child = spawn_redis(dir.path(), &[&["--port", port_arg.as_str()][..], args].concat());
        let server = RedisServer { child, port, _dir: dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !server.ping() {
            assert!(Instant::now() < deadline, "redis-server on {port} not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

/// Spawns `redis-server` on loopback without persistence, working in `dir`, with `args`
/// (ports, TLS, cluster or sentinel options) added.
fn spawn_redis(dir: &Path, args: &[&str]) -> Child {
    Command::new(tool("redis-server"))
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}

/// `redis-cli -p PORT ARGS…`, its standard output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out =
        Command::new(tool("redis-cli")).args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 6-node Redis Cluster (3 primaries, 3 replicas) on free ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--repl-diskless-sync-delay",
                    "0",
                    "--cluster-node-timeout",
                    "2000",
                    // Tests slow a node down with DEBUG SLEEP.
                    "--enable-debug-command",
                    "yes",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(RedisServer::address).collect();
        let out = Command::new(tool("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster not ok");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Every node must list every slot range with its replica (replicas attach a few
        // seconds after `--cluster create`), or a client that reads the topology from it
        // will not know the replicas.
        for node in &nodes {
            while node.cli(&["CLUSTER", "SLOTS"]).matches("127.0.0.1").count() < 6 {
                assert!(Instant::now() < deadline, "cluster replicas not attached");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Replicas must have finished their first sync for reads from replicas to work.
        while !nodes.iter().all(|n| {
            let info = n.cli(&["INFO", "replication"]);
            info.contains("role:master") || info.contains("master_link_status:up")
        }) {
            assert!(Instant::now() < deadline, "cluster replicas not in sync");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisCluster { nodes }
    }

    /// The seed-node list for `redis.address`.
    pub fn address(&self) -> String {
        self.nodes.iter().take(3).map(RedisServer::address).collect::<Vec<_>>().join(",")
    }
}

/// One master, one replica and three sentinels monitoring them as `mymaster`.
pub struct RedisSentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinels {
    pub fn start() -> RedisSentinels {
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let replica = RedisServer::start_with(&[
            "--repl-diskless-sync-delay",
            "0",
            "--replicaof",
            "127.0.0.1",
            &master.port.to_string(),
        ]);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "replica not in sync");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sentinels = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().expect("temp dir");
                let port = free_port();
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 5000\n\
                         sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                        master.port
                    ),
                )
                .unwrap();
                let child = Command::new(tool("redis-server"))
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn redis-sentinel");
                let server = RedisServer { child, port, _dir: dir };
                while !server.ping() {
                    assert!(Instant::now() < deadline, "sentinel not ready");
                    std::thread::sleep(Duration::from_millis(10));
                }
                server
            })
            .collect::<Vec<_>>();
        // Every sentinel must know the replica and the other sentinels before a failover.
        for sentinel in &sentinels {
            while !(sentinel.cli(&["SENTINEL", "REPLICAS", SENTINEL_MASTER]).contains(&replica.port.to_string())
                && sentinel.cli(&["SENTINEL", "SENTINELS", SENTINEL_MASTER]).matches("runid").count() >= 2)
            {
                assert!(Instant::now() < deadline, "sentinels did not discover each other");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisSentinels { master, replica, sentinels }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::address).collect()
    }

    /// The port the sentinels currently name as master.
    pub fn current_master_port(&self) -> u16 {
        let out = self.sentinels[0].cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }
}

/// The demo/test OpenID Provider (`tests/idp/server.mjs`, panva's oidc-provider) on a free port.
pub struct Idp {
    child: Child,
    pub port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The client the tests register at the IdP.
pub const IDP_CLIENT_ID: &str = "authgate-test";
pub const IDP_CLIENT_SECRET: &str = "authgate-test-secret";
/// The resource whose access tokens are JWTs, and their audience.
pub const IDP_RESOURCE: &str = "urn:authgate:api";

impl Idp {
    /// Starts the IdP with a client whose redirect URIs point at `app_origin`
    /// (e.g. `http://127.0.0.1:8000`), and extra environment (token lifetimes…).
    pub async fn start(app_origin: &str, env: &[(&str, &str)]) -> Idp {
        Idp::start_with_backchannel(app_origin, None, env).await
    }

    /// Like [`Idp::start`], registering `backchannel_logout_uri` for the client.
    pub async fn start_with_backchannel(app_origin: &str, backchannel: Option<&str>, env: &[(&str, &str)]) -> Idp {
        Idp::start_with(app_origin, backchannel, "client_secret_basic", env).await
    }

    /// The general form: back-channel logout URI and the client's token endpoint auth method.
    pub async fn start_with(
        app_origin: &str,
        backchannel: Option<&str>,
        auth_method: &str,
        env: &[(&str, &str)],
    ) -> Idp {
        authgate::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let clients = serde_json::json!([{
            "client_id": IDP_CLIENT_ID,
            "client_secret": IDP_CLIENT_SECRET,
            "redirect_uris": [format!("{app_origin}/oauth2/callback")],
            "post_logout_redirect_uris": [format!("{app_origin}/")],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "token_endpoint_auth_method": auth_method,
        }]);
        let mut clients = clients;
        if let Some(uri) = backchannel {
            clients[0]["backchannel_logout_uri"] = uri.into();
            clients[0]["backchannel_logout_session_required"] = true.into();
        }
        let log = dir.path().join("idp.log");
        let env: Vec<(String, String)> = [
            ("IDP_PORT".to_owned(), port.to_string()),
            ("IDP_CLIENTS".to_owned(), clients.to_string()),
            ("IDP_AUDIENCE".to_owned(), IDP_CLIENT_ID.to_owned()),
            ("IDP_RESOURCE".to_owned(), IDP_RESOURCE.to_owned()),
        ]
        .into_iter()
        .chain(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect();
        let child = Idp::spawn(&env, &log);
        let mut idp = Idp { child, port, log, env, _dir: dir };
        idp.wait_started().await;
        idp
    }

    fn spawn(env: &[(String, String)], log: &Path) -> Child {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        Command::new("node")
            .arg(repo_root().join("tests/idp/server.mjs"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn node tests/idp/server.mjs (run scripts/install-test-deps.sh)")
    }

    async fn wait_started(&mut self) {
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the IdP exited during start-up ({status}):\n{}", self.logs());
            }
            if reqwest::get(&discovery).await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "IdP not ready:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the provider and starts it again on the same port, with `env` changed (a key
    /// rotation: a new `IDP_KIDS`). Its in-memory state (sessions, grants) is lost.
    pub async fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (name, value) in env {
            self.env.retain(|(k, _)| k != name);
            self.env.push(((*name).to_owned(), (*value).to_owned()));
        }
        self.child = Idp::spawn(&self.env, &self.log);
        self.wait_started().await;
    }

    /// Sends a signal (`STOP`, `CONT`) to the provider's process, by its PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JWT access token for [`IDP_RESOURCE`] from the client-credentials grant.
    pub async fn client_credentials_token(&self) -> String {
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(IDP_CLIENT_ID, Some(IDP_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials"), ("resource", IDP_RESOURCE), ("scope", "api")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {response}")).to_owned()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: keeps cookies, follows redirects itself (so tests can look at each hop).
pub fn browser() -> reqwest::Client {
    browser_with_jar().0
}

/// A browser and its cookie jar (to read the session cookie out of it).
pub fn browser_with_jar() -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    authgate::tls::install_crypto_provider();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// Resolves a `Location` against the URL it came from.
pub fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base).unwrap().join(location).unwrap().to_string()
}

/// The `action` of the first form in an HTML page.
pub fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let rest = &html[at..];
    let start = rest.find("action=\"")? + 8;
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].replace("&amp;", "&"))
}

/// `name`/`value` of the hidden inputs of an HTML page.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')?;
        Some(tag[start..start + end].to_owned())
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default())))
        .collect()
}

/// Drives a browser login from `url`: follows redirects and fills the IdP's login and
/// consent forms. With `stop_at`, stops before following a redirect to a URL starting with
/// it and returns that URL without a response; otherwise returns the first non-form answer.
async fn drive_login(
    browser: &reqwest::Client,
    url: &str,
    user: &str,
    stop_at: Option<&str>,
) -> (String, Option<reqwest::Response>) {
    let mut current = url.to_owned();
    let mut response = browser.get(&current).header("accept", "text/html").send().await.unwrap();
    for _ in 0..20 {
        if response.status().is_redirection() {
            let location = resolve(&current, response.headers()["location"].to_str().unwrap());
            if stop_at.is_some_and(|prefix| location.starts_with(prefix)) {
                return (location, None);
            }
            current = location;
            response = browser.get(&current).header("accept", "text/html").send().await.unwrap();
            continue;
        }
        let is_form = response.status() == 200
            && response.headers().get("content-type").is_some_and(|c| c.to_str().unwrap_or("").contains("text/html"));
        if !is_form {
            return (current, Some(response));
        }
        let html = response.text().await.unwrap();
        let Some(action) = form_action(&html) else { panic!("no form at {current}:\n{html}") };
        let target = resolve(&current, &action);
        let mut fields = hidden_inputs(&html);
        if html.contains("name=\"login\"") {
            fields.push(("login".into(), user.into()));
            fields.push(("password".into(), "any".into()));
        }
        response = browser.post(&target).form(&fields).send().await.unwrap();
        current = target;
    }
    panic!("login did not finish within 20 steps (at {current})");
}

/// Follows a login from `url` up to the IdP's redirect back to `callback_prefix`, and
/// returns that callback URL without following it.
pub async fn login_until_callback(browser: &reqwest::Client, url: &str, user: &str, callback_prefix: &str) -> String {
    match drive_login(browser, url, user, Some(callback_prefix)).await {
        (callback, None) => callback,
        (at, Some(response)) => {
            panic!("never redirected to {callback_prefix}; ended at {at} with {}", response.status())
        }
    }
}

/// Logs `user` in as a browser would, starting at `url` (a protected page behind Envoy),
/// and returns the final response together with the URL it came from.
pub async fn browser_login(browser: &reqwest::Client, url: &str, user: &str) -> (String, reqwest::Response) {
    let (at, response) = drive_login(browser, url, user, None).await;
    (at, response.expect("without a stop URL the login ends with a response"))
}
