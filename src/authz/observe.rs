//! One place that wraps every decision, whichever adapter asked: the span (continuing the
//! caller's W3C trace), the metrics, and the decision log line. Every answer goes through
//! it, a Check without HTTP attributes included.

use super::{AuthRequest, Authorizer, Decision, Outcome};
use crate::telemetry::metrics::metrics;
use std::collections::HashMap;
use std::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads `traceparent`/`tracestate` from the checked request's headers.
struct HeaderExtractor<'a>(&'a HashMap<String, String>);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The propagators ask in lower case, as the map is kept.
        match self.0.get(key) {
            Some(value) => Some(value.as_str()),
            None if key.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
            }
            None => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Decides on `request`, traced, measured and logged; `Err` carries the answer to a call
/// the adapter already refused (a Check without HTTP attributes, a bridge call from an
/// untrusted address), which is measured and logged the same way. `transport` is `grpc`
/// or `http`.
pub async fn observed_decision(
    authorizer: &Authorizer,
    request: Result<&AuthRequest, Decision>,
    transport: &'static str,
) -> Decision {
    let request = match request {
        Ok(request) => request,
        Err(decision) => {
            metrics().record_check(transport, decision.outcome.as_str(), std::time::Duration::ZERO);
            tracing::info!(decision = decision.outcome.as_str(), reason = %decision.reason, status = decision.status, transport, "refused");
            return decision;
        }
    };
    let span = tracing::info_span!(
        "check",
        otel.name = "authgate.check",
        transport,
        http.request.method = %request.method,
        url.path = %request.path_only(),
        decision = tracing::field::Empty,
        reason = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&request.headers)));
    // Fails only when no OpenTelemetry layer is installed; then there is nothing to link.
    let _ = span.set_parent(parent);

    let started = Instant::now();
    let decision = authorizer.decide(request).instrument(span.clone()).await;
    let took = started.elapsed();
    span.record("decision", decision.outcome.as_str());
    span.record("reason", decision.reason.as_str());
    metrics().record_check(transport, decision.outcome.as_str(), took);

    let _entered = span.enter();
    let path = request.path_only();
    match decision.outcome {
        Outcome::Allow => {
            tracing::debug!(decision = "allow", reason = %decision.reason, transport, %path, took_us = took.as_micros() as u64, "decision")
        }
        Outcome::Deny | Outcome::Redirect => tracing::info!(
            decision = decision.outcome.as_str(),
            reason = %decision.reason,
            status = decision.status,
            transport,
            %path,
            "denied"
        ),
        Outcome::Error => {
            tracing::warn!(decision = "error", reason = %decision.reason, transport, %path, "could not decide")
        }
    }
    drop(_entered);
    decision
}
