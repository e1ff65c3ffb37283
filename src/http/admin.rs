//! Admin endpoints: `GET /healthz` (liveness and the seed's health JSON), `GET /readyz`
//! (200 only when ready to decide), `GET /metrics` (Prometheus text format).

use crate::health::HealthState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use std::sync::Arc;

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(health: Arc<HealthState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn healthz(State(health): State<Arc<HealthState>>) -> impl IntoResponse {
    Json(health.report())
}

async fn readyz(State(health): State<Arc<HealthState>>) -> impl IntoResponse {
    let readiness = health.readiness();
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], String::new())
}
