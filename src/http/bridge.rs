//! The forward-auth bridge: the same decision as a Check, over plain HTTP, for Traefik
//! `ForwardAuth`, Caddy `forward_auth` and nginx `auth_request`.
//!
//! The proxy calls `/auth` with the original request's headers and describes the original
//! request in `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` (Traefik, Caddy) or
//! `X-Original-Method` / `X-Original-URI` (nginx convention). A 2xx answer allows the
//! request, and the proxy copies the identity headers of the answer onto the upstream
//! request; any other answer goes back to the client as it is.

use crate::authz::observe::observed_decision;
use crate::authz::{AuthRequest, Authorizer, Decision, Outcome};
use crate::oidc::backchannel::{BackchannelLogout, Refusal};
use crate::reason::Reason;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use std::sync::Arc;

/// The path proxies call.
pub const AUTH_PATH: &str = "/auth";

pub fn router(authorizer: Arc<Authorizer>, backchannel: Option<Arc<BackchannelLogout>>) -> Router {
    let mut router = Router::new().route(AUTH_PATH, any(forward_auth)).with_state(authorizer);
    if let Some(backchannel) = backchannel {
        router = router.merge(
            Router::new().route(crate::oidc::backchannel::PATH, post(backchannel_logout)).with_state(backchannel),
        );
    }
    router
}

/// `POST /backchannel-logout` with `logout_token=<JWT>` (form-encoded), from the provider.
async fn backchannel_logout(State(handler): State<Arc<BackchannelLogout>>, body: String) -> Response {
    let token =
        url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
    let result = match token {
        Some(token) => handler.handle(&token).await,
        None => Err(Refusal::Invalid(Reason::MissingLogoutToken)),
    };
    let no_store = [(axum::http::header::CACHE_CONTROL, "no-store")];
    // Back-Channel Logout 1.0 §2.8: 400 for a token we refuse; a failure of ours is a 5xx,
    // so the provider tries again.
    let (status, error, reason) = match result {
        Ok(()) => return (StatusCode::OK, no_store).into_response(),
        Err(Refusal::Invalid(reason)) => (StatusCode::BAD_REQUEST, "invalid_request", reason),
        Err(Refusal::Unavailable(reason)) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", reason),
    };
    tracing::info!(%reason, status = status.as_u16(), "back-channel logout refused");
    let body = serde_json::json!({"error": error, "error_description": reason.as_str()});
    (status, no_store, axum::Json(body)).into_response()
}

async fn forward_auth(State(authorizer): State<Arc<Authorizer>>, method: Method, headers: HeaderMap) -> Response {
    let request = auth_request(&method, &headers);
    let decision = observed_decision(&authorizer, Some(&request), "http").await;
    http_response(decision)
}

/// The original request, as the proxy describes it.
pub fn auth_request(method: &Method, headers: &HeaderMap) -> AuthRequest {
    let get =
        |names: &[&str]| names.iter().find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok())).map(str::to_owned);
    let mut map = std::collections::HashMap::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            map.entry(name.as_str().to_owned())
                .and_modify(|existing: &mut String| {
                    existing.push(',');
                    existing.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
    }
    AuthRequest {
        method: get(&["x-forwarded-method", "x-original-method"]).unwrap_or_else(|| method.to_string()),
        scheme: get(&["x-forwarded-proto"]).unwrap_or_else(|| "http".to_owned()),
        host: get(&["x-forwarded-host", "host"]).unwrap_or_default(),
        path: get(&["x-forwarded-uri", "x-original-uri"]).unwrap_or_else(|| "/".to_owned()),
        headers: map,
    }
}

/// The HTTP answer for a decision (see the table in `crate::authz`).
pub fn http_response(decision: Decision) -> Response {
    let (status, headers) = match decision.outcome {
        Outcome::Allow => (StatusCode::OK, decision.upstream_headers),
        Outcome::Error => (StatusCode::SERVICE_UNAVAILABLE, decision.response_headers),
        Outcome::Deny | Outcome::Redirect => {
            (StatusCode::from_u16(decision.status).unwrap_or(StatusCode::FORBIDDEN), decision.response_headers)
        }
    };
    let mut response = (status, decision.body).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_request_from_forwarded_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-method", HeaderValue::from_static("POST"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("app.example"));
        headers.insert("x-forwarded-uri", HeaderValue::from_static("/x?y=1"));
        let request = auth_request(&Method::GET, &headers);
        assert_eq!(
            (request.method.as_str(), request.scheme.as_str(), request.host.as_str(), request.path.as_str()),
            ("POST", "https", "app.example", "/x?y=1")
        );
    }

    #[test]
    fn falls_back_to_nginx_conventions() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("app.example"));
        headers.insert("x-original-uri", HeaderValue::from_static("/private"));
        let request = auth_request(&Method::GET, &headers);
        assert_eq!(
            (request.host.as_str(), request.path.as_str(), request.method.as_str()),
            ("app.example", "/private", "GET")
        );
    }
}
