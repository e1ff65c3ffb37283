//! Adapter between Envoy's ext_authz v3 messages and the decision core. The only place
//! that knows the protobuf shapes; see `crate::authz` for the outcome → status table.

use crate::authz::decision::add_header;
use crate::authz::observe::observed_decision;
use crate::authz::{AuthRequest, Authorizer, Decision, Outcome};
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// The `envoy.service.auth.v3.Authorization` service.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    authorizer: Arc<Authorizer>,
}

impl ExtAuthz {
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        ExtAuthz { authorizer }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let auth_request = auth_request(request.into_inner());
        let request = auth_request.as_ref().ok_or_else(Decision::no_http_attributes);
        let decision = observed_decision(&self.authorizer, request, "grpc").await;
        Ok(Response::new(check_response(decision)))
    }
}

/// The HTTP request inside a Check, or `None` when there is none (TCP ext_authz filter).
/// Takes the Check apart rather than copying it: this runs on every request.
pub fn auth_request(check: CheckRequest) -> Option<AuthRequest> {
    let http = check.attributes?.request?.http?;
    // Envoy sends lower-case names already; anything else is lowered in place.
    let mut headers: HashMap<String, String> = http
        .headers
        .into_iter()
        .map(|(mut name, value)| {
            name.make_ascii_lowercase();
            (name, value)
        })
        .collect();
    // Envoy sends `header_map` instead of `headers` when `encode_raw_headers` is on.
    if let Some(map) = http.header_map {
        for header in map.headers {
            let value = if header.raw_value.is_empty() {
                header.value
            } else {
                String::from_utf8_lossy(&header.raw_value).into_owned()
            };
            add_header(&mut headers, header.key.to_ascii_lowercase(), &value);
        }
    }
    let host = if http.host.is_empty() { headers.get(":authority").cloned().unwrap_or_default() } else { http.host };
    // The query string is part of `path`; `query` is documented but left empty by Envoy.
    let path = if http.query.is_empty() || http.path.contains('?') {
        http.path
    } else {
        format!("{}?{}", http.path, http.query)
    };
    Some(AuthRequest { method: http.method, scheme: http.scheme, host, path, headers })
}

/// The ext_authz answer for a decision.
pub fn check_response(decision: Decision) -> CheckResponse {
    let code = match (decision.outcome, decision.status) {
        (Outcome::Allow, _) => Code::Ok,
        (Outcome::Error, _) => Code::Unavailable,
        (_, 400) => Code::InvalidArgument,
        (_, 403) => Code::PermissionDenied,
        _ => Code::Unauthenticated,
    };
    let status =
        Some(rpc::Status { code: code as i32, message: decision.reason.as_str().to_owned(), details: Vec::new() });
    let http_response = match decision.outcome {
        Outcome::Allow => HttpResponse::OkResponse(OkHttpResponse {
            headers: decision
                .upstream_headers
                .into_iter()
                .map(|(k, v)| header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                .collect(),
            headers_to_remove: decision.upstream_remove,
            ..Default::default()
        }),
        Outcome::Deny | Outcome::Redirect => HttpResponse::DeniedResponse(denied(decision, true)),
        // No status: the proxy's `status_on_error` decides what the client sees.
        Outcome::Error => HttpResponse::ErrorResponse(denied(decision, false)),
    };
    CheckResponse { status, http_response: Some(http_response), dynamic_metadata: None }
}

fn denied(decision: Decision, with_status: bool) -> DeniedHttpResponse {
    DeniedHttpResponse {
        status: with_status.then_some(HttpStatus { code: i32::from(decision.status) }),
        // `append` unset (append_action default): Envoy 1.40 drops `append: true` headers the
        // request does not carry, several Set-Cookie headers included.
        headers: decision
            .response_headers
            .into_iter()
            .map(|(k, v)| header(k, v, HeaderAppendAction::AppendIfExistsOrAdd))
            .collect(),
        body: decision.body,
    }
}

#[allow(deprecated)] // `append` is the deprecated twin of `append_action`; we leave it unset.
fn header(key: String, value: String, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key, value, raw_value: Vec::new() }),
        append: None,
        append_action: action as i32,
        keep_empty_value: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    fn check(path: &str, query: &str) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    time: None,
                    http: Some(attribute_context::HttpRequest {
                        method: "GET".into(),
                        path: path.into(),
                        query: query.into(),
                        host: "app.example".into(),
                        scheme: "https".into(),
                        headers: [("Accept".to_owned(), "text/html".to_owned())].into(),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn translates_the_http_attributes() {
        let request = auth_request(check("/a?b=1", "")).unwrap();
        assert_eq!(
            (request.method.as_str(), request.host.as_str(), request.path.as_str()),
            ("GET", "app.example", "/a?b=1")
        );
        assert_eq!(request.header("accept"), Some("text/html"));
        assert_eq!(auth_request(check("/a", "b=1")).unwrap().path, "/a?b=1");
    }

    /// L6: with `encode_raw_headers`, repeated `Cookie` headers arrive one by one.
    #[test]
    fn l6_repeated_cookie_headers_join_with_semicolons() {
        use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue as CoreHeaderValue};
        let mut request = check("/a", "");
        let http = request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
        http.headers.clear();
        let raw = |key: &str, value: &str| CoreHeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        };
        http.header_map = Some(HeaderMap {
            headers: vec![raw("cookie", "a=1"), raw("cookie", "_authgate_session=x"), raw("x-a", "1"), raw("x-a", "2")],
        });
        let request = auth_request(request).unwrap();
        assert_eq!(request.header("cookie"), Some("a=1; _authgate_session=x"));
        assert_eq!(request.header("x-a"), Some("1, 2"));
    }

    #[test]
    fn a_check_without_http_attributes_has_no_request() {
        assert!(auth_request(CheckRequest::default()).is_none());
    }

    #[test]
    fn denials_carry_status_and_headers() {
        let response = check_response(Decision::unauthenticated());
        assert_eq!(response.status.unwrap().code, Code::Unauthenticated as i32);
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("denied response expected")
        };
        assert_eq!(denied.status.unwrap().code, 401);
        assert!(denied.headers.iter().any(|h| h.header.as_ref().unwrap().key == "www-authenticate"));
    }
}
