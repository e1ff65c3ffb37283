//! The decision core: [`Authorizer::decide`] turns an [`AuthRequest`] into a [`Decision`].
//!
//! It knows nothing about wire formats: the gRPC ext_authz adapter (`crate::grpc`) and the
//! HTTP forward-auth bridge (`crate::http::bridge`) translate to and from these types, and
//! are the only places that do. One [`Decision`] carries both the HTTP status and the
//! verdict kind, so the two surfaces cannot drift apart.
//!
//! - [`decision`]: `AuthRequest`, `Decision`, `Outcome`.
//! - [`identity`]: identity from verified claims, policy, identity headers ([`Admission`]).
//! - [`browser`]: the login redirect, callback and logout as HTTP; the session cookie.
//! - [`refresh`]: token refresh, single-flight inside a replica, leased across replicas.
//! - [`observe`]: the span, metrics and log line around every decision.
//!
//! The rules, in order (each an early return in `decide`):
//! 1. path under `excludedURLs` → allow, without identity headers;
//! 2. the callback path → code exchange, identity and policy, session created, 302 back;
//!    the logout path → session deleted everywhere, 302 to the provider's end-session
//!    endpoint;
//! 3. `Authorization: Bearer <JWT>` → verified against the provider's keys: valid and
//!    allowed by policy → allow with identity headers; not allowed → 403; invalid → 401
//!    with `error="invalid_token"`; provider unreachable → error;
//! 4. a live session cookie (refreshed near expiry) → identity and policy, checked on every
//!    request (so a policy change applies to existing sessions) → allow with identity headers;
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

pub mod browser;
pub mod decision;
pub mod excluded;
pub mod identity;
pub mod observe;
pub mod refresh;

pub use decision::{AuthRequest, Decision, Outcome};
pub use excluded::ExcludedPaths;
pub use identity::{Admission, IDENTITY_HEADERS};

use crate::config::Config;
use crate::oidc::Verdict;
use crate::oidc::bearer::BearerVerifier;
use crate::reason::Reason;
use browser::{Browser, is_browser_navigation};
use refresh::Refresher;

/// Decides on requests. Cheap to share (`Arc`) between the adapters.
#[derive(Debug)]
pub struct Authorizer {
    excluded: ExcludedPaths,
    admission: Admission,
    strip_auth_cookies: bool,
    bearer: Option<BearerVerifier>,
    browser: Option<(Browser, Refresher)>,
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer_token(request: &AuthRequest) -> Option<&str> {
    let value = request.header("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

impl Authorizer {
    pub fn new(config: &Config) -> Self {
        Authorizer {
            excluded: ExcludedPaths::new(&config.excluded_urls),
            admission: Admission::new(config),
            strip_auth_cookies: config.strip_auth_cookies,
            bearer: None,
            browser: None,
        }
    }

    /// Handles browser logins, sessions, refresh and logout.
    pub fn with_browser(mut self, browser: Browser, refresher: Refresher) -> Self {
        self.browser = Some((browser, refresher));
        self
    }

    /// Accepts `Authorization: Bearer` JWTs checked by `verifier`.
    pub fn with_bearer(mut self, verifier: BearerVerifier) -> Self {
        self.bearer = Some(verifier);
        self
    }

    /// Every header authgate manages on the upstream request (set from verified claims, or
    /// removed): the bridge answers each of them on every allowed request.
    pub fn managed_headers(&self) -> &[String] {
        self.admission.strip_headers()
    }

    /// The paths of `callbackURL` and `logoutURL`, when the browser flow is on.
    pub fn login_paths(&self) -> Option<(&str, &str)> {
        self.browser.as_ref().map(|(browser, _)| browser.paths())
    }

    /// A 302 to the provider's login that returns to `request.path` (the bridge's
    /// `/oauth2/start`, for proxies that cannot pass on a redirect); 401 without a browser flow.
    pub fn start_login(&self, request: &AuthRequest) -> Decision {
        match &self.browser {
            Some((browser, _)) => browser.start(request),
            None => Decision::unauthenticated(),
        }
    }

    /// The verdict for one request.
    pub async fn decide(&self, request: &AuthRequest) -> Decision {
        let mut decision = self.decide_inner(request).await;
        // The upstream never sees authgate's own cookies (`stripAuthCookies`).
        if decision.outcome == Outcome::Allow
            && self.strip_auth_cookies
            && let Some((browser, _)) = &self.browser
            && let Some(remaining) = browser.cookies_for_upstream(request)
        {
            match remaining {
                Some(cookie) => decision.upstream_headers.push(("cookie".into(), cookie)),
                None => decision.upstream_remove.push("cookie".into()),
            }
        }
        decision
    }

    async fn decide_inner(&self, request: &AuthRequest) -> Decision {
        let path = request.path_only();
        // Excluded path: allow without identity (but never with identity the client made up).
        if self.excluded.matches(path) {
            return Decision::allow(Reason::Excluded, self.admission.strip_headers().to_vec());
        }
        if let Some((browser, _)) = &self.browser {
            // The provider's redirect back: code exchange, session, back to where the user was.
            if browser.is_callback(path) {
                return browser.callback(request, &self.admission).await;
            }
            // Logout: the session ends on every replica.
            if browser.is_logout(path) {
                return browser.logout(request).await;
            }
        }
        // Bearer token: verified, then policy.
        if let (Some(verifier), Some(token)) = (&self.bearer, bearer_token(request)) {
            return match verifier.verify(token).await {
                Verdict::Valid(claims) => self.admission.admit(&claims, token, ""),
                Verdict::Invalid(reason) => Decision::invalid_token(reason),
                Verdict::Unavailable(error) => {
                    tracing::warn!(%error, "cannot verify a bearer token");
                    Decision::error(Reason::IdpUnavailable)
                }
            };
        }
        let Some((browser, refresher)) = &self.browser else { return Decision::unauthenticated() };
        // Session cookie: the encrypted record in the cache.
        match browser.session(request).await {
            Ok(Some((id, session))) if refresher.needs_refresh(&session) => {
                // Refresh near expiry; a refused refresh token ends the session.
                match refresher.refresh(&id, crate::session::SessionRecord::clone(&session)).await {
                    Ok(Some(fresh)) => {
                        return self.admission.admit(&fresh.claims, &fresh.access_token, &fresh.id_token);
                    }
                    Ok(None) => {}
                    // Provider or cache down: the current tokens serve while they last.
                    Err(reason) if session.access_expires_at > crate::clock::now() => {
                        tracing::warn!(%reason, "token refresh failed; using the current tokens");
                        return self.admission.admit(&session.claims, &session.access_token, &session.id_token);
                    }
                    Err(reason) => return Decision::error(reason),
                }
            }
            Ok(Some((_, session))) => {
                return self.admission.admit(&session.claims, &session.access_token, &session.id_token);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read sessions");
                return Decision::error(Reason::CacheUnavailable);
            }
        }
        // A browser goes to the login page; an API call gets a 401.
        if is_browser_navigation(request) {
            return browser.start(request);
        }
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
