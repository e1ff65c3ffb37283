//! Metrics on `/metrics` after real traffic, the breaker gauge following a killed Redis,
//! and OTLP export (traces continuing a `traceparent`, metrics) to a collector stand-in.

use crate::support::{Authgate, EchoUpstream, Envoy, RedisServer, free_port};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::sync::{Arc, Mutex};

/// The value of the sample `name{…}` whose labels include every `labels` pair (0 if absent).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

pub async fn scrape(authgate: &Authgate) -> String {
    reqwest::get(format!("http://{}/metrics", authgate.admin)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn check_counters_move_by_the_traffic_sent() {
    let upstream = EchoUpstream::start().await;
    let authgate = Authgate::builder().key("excludedURLs", "[/public]").start().await;
    let envoy = Envoy::start(authgate.grpc, upstream.addr).await;
    let client = reqwest::Client::new();
    let before = scrape(&authgate).await;

    for _ in 0..3 {
        assert_eq!(client.get(envoy.url("/public/a")).send().await.unwrap().status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(client.get(envoy.url("/private")).send().await.unwrap().status(), 401);
    }
    for _ in 0..4 {
        crate::support::forward_auth(&client, authgate.http, "/private").send().await.unwrap();
    }
    let after = scrape(&authgate).await;
    let moved = |decision: &str, transport: &str| {
        let labels = [("decision", decision), ("transport", transport)];
        sample(&after, "authgate_check_requests_total", &labels)
            - sample(&before, "authgate_check_requests_total", &labels)
    };
    assert_eq!(moved("allow", "grpc"), 3.0, "{after}");
    assert_eq!(moved("deny", "grpc"), 2.0, "{after}");
    assert_eq!(moved("deny", "http"), 4.0, "{after}");
    assert_eq!(moved("allow", "http"), 0.0);
    let checks = sample(&after, "authgate_check_duration_seconds_count", &[("transport", "grpc")])
        - sample(&before, "authgate_check_duration_seconds_count", &[("transport", "grpc")]);
    assert_eq!(checks, 5.0, "one duration sample per Check");
    assert!(after.contains("# TYPE authgate_check_duration_seconds histogram"), "{after}");
}

/// Every metric name the dashboard and the alert rules use.
pub const EXPORTED_NAMES: &[&str] = &[
    "authgate_check_requests_total",
    "authgate_check_duration_seconds_bucket",
    "authgate_cache_requests_total",
    "authgate_cache_hits_total",
    "authgate_cache_rejected_total",
    "authgate_redis_operation_duration_seconds_bucket",
    "authgate_redis_errors_total",
    "authgate_circuit_breaker_state",
    "authgate_circuit_breaker_transitions_total",
    "authgate_redis_pool_connections",
];

#[tokio::test]
async fn the_breaker_gauge_follows_redis_and_every_documented_name_is_exported() {
    let mut redis = RedisServer::start();
    let authgate = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .yaml(&format!(
            "redis:\n  enabled: true\n  address: {}\n  cacheMode: hybrid\n  circuitBreakerThreshold: 2\n  circuitBreakerTimeout: 1\n  dialTimeout: 1",
            redis.address()
        ))
        .start()
        .await;
    crate::support::forward_auth(&reqwest::Client::new(), authgate.http, "/public").send().await.unwrap();
    crate::support::wait_until("redis ops measured", async || {
        sample(&scrape(&authgate).await, "authgate_redis_operation_duration_seconds_count", &[("op", "ping")]) > 0.0
    })
    .await;
    assert_eq!(sample(&scrape(&authgate).await, "authgate_circuit_breaker_state", &[]), 0.0);

    redis.kill();
    crate::support::wait_until("gauge open", async || {
        sample(&scrape(&authgate).await, "authgate_circuit_breaker_state", &[]) == 1.0
    })
    .await;
    redis.restart();
    crate::support::wait_until("gauge closed", async || {
        sample(&scrape(&authgate).await, "authgate_circuit_breaker_state", &[]) == 0.0
    })
    .await;
    let metrics = scrape(&authgate).await;
    assert!(sample(&metrics, "authgate_circuit_breaker_transitions_total", &[("to", "open")]) >= 1.0, "{metrics}");
    assert!(sample(&metrics, "authgate_circuit_breaker_transitions_total", &[("to", "closed")]) >= 1.0, "{metrics}");
    // The outage was a killed Redis: counted by class.
    let refused = sample(&metrics, "authgate_redis_errors_total", &[("class", "connection_refused")])
        + sample(&metrics, "authgate_redis_errors_total", &[("class", "connection_lost")]);
    assert!(refused >= 1.0, "{metrics}");
    for name in EXPORTED_NAMES {
        assert!(metrics.lines().any(|l| l.starts_with(name)), "{name} is not exported:\n{metrics}");
    }
}

/// A received span: name, trace id, parent span id.
type ReceivedSpan = (String, Vec<u8>, Vec<u8>);

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    metric_names: Arc<Mutex<Vec<String>>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            if let Some(resource) = &resource_spans.resource {
                for attribute in &resource.attributes {
                    if attribute.key == "service.name" {
                        self.service_names.lock().unwrap().push(format!("{:?}", attribute.value));
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    self.spans.lock().unwrap().push((span.name, span.trace_id, span.parent_span_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        for resource_metrics in request.into_inner().resource_metrics {
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    self.metric_names.lock().unwrap().push(metric.name);
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn otlp_receives_spans_that_continue_the_callers_trace_and_metrics() {
    // A collector stand-in: the OTLP gRPC services, implemented in the test, recording
    // what arrives. (No OpenTelemetry Collector binary can be installed here.)
    let collector = Collector::default();
    let port = free_port();
    let server = {
        let collector = collector.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .add_service(MetricsServiceServer::new(collector))
                .serve(([127, 0, 0, 1], port).into())
                .await
                .unwrap();
        })
    };
    let authgate = Authgate::builder()
        .key("excludedURLs", "[/public]")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://127.0.0.1:{port}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("OTEL_SERVICE_NAME", "authgate-under-test")
        .start()
        .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let response = crate::support::forward_auth(&reqwest::Client::new(), authgate.http, "/private")
        .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    crate::support::wait_until("span exported", async || {
        collector.spans.lock().unwrap().iter().any(|(name, _, _)| name == "authgate.check")
    })
    .await;
    let spans = collector.spans.lock().unwrap().clone();
    let (_, trace, parent) = spans.iter().find(|(name, _, _)| name == "authgate.check").unwrap();
    assert_eq!(hex(trace), trace_id, "the check span continues the caller's trace");
    assert_eq!(hex(parent), parent_span, "its parent is the caller's span");
    assert!(collector.service_names.lock().unwrap().iter().any(|s| s.contains("authgate-under-test")));

    crate::support::wait_until("metrics exported", async || {
        let names = collector.metric_names.lock().unwrap();
        names.iter().any(|n| n == "authgate_check_requests") && names.iter().any(|n| n == "authgate_check_duration")
    })
    .await;
    drop(authgate);
    server.abort();
}

#[test]
fn dashboards_and_alerts_use_only_exported_metric_names() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/authgate-dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/authgate-alerts.yaml")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().unwrap().len() >= 5);
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&alerts).expect("the alert rules are YAML");
    assert!(rules["groups"][0]["rules"].as_sequence().unwrap().len() >= 3);

    let mut used = 0;
    for text in [&dashboard, &alerts] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("authgate_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            used += 1;
            assert!(
                EXPORTED_NAMES.contains(&name.as_str()),
                "{name} is used by a dashboard or alert but not among the names the metrics test proves exported"
            );
        }
    }
    assert!(used >= 10, "only {used} metric references found");
}
