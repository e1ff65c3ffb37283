//! `grpcAddress: unix:/path`: Envoy asks authgate over a Unix-domain socket (a `pipe`
//! address), the cheaper hop for a sidecar beside the proxy.

use crate::support::{Authgate, EchoUpstream, Envoy, free_port, random_hex, tool};
use authgate::config::Config;
use authgate::server::{ServeError, Server};
use std::path::Path;
use std::process::Command;

/// The shipped Envoy example with authgate's endpoint turned into the `pipe` address its
/// comment shows.
fn envoy_config_over(socket: &Path, upstream: std::net::SocketAddr) -> String {
    let placeholder: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = Envoy::example_config("examples/envoy/envoy.yaml", free_port(), free_port(), &[placeholder], upstream);
    let tcp = "- endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } }";
    assert_eq!(config.matches(tcp).count(), 1);
    let pipe = format!("- endpoint: {{ address: {{ pipe: {{ path: {} }} }} }}", socket.display());
    assert!(config.contains(&pipe.replace(&socket.display().to_string(), "/run/authgate/grpc.sock")));
    config.replace(tcp, &pipe)
}

#[tokio::test]
async fn envoy_checks_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let upstream = EchoUpstream::start().await;
    let mut authgate = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml(&format!("grpcAddress: unix:{}", socket.display()))
        .start()
        .await;
    assert_eq!(authgate.grpc_socket.as_deref(), Some(socket.as_path()), "{}", authgate.logs());
    let envoy = Envoy::start_config(&envoy_config_over(&socket, upstream.addr)).await;
    let client = reqwest::Client::new();

    let allowed = client.get(envoy.url("/public/x")).send().await.unwrap();
    assert_eq!(allowed.status(), 200, "envoy log:\n{}", envoy.logs());
    // The 401 and its challenge come from authgate: Envoy's own failure would be a 503.
    let denied = client.get(envoy.url("/private")).send().await.unwrap();
    assert_eq!(denied.status(), 401, "envoy log:\n{}", envoy.logs());
    assert!(denied.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // gRPC health and reflection answer on the socket too (grpcurl -unix; its default
    // :authority is the socket path, which HTTP/2 servers refuse).
    let health = Command::new(tool("grpcurl"))
        .args(["-plaintext", "-unix", "-authority", "localhost"])
        .args(["-d", r#"{"service":"envoy.service.auth.v3.Authorization"}"#])
        .arg(&socket)
        .arg("grpc.health.v1.Health/Check")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&health.stdout).into_owned() + &String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success() && out.contains("\"SERVING\""), "{out}");

    // Stopping removes the socket file, so the next start binds it again.
    let status = authgate.terminate();
    assert!(status.success(), "{status}:\n{}", authgate.logs());
    assert!(!socket.exists(), "the socket file outlived the process");
}

fn config_on(grpc_address: &str) -> Config {
    Config {
        provider_url: "http://127.0.0.1:9/".into(),
        client_id: "test".into(),
        session_encryption_key: authgate::config::Secret::new(random_hex(32)),
        grpc_address: grpc_address.into(),
        http_address: "127.0.0.1:0".into(),
        admin_address: "127.0.0.1:0".into(),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_socket_left_behind_is_replaced_and_a_live_one_is_not_taken() {
    authgate::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let address = format!("unix:{}", socket.display());
    assert!(config_on(&address).validate().is_empty(), "{:?}", config_on(&address).validate());

    // A process that died without cleaning up leaves the file; nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let first = Server::bind(config_on(&address)).await.expect("a stale socket file is replaced");
    assert_eq!(first.local_addresses().grpc.to_string(), address);

    // A second server on the same socket would steal the first one's Checks.
    match Server::bind(config_on(&address)).await {
        Err(ServeError::Bind { what: "grpc", error, .. }) => {
            assert!(error.to_string().contains("another process is listening"), "{error}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("two servers bound one socket"),
    }
    assert!(socket.exists(), "the refused bind must leave the live socket alone");
    drop(first);
    assert!(!socket.exists(), "a dropped listener removes its socket file");

    // Anything else at the path is not ours to delete.
    std::fs::write(&socket, "data").unwrap();
    match Server::bind(config_on(&address)).await {
        Err(ServeError::Bind { error, .. }) => assert!(error.to_string().contains("is not a socket"), "{error}"),
        _ => panic!("a regular file was replaced"),
    }
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "data");
}

#[test]
fn unix_socket_addresses_are_validated() {
    for (address, expected) in [
        ("unix:grpc.sock", "absolute path"),
        ("unix:", "absolute path"),
        ("unix:/run/authgate/", "must name a socket file"),
        (&format!("unix:/{}", "a".repeat(120)), "at most 107"),
        ("/run/authgate.sock", "unix:/absolute/path"),
    ] {
        let problems = config_on(address).validate();
        let text = format!("{problems:?}");
        assert!(text.contains("grpcAddress") && text.contains(expected), "{address}: {text}");
    }
    // Only the gRPC listener takes a socket path.
    let config = Config { http_address: "unix:/run/authgate/http.sock".into(), ..config_on("127.0.0.1:0") };
    assert!(format!("{:?}", config.validate()).contains("httpAddress"));
}
