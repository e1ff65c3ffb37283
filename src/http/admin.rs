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

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub health: Arc<HealthState>,
    /// The Prometheus registry the OpenTelemetry exporter fills; `None` serves an empty page.
    pub metrics: Option<prometheus::Registry>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.health.report())
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let readiness = state.health.readiness();
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let body = state.metrics.as_ref().map(crate::telemetry::prometheus_text).unwrap_or_default();
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], body)
}
