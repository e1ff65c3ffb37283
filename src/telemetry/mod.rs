//! Logs, metrics and traces.
//!
//! - Logs: `tracing` to standard error (`logLevel`, `logFormat`; `RUST_LOG` overrides the
//!   level with a full filter). Standard output stays clean for `check-config`.
//! - Metrics: the OpenTelemetry SDK; every instrument is created in [`metrics`]. Exported
//!   as Prometheus text on `/metrics` always, and over OTLP/gRPC when the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_METRICS_ENDPOINT`) is set.
//! - Traces: `tracing` spans bridged by tracing-opentelemetry, exported over OTLP/gRPC
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_TRACES_ENDPOINT`) is set. A W3C
//!   `traceparent` on the checked request continues the caller's trace (`crate::authz::observe`).
//!   Service name and resource attributes come from `OTEL_SERVICE_NAME` and
//!   `OTEL_RESOURCE_ATTRIBUTES` (service name `authgate` by default).

pub mod metrics;

use crate::config::{LogFormat, LogLevel};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The running telemetry pipeline; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    meters: SdkMeterProvider,
    tracers: Option<SdkTracerProvider>,
    registry: prometheus::Registry,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("otlp_traces", &self.tracers.is_some()).finish_non_exhaustive()
    }
}

fn env_set(names: &[&str]) -> bool {
    names.iter().any(|n| std::env::var(n).is_ok_and(|v| !v.trim().is_empty()))
}

fn resource() -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder();
    let named = env_set(&["OTEL_SERVICE_NAME"])
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = if named { builder } else { builder.with_service_name("authgate") };
    builder.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build()
}

impl Telemetry {
    /// Installs logging, the global meter and tracer providers and the W3C propagator.
    /// Call once, from inside the Tokio runtime (the OTLP exporters need it).
    pub fn init(level: LogLevel, format: LogFormat) -> Telemetry {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let resource = resource();

        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .expect("a fresh registry accepts the exporter");
        let mut meters = SdkMeterProvider::builder().with_resource(resource.clone()).with_reader(prometheus);
        let mut otlp_problems = Vec::new();
        if env_set(&["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]) {
            match opentelemetry_otlp::MetricExporter::builder().with_tonic().build() {
                Ok(exporter) => meters = meters.with_periodic_exporter(exporter),
                Err(e) => otlp_problems.push(format!("OTLP metrics exporter: {e}")),
            }
        }
        let meters = meters.build();
        opentelemetry::global::set_meter_provider(meters.clone());

        let tracers = if env_set(&["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
            match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
                Ok(exporter) => {
                    Some(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
                }
                Err(e) => {
                    otlp_problems.push(format!("OTLP span exporter: {e}"));
                    None
                }
            }
        } else {
            None
        };

        let filter = EnvFilter::try_from_env("RUST_LOG")
            .unwrap_or_else(|_| EnvFilter::new(format!("warn,authgate={}", level.as_str())));
        let otel_layer = tracers.as_ref().map(|provider| {
            opentelemetry::global::set_tracer_provider(provider.clone());
            tracing_opentelemetry::layer().with_tracer(provider.tracer("authgate"))
        });
        // Colours only on a terminal: log files and collectors get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
        let registry_layers = tracing_subscriber::registry().with(filter).with(otel_layer);
        match format {
            LogFormat::Json => registry_layers.with(fmt.json().flatten_event(true).with_current_span(false)).init(),
            LogFormat::Text => registry_layers.with(fmt.with_target(false)).init(),
        }
        for problem in otlp_problems {
            tracing::error!("{problem}; continuing without it");
        }
        // Create every instrument now, against the real provider.
        metrics::metrics();
        Telemetry { meters, tracers, registry }
    }

    /// The registry that `/metrics` renders.
    pub fn registry(&self) -> prometheus::Registry {
        self.registry.clone()
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(self) {
        if let Some(tracers) = self.tracers
            && let Err(e) = tracers.shutdown()
        {
            tracing::warn!("trace export at shutdown: {e}");
        }
        if let Err(e) = self.meters.shutdown() {
            tracing::warn!("metric export at shutdown: {e}");
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn prometheus_text(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!("cannot render metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;

    #[test]
    fn prometheus_exporter_renders_counters() {
        let registry = prometheus::Registry::new();
        let exporter =
            opentelemetry_prometheus::exporter().with_registry(registry.clone()).without_target_info().build().unwrap();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("authgate");
        meter.u64_counter("authgate_test").build().add(2, &[]);
        let text = super::prometheus_text(&registry);
        assert!(text.contains("authgate_test_total"), "{text:?}");
    }
}
