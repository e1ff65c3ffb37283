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
        drain_delay: authgate::config::Seconds::from_secs(0),
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

#[tokio::test]
async fn after_sigterm_requests_are_still_served_for_the_drain_delay() {
    let mut authgate = Authgate::builder().key("excludedURLs", "[/public]").key("drainDelay", "3").start().await;
    let client = reqwest::Client::new();
    let readyz = format!("http://{}/readyz", authgate.admin);
    authgate.send_sigterm();
    crate::support::wait_until("readiness failing", async || {
        client.get(&readyz).send().await.is_ok_and(|r| r.status() == 503)
    })
    .await;
    // Not ready any more, but still answering: proxies that have not noticed yet lose nothing.
    let served = crate::support::forward_auth(&client, authgate.http, "/public/x").send().await.unwrap();
    assert_eq!(served.status(), 200);
    let status = authgate.wait_exit();
    assert!(status.success(), "{status}:\n{}", authgate.logs());
    assert!(authgate.logs().contains("still serving while proxies stop sending"), "{}", authgate.logs());
}
