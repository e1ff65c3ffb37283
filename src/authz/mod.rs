//! The decision core: [`Authorizer::decide`] turns an [`AuthRequest`] into a [`Decision`].
//!
//! It knows nothing about wire formats: the gRPC ext_authz adapter (`crate::grpc`) and the
//! HTTP forward-auth bridge (`crate::http::bridge`) translate to and from these types, and
//! are the only places that do. One [`Decision`] carries both the HTTP status and the
//! verdict kind, so the two surfaces cannot drift apart.
//!
//! The rules, in order (each an early return in `decide`):
//! 1. path under `excludedURLs` → allow, without identity headers;
//! 2. `Authorization: Bearer <JWT>` → verified against the provider's keys: valid and
//!    allowed by policy → allow with identity headers; not allowed → 403; invalid → 401
//!    with `error="invalid_token"`; provider unreachable → error;
//! 3. the callback path → code exchange, session created, 302 back; the logout path →
//!    session deleted everywhere, 302 to the provider's end-session endpoint;
//! 4. a live session cookie → allow with identity headers (policy was checked at login);
//! 5. a browser navigation → 302 to the provider's login (state, nonce, PKCE);
//! 6. otherwise → 401 with `WWW-Authenticate: Bearer`.
//!
//! Client-sent identity headers are removed from every allowed request, so an upstream can
//! trust them.
//!
//! Which failure becomes which answer:
//!
//! | situation                         | outcome    | HTTP (bridge) | gRPC (ext_authz)                     |
//! |-----------------------------------|------------|---------------|--------------------------------------|
//! | allowed                           | `Allow`    | 200           | `OK` + `ok_response`                 |
//! | not authenticated (API request)   | `Deny`     | 401           | `UNAUTHENTICATED` + `denied_response`|
//! | authenticated, policy says no     | `Deny`     | 403           | `PERMISSION_DENIED` + `denied_response` |
//! | browser must log in               | `Redirect` | 302           | `UNAUTHENTICATED` + `denied_response`|
//! | request without HTTP attributes   | `Deny`     | 400           | `INVALID_ARGUMENT` + `denied_response`|
//! | internal failure (IdP, cache)     | `Error`    | 503           | `UNAVAILABLE` + `error_response` (the proxy's `failure_mode_allow` / `status_on_error` apply) |

mod excluded;
pub mod identity;

pub use excluded::ExcludedPaths;

use crate::config::{Config, HeaderTemplate};
use crate::oidc::bearer::{BearerVerifier, Claims, Verdict};
use crate::oidc::login::{Login, is_browser_navigation};
use identity::{Identity, Policy};
use std::collections::HashMap;

/// Headers that carry identity to the upstream. A client must never be able to set them:
/// they are removed from every request authgate allows, then set from the verified identity.
pub const IDENTITY_HEADERS: &[&str] =
    &["x-forwarded-user", "x-auth-request-user", "x-auth-request-email", "x-user-groups", "x-user-roles"];

/// The request being authorized, independent of how it reached authgate.
#[derive(Debug, Clone, Default)]
pub struct AuthRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// `http` or `https` as the client used it.
    pub scheme: String,
    /// The `Host` (`:authority`) the client asked for.
    pub host: String,
    /// Path and query string, as received.
    pub path: String,
    /// Request headers, names in lower case.
    pub headers: HashMap<String, String>,
}

impl AuthRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }
}

/// The kind of verdict; also the `decision` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Redirect,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Redirect => "redirect",
            Outcome::Error => "error",
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// HTTP status for the client when not allowed (200 when allowed).
    pub status: u16,
    /// A short, low-cardinality reason code for logs and metrics (never a token or user).
    pub reason: &'static str,
    /// Allowed requests: headers set (overwriting) on the request to the upstream.
    pub upstream_headers: Vec<(String, String)>,
    /// Allowed requests: headers removed from the request to the upstream.
    pub upstream_remove: Vec<String>,
    /// Headers of the response to the client (`Location`, `Set-Cookie`, `WWW-Authenticate`).
    pub response_headers: Vec<(String, String)>,
    /// Body of a denial (short, safe to show).
    pub body: String,
}

impl Decision {
    fn allow(reason: &'static str, upstream_remove: Vec<String>) -> Self {
        Decision {
            outcome: Outcome::Allow,
            status: 200,
            reason,
            upstream_headers: Vec::new(),
            upstream_remove,
            response_headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A denial with a given status, reason code and short body.
    pub fn deny(status: u16, reason: &'static str, body: &str) -> Self {
        Decision {
            outcome: Outcome::Deny,
            status,
            reason,
            upstream_headers: Vec::new(),
            upstream_remove: Vec::new(),
            response_headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// 401 for a request that carries no usable credentials.
    pub fn unauthenticated() -> Self {
        let mut decision = Decision::deny(401, "unauthenticated", "authentication required\n");
        decision.response_headers.push(("www-authenticate".into(), "Bearer realm=\"authgate\"".into()));
        decision
    }

    /// 401 for a bearer token that failed verification; `reason` goes into `error_description`.
    pub fn invalid_token(reason: &'static str) -> Self {
        let mut decision = Decision::deny(401, reason, "invalid token\n");
        decision.response_headers.push((
            "www-authenticate".into(),
            format!("Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"{reason}\""),
        ));
        decision
    }

    /// A 302 to `location`, with cookies to set.
    pub fn redirect(reason: &'static str, location: &str, set_cookies: Vec<String>) -> Self {
        let mut response_headers = vec![("location".to_owned(), location.to_owned())];
        response_headers.extend(set_cookies.into_iter().map(|c| ("set-cookie".to_owned(), c)));
        Decision {
            outcome: Outcome::Redirect,
            status: 302,
            reason,
            upstream_headers: Vec::new(),
            upstream_remove: Vec::new(),
            response_headers,
            body: String::new(),
        }
    }

    /// 400: a request authgate cannot make sense of (a callback without code or state).
    pub fn bad_request(reason: &'static str) -> Self {
        Decision::deny(400, reason, "bad request\n")
    }

    /// 403: authenticated, but policy says no.
    pub fn forbidden(reason: &'static str) -> Self {
        Decision::deny(403, reason, "access denied\n")
    }

    /// An internal failure (provider or cache unreachable): the proxy's failure policy applies.
    pub fn error(reason: &'static str) -> Self {
        Decision {
            outcome: Outcome::Error,
            status: 503,
            reason,
            upstream_headers: Vec::new(),
            upstream_remove: Vec::new(),
            response_headers: Vec::new(),
            body: "authentication temporarily unavailable\n".into(),
        }
    }

    /// The answer to a Check without HTTP attributes (e.g. from a TCP ext_authz filter).
    pub fn no_http_attributes() -> Self {
        Decision::deny(400, "no_http_attributes", "authgate authorizes HTTP requests only\n")
    }
}

/// Decides on requests. Cheap to share (`Arc`) between the adapters.
#[derive(Debug)]
pub struct Authorizer {
    excluded: ExcludedPaths,
    /// Identity headers plus the configured templated ones: all removed from client requests.
    strip_headers: Vec<String>,
    policy: Policy,
    templates: Vec<HeaderTemplate>,
    /// The claims-related keys (`userIdentifierClaim`, group and role claims).
    config: Config,
    bearer: Option<BearerVerifier>,
    login: Option<Login>,
}

impl Authorizer {
    pub fn new(config: &Config) -> Self {
        let mut strip_headers: Vec<String> = IDENTITY_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        for header in &config.headers {
            let name = header.name.to_ascii_lowercase();
            if !strip_headers.contains(&name) {
                strip_headers.push(name);
            }
        }
        Authorizer {
            excluded: ExcludedPaths::new(&config.excluded_urls),
            strip_headers,
            policy: Policy::new(config),
            templates: config.headers.clone(),
            config: config.clone(),
            bearer: None,
            login: None,
        }
    }

    /// Handles browser logins, sessions and logout with `login`.
    pub fn with_login(mut self, login: Login) -> Self {
        self.login = Some(login);
        self
    }

    /// Accepts `Authorization: Bearer` JWTs checked by `verifier`.
    pub fn with_bearer(mut self, verifier: BearerVerifier) -> Self {
        self.bearer = Some(verifier);
        self
    }

    /// Allows a verified identity if policy does, with the headers the upstream gets.
    fn admit(&self, claims: &Claims, access_token: &str, id_token: &str) -> Decision {
        let Some(identity) = Identity::from_claims(claims, &self.config) else {
            return Decision::invalid_token("no_user_identifier");
        };
        if !self.policy.allows(&identity) {
            return Decision::forbidden("policy_denied");
        }
        let mut headers: Vec<(String, String)> = vec![
            ("x-forwarded-user".into(), identity.user.clone()),
            ("x-auth-request-user".into(), identity.user.clone()),
        ];
        if let Some(email) = &identity.email {
            headers.push(("x-auth-request-email".into(), email.clone()));
        }
        if !identity.groups.is_empty() {
            headers.push(("x-user-groups".into(), identity.groups.join(",")));
        }
        if !identity.roles.is_empty() {
            headers.push(("x-user-roles".into(), identity.roles.join(",")));
        }
        for template in &self.templates {
            let value = identity::render(&template.value, claims, access_token, id_token);
            let name = template.name.to_ascii_lowercase();
            headers.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                headers.push((name, value));
            }
        }
        // Headers we set overwrite the client's; the rest of the identity headers go.
        let remove = self.strip_headers.iter().filter(|h| !headers.iter().any(|(n, _)| n == *h)).cloned().collect();
        Decision {
            outcome: Outcome::Allow,
            status: 200,
            reason: "authenticated",
            upstream_headers: headers,
            upstream_remove: remove,
            response_headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer_token(request: &AuthRequest) -> Option<&str> {
    let value = request.header("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

impl Authorizer {
    /// The verdict for one request.
    pub async fn decide(&self, request: &AuthRequest) -> Decision {
        let mut decision = self.decide_inner(request).await;
        // The upstream never sees authgate's own cookies (`stripAuthCookies`).
        if decision.outcome == Outcome::Allow
            && self.config.strip_auth_cookies
            && let Some(login) = &self.login
            && let Some(remaining) = login.cookies_for_upstream(request)
        {
            match remaining {
                Some(cookie) => decision.upstream_headers.push(("cookie".into(), cookie)),
                None => decision.upstream_remove.push("cookie".into()),
            }
        }
        decision
    }

    async fn decide_inner(&self, request: &AuthRequest) -> Decision {
        // Excluded path: allow without identity (but never with identity the client made up).
        if self.excluded.matches(request.path_only()) {
            return Decision::allow("excluded", self.strip_headers.clone());
        }
        let path = request.path_only();
        if let Some(login) = &self.login {
            // The provider's redirect back: code exchange, session, back to where the user was.
            if path == login.callback_path() {
                return login.callback(request).await;
            }
            // Logout: the session ends on every replica.
            if path == login.logout_path() {
                return login.logout(request).await;
            }
        }
        // Bearer token: verified, then policy.
        if let (Some(verifier), Some(token)) = (&self.bearer, bearer_token(request)) {
            return match verifier.verify(token).await {
                Verdict::Valid(claims) => self.admit(&claims, token, ""),
                Verdict::Invalid(reason) => Decision::invalid_token(reason),
                Verdict::Unavailable(error) => {
                    tracing::warn!(%error, "cannot verify a bearer token");
                    Decision::error("idp_unavailable")
                }
            };
        }
        if let Some(login) = &self.login {
            // Session cookie: the encrypted record in the cache.
            match login.session(request).await {
                Ok(Some((id, session))) if login.needs_refresh(&session) => {
                    // Refresh near expiry; a refused refresh token ends the session.
                    match login.refresh(&id, session.clone()).await {
                        Ok(Some(fresh)) => return self.admit(&fresh.claims, &fresh.access_token, &fresh.id_token),
                        Ok(None) => {}
                        // Provider or cache down: the current tokens serve while they last.
                        Err(reason) if session.access_expires_at > crate::session::now() => {
                            tracing::warn!(reason, "token refresh failed; using the current tokens");
                            return self.admit(&session.claims, &session.access_token, &session.id_token);
                        }
                        Err(reason) => return Decision::error(reason),
                    }
                }
                Ok(Some((_, session))) => return self.admit(&session.claims, &session.access_token, &session.id_token),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read sessions");
                    return Decision::error("cache_unavailable");
                }
            }
            // A browser goes to the login page; an API call gets a 401.
            if is_browser_navigation(request) {
                return login.start(request);
            }
        }
        // No credentials recognised.
        Decision::unauthenticated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(excluded: &[&str]) -> Config {
        Config { excluded_urls: excluded.iter().map(|s| s.to_string()).collect(), ..Config::default() }
    }

    fn get(path: &str) -> AuthRequest {
        AuthRequest {
            method: "GET".into(),
            scheme: "https".into(),
            host: "app".into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn excluded_paths_are_allowed_and_identity_headers_stripped() {
        let authorizer = Authorizer::new(&config(&["/public"]));
        let decision = authorizer.decide(&get("/public/logo.png?v=1")).await;
        assert_eq!(decision.outcome, Outcome::Allow);
        assert!(decision.upstream_remove.contains(&"x-forwarded-user".to_owned()));
        assert!(decision.upstream_headers.is_empty());
    }

    #[tokio::test]
    async fn other_paths_are_unauthenticated() {
        let authorizer = Authorizer::new(&config(&["/public"]));
        let decision = authorizer.decide(&get("/publicity")).await;
        assert_eq!((decision.outcome, decision.status), (Outcome::Deny, 401));
        assert!(decision.response_headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")));
    }
}
