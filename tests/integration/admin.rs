//! The admin listener: `/healthz`, `/readyz`, `/metrics`.

use crate::support::Authgate;

#[tokio::test]
async fn healthz_reports_the_seeds_json() {
    let authgate = Authgate::builder().start().await;
    let response = reqwest::get(format!("http://{}/healthz", authgate.admin)).await.unwrap();
    assert_eq!(response.status(), 200);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["cache"]["mode"], "memory");
    assert!(health["cache"]["memory"]["entries"].is_u64(), "{health}");
    assert!(health["cache"]["memory"]["size"].is_string(), "{health}");
}

#[tokio::test]
async fn readyz_and_metrics_answer() {
    let authgate = Authgate::builder().start().await;
    let ready = reqwest::get(format!("http://{}/readyz", authgate.admin)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", authgate.admin)).await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let missing = reqwest::get(format!("http://{}/nope", authgate.admin)).await.unwrap();
    assert_eq!(missing.status(), 404);
}
