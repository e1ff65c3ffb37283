//! Start-up and graceful shutdown.

use crate::support::Authgate;
use authgate::config::Config;
use authgate::server::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut authgate = Authgate::builder().start().await;
    let status = authgate.terminate();
    assert!(status.success(), "exit status {status}:\n{}", authgate.logs());
    let logs = authgate.logs();
    assert!(logs.contains("shutdown requested: draining"), "{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    // What `main` does before serving.
    authgate::tls::install_crypto_provider();
    let config = Config {
        provider_url: "http://127.0.0.1:9/".into(),
        client_id: "test".into(),
        session_encryption_key: authgate::config::Secret::new(crate::support::random_hex(32)),
        grpc_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        admin_address: "127.0.0.1:0".into(),
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let server = Server::bind(config).await.unwrap();
    let addrs = server.local_addresses();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", addrs.grpc)).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    let mut watch = client
        .watch(HealthCheckRequest { service: "envoy.service.auth.v3.Authorization".into() })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    stop.send(()).unwrap();
    let next = watch.message().await.unwrap().expect("a status change before the stream ends");
    assert_eq!(next.status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);

    // The admin listener stops too, and run() returns Ok once the watcher goes away.
    drop(watch);
    drop(client);
    running.await.unwrap().unwrap();
    assert!(reqwest::get(format!("http://{}/healthz", addrs.admin)).await.is_err());
}
