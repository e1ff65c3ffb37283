//! Real forward-auth proxies from Debian, each running the configuration file the project
//! ships (`examples/caddy/Caddyfile`, `examples/nginx/authgate.conf`), on free ports.

use super::{READY_TIMEOUT, free_port, repo_root};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running proxy; stopped (by its PID) when dropped.
pub struct Proxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(mut self, what: &str) -> Proxy {
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited ({status}):\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "{what} not listening:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    /// Caddy with `examples/caddy/Caddyfile`, listening on `port`.
    pub fn caddy(port: u16, authgate: SocketAddr, app: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("caddy.log");
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(repo_root().join("examples/caddy/Caddyfile"))
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .env("AUTHGATE", authgate.to_string())
            .env("APP", app.to_string())
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("caddy.err")).unwrap())
            .spawn()
            .expect("spawn caddy (scripts/install-test-deps.sh installs it)");
        Proxy { child, port, log, _dir: dir }.wait_listening("caddy")
    }

    /// nginx with `examples/nginx/authgate.conf` (its addresses replaced), listening on `port`.
    pub fn nginx(port: u16, authgate: SocketAddr, app: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(repo_root().join("examples/nginx/authgate.conf")).unwrap();
        let site = example
            .replace("server 127.0.0.1:8080;", &format!("server {authgate};"))
            .replace("server 127.0.0.1:3000;", &format!("server {app};"))
            .replace("listen 8000;", &format!("listen 127.0.0.1:{port};"));
        assert_ne!(site, example, "the example's addresses are where the test expects them");
        std::fs::write(dir.path().join("authgate.conf"), site).unwrap();
        let d = dir.path().display();
        let main = format!(
            "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/authgate.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let log = dir.path().join("error.log");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn nginx (scripts/install-test-deps.sh installs it)");
        Proxy { child, port, log, _dir: dir }.wait_listening("nginx")
    }

    /// A free port for a proxy (chosen before the provider, which needs the origin).
    pub fn port() -> u16 {
        free_port()
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or("nginx".into())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
