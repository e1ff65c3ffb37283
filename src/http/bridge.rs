//! The forward-auth bridge: the same decision as a Check, over plain HTTP, for Traefik
//! `ForwardAuth`, Caddy `forward_auth` and nginx `auth_request`.
//!
//! Safe by construction:
//! - **Which headers describe the original request is configuration**
//!   (`forwardAuth.convention`): `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` for Traefik
//!   and Caddy, `X-Original-Method` and `X-Original-URI` or `X-Original-URL` (with `Host`)
//!   for nginx. Only those are read. A call missing them, repeating one, or carrying the
//!   other convention's with a different value is refused with 400: a client that sends its
//!   own `X-Forwarded-Uri` through nginx cannot choose the path authgate decides on.
//! - **Only trusted proxies** (`forwardAuth.trustedProxies`, loopback by default) may call,
//!   optionally with a shared secret header (`forwardAuth.sharedSecret`).
//! - **Every allowed answer carries every identity header authgate manages**, empty when it
//!   has no value, and the `Cookie` the upstream should get (authgate's own cookies removed
//!   with `stripAuthCookies`), so a proxy that copies the listed headers from the answer
//!   overwrites whatever the client sent, whichever proxy it is.
//! - Repeated request headers are joined as HTTP says: `Cookie` crumbs with `; ` (RFC 9113
//!   §8.2.3), others with `, `.
//!
//! Besides `/auth`, the bridge serves the login flow's own endpoints directly (the callback,
//! logout, and `/oauth2/start?rd=…` for nginx, which cannot pass on a redirect from
//! `auth_request`), and `POST /backchannel-logout` for the provider.

use crate::authz::decision::add_header;
use crate::authz::observe::observed_decision;
use crate::authz::{AuthRequest, Authorizer, Decision, Outcome};
use crate::config::{Config, ForwardAuthConvention, Secret};
use crate::oidc::backchannel::{BackchannelLogout, Refusal};
use crate::reason::Reason;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The path proxies call.
pub const AUTH_PATH: &str = "/auth";
/// Starts a login and returns to `rd` (for proxies that cannot pass a redirect on).
pub const START_PATH: &str = "/oauth2/start";

/// The bridge's settings and the decision core behind it.
pub struct Bridge {
    authorizer: Arc<Authorizer>,
    convention: ForwardAuthConvention,
    trusted: Vec<ipnet::IpNet>,
    secret: Option<(HeaderName, Secret)>,
    force_https: bool,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("convention", &self.convention).finish_non_exhaustive()
    }
}

impl Bridge {
    /// The bridge of `config` (validated: the proxy list parses) over `authorizer`.
    pub fn new(config: &Config, authorizer: Arc<Authorizer>) -> Self {
        let forward = &config.forward_auth;
        let secret = (!forward.shared_secret.is_empty())
            .then(|| HeaderName::try_from(forward.shared_secret_header.to_ascii_lowercase()).ok())
            .flatten()
            .map(|name| (name, forward.shared_secret.clone()));
        Bridge {
            authorizer,
            convention: forward.convention,
            trusted: forward.trusted_proxies.iter().filter_map(|p| crate::config::parse_cidr(p)).collect(),
            secret,
            force_https: config.force_https,
        }
    }

    /// A request made to the bridge itself (the login endpoints nginx proxies to it): the
    /// proxy passed the client's `Host` on.
    fn direct_request(&self, method: &Method, path: String, headers: &HeaderMap) -> AuthRequest {
        AuthRequest {
            method: method.to_string(),
            scheme: if self.force_https { "https" } else { "http" }.to_owned(),
            host: single(headers, "host").unwrap_or_default().to_owned(),
            path,
            headers: joined(headers),
        }
    }

    /// Whether a call comes from a configured proxy (address and, when set, secret).
    fn check_caller(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Reason> {
        let ip = peer.ip().to_canonical();
        if !self.trusted.iter().any(|net| net.contains(&ip)) {
            return Err(Reason::UntrustedProxy);
        }
        if let Some((name, secret)) = &self.secret {
            let sent = headers.get(name).map(HeaderValue::as_bytes).unwrap_or_default();
            if !bool::from(sent.ct_eq(secret.expose().as_bytes())) {
                return Err(Reason::BadSharedSecret);
            }
        }
        Ok(())
    }
}

/// The bridge's routes; `callback` and `logout` are the paths of `callbackURL`/`logoutURL`.
pub fn router(
    bridge: Arc<Bridge>,
    callback: &str,
    logout: &str,
    backchannel: Option<Arc<BackchannelLogout>>,
) -> Router {
    let mut router = Router::new().route(AUTH_PATH, any(forward_auth)).route(START_PATH, get(start_login));
    for path in [callback, logout] {
        if path.starts_with('/') && path != AUTH_PATH && path != START_PATH {
            router = router.route(path, any(direct));
        }
    }
    let mut router = router.with_state(bridge);
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

async fn forward_auth(
    State(bridge): State<Arc<Bridge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let request = bridge
        .check_caller(peer, &headers)
        .and_then(|()| original_request(bridge.convention, bridge.force_https, &headers))
        .map_err(Decision::bad_request);
    let mut decision = observed_decision(&bridge.authorizer, request.as_ref().map_err(Clone::clone), "http").await;
    // nginx turns any answer of `auth_request` other than 2xx, 401 and 403 into a 500: a
    // login redirect goes back as 401 with its `Location` and `Set-Cookie`, which the
    // shipped configuration's `error_page 401` turns into the redirect.
    if bridge.convention == ForwardAuthConvention::Nginx && decision.outcome == Outcome::Redirect {
        decision.status = 401;
    }
    let cookie = request.as_ref().ok().and_then(|r| r.header("cookie")).unwrap_or("").to_owned();
    http_response(decision, bridge.authorizer.managed_headers(), &cookie)
}

/// The login flow's own endpoints (callback, logout), called directly through the proxy.
async fn direct(
    State(bridge): State<Arc<Bridge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = bridge.check_caller(peer, &headers).map(|()| bridge.direct_request(&method, path, &headers));
    let request = request.map_err(Decision::bad_request);
    let decision = observed_decision(&bridge.authorizer, request.as_ref().map_err(Clone::clone), "http").await;
    http_response(decision, &[], "")
}

/// `GET /oauth2/start?rd=<path>`: a 302 to the provider that returns to `rd` (on this host).
async fn start_login(
    State(bridge): State<Arc<Bridge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(reason) = bridge.check_caller(peer, &headers) {
        return http_response(Decision::bad_request(reason), &[], "");
    }
    // `rd` is the rest of the query, percent-decoded: nginx passes `$request_uri` as it is,
    // query string and all (`/oauth2/start?rd=/page?a=1&b=2`).
    let rd = uri
        .query()
        .and_then(|q| q.strip_prefix("rd="))
        .map(|rd| percent_encoding::percent_decode_str(rd).decode_utf8_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned());
    let request = bridge.direct_request(&Method::GET, rd, &headers);
    http_response(bridge.authorizer.start_login(&request), &[], "")
}

/// A header that must appear at most once: its value, or `None` when absent, repeated or
/// not text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.to_str().ok();
    if values.next().is_some() { None } else { first }
}

/// Request headers as the decision core sees them: names lower-case, repeated `Cookie`
/// headers joined with `; `, other repeated headers with `, `; values that are not
/// visible ASCII are dropped.
pub fn joined(headers: &HeaderMap) -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            add_header(&mut map, name.as_str().to_owned(), value);
        }
    }
    map
}

/// The original request, as the configured proxy convention describes it.
pub fn original_request(
    convention: ForwardAuthConvention,
    force_https: bool,
    headers: &HeaderMap,
) -> Result<AuthRequest, Reason> {
    let present = |name: &str| headers.contains_key(name);
    let one = |name: &str| -> Result<Option<String>, Reason> {
        match headers.get_all(name).iter().count() {
            0 => Ok(None),
            1 => single(headers, name).map(|v| Some(v.to_owned())).ok_or(Reason::ForwardAuthHeadersMissing),
            _ => Err(Reason::ForwardAuthHeadersConflict),
        }
    };
    let (method, scheme, host, path) = match convention {
        ForwardAuthConvention::Traefik | ForwardAuthConvention::Caddy => {
            let uri = one("x-forwarded-uri")?.ok_or(Reason::ForwardAuthHeadersMissing)?;
            let forwarded_method = one("x-forwarded-method")?.ok_or(Reason::ForwardAuthHeadersMissing)?;
            let host = one("x-forwarded-host")?.ok_or(Reason::ForwardAuthHeadersMissing)?;
            let scheme = one("x-forwarded-proto")?.unwrap_or_else(|| "http".into());
            // The other convention, if present, must say the same.
            if one("x-original-uri")?.is_some_and(|other| other != uri)
                || one("x-original-method")?.is_some_and(|other| !other.eq_ignore_ascii_case(&forwarded_method))
                || present("x-original-url")
            {
                return Err(Reason::ForwardAuthHeadersConflict);
            }
            (forwarded_method, scheme, host, uri)
        }
        ForwardAuthConvention::Nginx => {
            let original_method = one("x-original-method")?.ok_or(Reason::ForwardAuthHeadersMissing)?;
            let (scheme, host, path) = match (one("x-original-url")?, one("x-original-uri")?) {
                (Some(url), uri) => {
                    let parsed = url::Url::parse(&url).map_err(|_| Reason::ForwardAuthHeadersMissing)?;
                    let mut path = parsed.path().to_owned();
                    if let Some(query) = parsed.query() {
                        path = format!("{path}?{query}");
                    }
                    if uri.is_some_and(|uri| uri != path) {
                        return Err(Reason::ForwardAuthHeadersConflict);
                    }
                    let host = match parsed.port() {
                        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
                        None => parsed.host_str().unwrap_or_default().to_owned(),
                    };
                    (parsed.scheme().to_owned(), host, path)
                }
                (None, Some(uri)) => {
                    let host = one("host")?.ok_or(Reason::ForwardAuthHeadersMissing)?;
                    (if force_https { "https" } else { "http" }.to_owned(), host, uri)
                }
                (None, None) => return Err(Reason::ForwardAuthHeadersMissing),
            };
            if one("x-forwarded-uri")?.is_some_and(|other| other != path)
                || one("x-forwarded-method")?.is_some_and(|other| !other.eq_ignore_ascii_case(&original_method))
            {
                return Err(Reason::ForwardAuthHeadersConflict);
            }
            (original_method, scheme, host, path)
        }
    };
    Ok(AuthRequest { method, scheme, host, path, headers: joined(headers) })
}

/// The HTTP answer for a decision (see the table in `crate::authz`). An allowed answer
/// carries every header in `managed` (empty when the decision sets no value) and `Cookie`
/// (the request's cookies minus authgate's when `stripAuthCookies` removed some).
pub fn http_response(decision: Decision, managed: &[String], cookie: &str) -> Response {
    let Decision { outcome, status, upstream_headers, upstream_remove, response_headers, body, .. } = decision;
    let (status, mut headers) = match outcome {
        Outcome::Allow => (StatusCode::OK, upstream_headers),
        Outcome::Error => (StatusCode::SERVICE_UNAVAILABLE, response_headers),
        Outcome::Deny | Outcome::Redirect => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), response_headers)
        }
    };
    if outcome == Outcome::Allow {
        for name in managed {
            if !headers.iter().any(|(n, _)| n == name) {
                headers.push((name.clone(), String::new()));
            }
        }
        if !headers.iter().any(|(n, _)| n == "cookie") {
            let value = if upstream_remove.iter().any(|n| n == "cookie") { "" } else { cookie };
            headers.push(("cookie".into(), value.to_owned()));
        }
    }
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            // Identity values are encoded before they get here; anything else unsendable
            // must not leave an allowed request with the client's copy of the header.
            _ if outcome == Outcome::Allow => {
                tracing::error!(header = %name, "an identity header could not be sent: refusing the request");
                return (StatusCode::SERVICE_UNAVAILABLE, "authentication temporarily unavailable\n").into_response();
            }
            _ => {}
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::try_from(*k).unwrap(), HeaderValue::try_from(*v).unwrap());
        }
        map
    }

    #[test]
    fn reads_the_original_request_from_the_configured_convention() {
        let traefik = headers(&[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", "/x?y=1"),
        ]);
        let request = original_request(ForwardAuthConvention::Traefik, false, &traefik).unwrap();
        assert_eq!(
            (request.method.as_str(), request.scheme.as_str(), request.host.as_str(), request.path.as_str()),
            ("POST", "https", "app.example", "/x?y=1")
        );
        let nginx = headers(&[("host", "app.example"), ("x-original-uri", "/private"), ("x-original-method", "GET")]);
        let request = original_request(ForwardAuthConvention::Nginx, true, &nginx).unwrap();
        assert_eq!(
            (request.host.as_str(), request.path.as_str(), request.scheme.as_str()),
            ("app.example", "/private", "https")
        );
        let ingress = headers(&[("x-original-url", "https://app.example:8443/a?b"), ("x-original-method", "GET")]);
        let request = original_request(ForwardAuthConvention::Nginx, false, &ingress).unwrap();
        assert_eq!((request.host.as_str(), request.path.as_str()), ("app.example:8443", "/a?b"));
    }

    /// H1: behind nginx, a client's own `X-Forwarded-Uri` cannot choose the path.
    #[test]
    fn h1_the_other_conventions_headers_are_never_read_and_disagreement_is_refused() {
        let spoofed = headers(&[
            ("host", "app.example"),
            ("x-original-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ]);
        assert_eq!(
            original_request(ForwardAuthConvention::Nginx, false, &spoofed).unwrap_err(),
            Reason::ForwardAuthHeadersConflict
        );
        // Without nginx's headers, a Traefik-style request is not an nginx one.
        let only_forwarded = headers(&[("host", "app.example"), ("x-forwarded-uri", "/public/x")]);
        assert_eq!(
            original_request(ForwardAuthConvention::Nginx, false, &only_forwarded).unwrap_err(),
            Reason::ForwardAuthHeadersMissing
        );
        // Repeated convention headers are ambiguous.
        let repeated = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-uri", "/admin"),
        ]);
        assert_eq!(
            original_request(ForwardAuthConvention::Traefik, false, &repeated).unwrap_err(),
            Reason::ForwardAuthHeadersConflict
        );
    }

    /// L6: `Cookie` crumbs are joined with `; `.
    #[test]
    fn l6_repeated_cookie_headers_join_with_semicolons() {
        let map =
            joined(&headers(&[("cookie", "a=1"), ("cookie", "_authgate_session=x"), ("accept", "a"), ("accept", "b")]));
        assert_eq!(map["cookie"], "a=1; _authgate_session=x");
        assert_eq!(map["accept"], "a, b");
    }

    /// M1: an allowed answer carries every managed header, empty when unset, and `Cookie`.
    #[test]
    fn m1_allowed_answers_carry_every_managed_header() {
        let managed = vec!["x-forwarded-user".to_owned(), "x-user-groups".to_owned()];
        let mut decision = Decision::allow(Reason::Excluded, managed.clone());
        decision.upstream_remove.push("cookie".into());
        let response = http_response(decision, &managed, "a=1; _authgate_session=x");
        assert_eq!(response.status(), 200);
        for name in ["x-forwarded-user", "x-user-groups", "cookie"] {
            assert_eq!(response.headers().get(name).map(|v| v.to_str().unwrap()), Some(""), "{name}");
        }
    }
}
