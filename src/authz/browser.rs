//! The browser side of the login flow, as HTTP: the login redirect, the callback, logout,
//! the session cookie, and authgate's cookies kept away from the upstream.
//!
//! The protocol work is [`RpClient`]'s; this module decides what each result means for
//! the request (which [`Decision`]).
//!
//! The flow state (PKCE verifier, nonce, where to return) lives in a short-lived cookie
//! sealed with the session cipher, one cookie per flow named after its `state`, so logins
//! in several tabs do not overwrite each other; at most [`MAX_FLOW_COOKIES`] are kept (the
//! oldest are expired when a new flow starts), so they cannot pile up into a 431.

use super::decision::{AuthRequest, Decision, Outcome};
use super::identity::Admission;
use crate::cache::{Cache, Kind, token_key};
use crate::claims::{str_claim, u64_claim};
use crate::clock::now;
use crate::config::Config;
use crate::oidc::Verdict;
use crate::oidc::client::{ExpectedNonce, RpClient, TokenError};
use crate::reason::Reason;
use crate::session::{Cipher, SessionRecord, Sessions};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Flow cookies live this long: a login not finished in ten minutes starts over.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Concurrent login flows kept per browser.
pub const MAX_FLOW_COOKIES: usize = 4;
/// Flow cookies looked at (opened, expired) per request, whatever the client sends.
pub const MAX_FLOW_COOKIES_EXAMINED: usize = 8;
/// Longest path (with query) a login returns to; a longer one returns to `/` (it would
/// make the flow cookie larger than browsers keep).
pub const MAX_RETURN_PATH: usize = 2048;

/// What a flow cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: Option<String>,
    /// The host the login started on, and the path (with query) to return to.
    host: String,
    return_path: String,
    redirect_uri: String,
    created_at: u64,
}

/// A path-or-URL setting (`callbackURL`, `logoutURL`, `postLogoutRedirectURI`), parsed once.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The path requests are matched against.
    path: String,
    /// The setting itself when it is an absolute URL; `None` for a path (made absolute
    /// with the request's scheme and host).
    absolute: Option<String>,
}

impl Endpoint {
    fn parse(value: &str) -> Endpoint {
        if value.starts_with('/') {
            return Endpoint { path: value.split(['?', '#']).next().unwrap_or(value).to_owned(), absolute: None };
        }
        match url::Url::parse(value) {
            Ok(url) => Endpoint { path: url.path().to_owned(), absolute: Some(value.to_owned()) },
            // Validation refuses anything else; never matched.
            Err(_) => Endpoint { path: String::new(), absolute: Some(value.to_owned()) },
        }
    }
}

/// Cookies of a request, in order (first occurrence of a name wins where it matters).
fn cookies(request: &AuthRequest) -> impl Iterator<Item = Crumb<'_>> {
    request.header("cookie").into_iter().flat_map(parse_cookies)
}

/// One `name=value` pair of a `Cookie` header, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crumb<'a> {
    pub name: &'a str,
    /// As sent (surrounding double quotes kept).
    pub value: &'a str,
}

impl<'a> Crumb<'a> {
    /// The value without one pair of surrounding double quotes.
    pub fn value_trimmed(&self) -> &'a str {
        let value = self.value;
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            &value[1..value.len() - 1]
        } else {
            value
        }
    }
}

/// The cookies of one `Cookie` header, read exactly as `cookie::Cookie::split_parse` reads
/// them (crumbs split on `;`, name and value trimmed, no percent-decoding; a crumb without
/// `=` or without a name is skipped: a property test holds the two equal), without
/// allocating: this runs on every request.
pub fn parse_cookies(header: &str) -> impl Iterator<Item = Crumb<'_>> {
    header.split(';').filter_map(|crumb| {
        let (name, value) = crumb.trim().split_once('=')?;
        let name = name.trim();
        (!name.is_empty()).then(|| Crumb { name, value: value.trim() })
    })
}

/// Where a login that started at `path` on `host` may return: the path itself when it is a
/// plain same-origin path a browser cannot read as another host (no `//`, `\`, control
/// characters, tabs, spaces or non-ASCII; at most [`MAX_RETURN_PATH`] bytes; resolving it
/// against the request's own origin keeps that origin), otherwise `/`.
pub fn return_path(host: &str, path: &str) -> String {
    let plain = path.len() <= MAX_RETURN_PATH
        && path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    let origin = url::Url::parse(&format!("https://{host}/")).ok();
    let same_origin = origin
        .as_ref()
        .and_then(|origin| origin.join(path).ok().map(|resolved| resolved.origin() == origin.origin()))
        .unwrap_or(false);
    if plain && same_origin { path.to_owned() } else { "/".to_owned() }
}

/// A top-level browser navigation (may be sent to the login page), as opposed to an API,
/// XHR or gRPC request (which gets a 401).
pub(crate) fn is_browser_navigation(request: &AuthRequest) -> bool {
    let method_ok = request.method.eq_ignore_ascii_case("GET") || request.method.eq_ignore_ascii_case("HEAD");
    let wants_html = request.header("accept").is_some_and(|a| a.contains("text/html"));
    let xhr = request.header("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let fetch_mode_ok = request.header("sec-fetch-mode").is_none_or(|m| m == "navigate");
    let grpc = request.header("content-type").is_some_and(|c| c.starts_with("application/grpc"));
    method_ok && wants_html && !xhr && fetch_mode_ok && !grpc
}

/// The browser login flow.
pub struct Browser {
    client: Arc<RpClient>,
    cipher: Arc<Cipher>,
    sessions: Sessions,
    cache: Cache,
    callback: Endpoint,
    logout: Endpoint,
    post_logout: Endpoint,
    session_cookie: String,
    flow_cookie_prefix: String,
    secure: bool,
    cookie_domain: String,
    cookie_max_age: Option<u64>,
    replay_detection: bool,
    fetch_user_info: bool,
    /// `clockSkewSeconds`.
    leeway: u64,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("callback", &self.callback.path).finish_non_exhaustive()
    }
}

impl Browser {
    pub fn new(config: &Config, client: Arc<RpClient>, cipher: Arc<Cipher>, sessions: Sessions, cache: Cache) -> Self {
        let secure = config.force_https;
        let session_base = format!("{}session", config.cookie_prefix);
        let flow_base = format!("{}flow_", config.cookie_prefix);
        Browser {
            client,
            cipher,
            sessions,
            cache,
            callback: Endpoint::parse(&config.callback_url),
            logout: Endpoint::parse(&config.logout_url),
            post_logout: Endpoint::parse(&config.post_logout_redirect_uri),
            // `__Host-` when the cookie can have it (Secure, no Domain), which pins it to this host.
            session_cookie: if secure && config.cookie_domain.is_empty() {
                format!("__Host-{session_base}")
            } else {
                session_base
            },
            flow_cookie_prefix: if secure { format!("__Host-{flow_base}") } else { flow_base },
            secure,
            cookie_domain: config.cookie_domain.clone(),
            cookie_max_age: (!config.cookie_max_age.is_zero()).then(|| config.cookie_max_age.get().as_secs()),
            replay_detection: !config.disable_replay_detection,
            fetch_user_info: config.fetch_user_info,
            leeway: config.clock_skew_seconds,
        }
    }

    /// The paths of `callbackURL` and `logoutURL`.
    pub(crate) fn paths(&self) -> (&str, &str) {
        (&self.callback.path, &self.logout.path)
    }

    pub(crate) fn is_callback(&self, path: &str) -> bool {
        path == self.callback.path
    }

    pub(crate) fn is_logout(&self, path: &str) -> bool {
        path == self.logout.path
    }

    fn flow_cookie_name(&self, state: &str) -> String {
        format!("{}{}", self.flow_cookie_prefix, &token_key(state)[..16])
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: Option<u64>, with_domain: bool) -> String {
        let mut cookie =
            Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Lax).secure(self.secure);
        if let Some(max_age) = max_age {
            cookie = cookie.max_age(cookie::time::Duration::seconds(i64::try_from(max_age).unwrap_or(i64::MAX)));
        }
        if with_domain && !self.cookie_domain.is_empty() && !name.starts_with("__Host-") {
            cookie = cookie.domain(self.cookie_domain.as_str());
        }
        cookie.build().to_string()
    }

    fn clear_cookie(&self, name: &str, with_domain: bool) -> String {
        self.set_cookie(name, "", Some(0), with_domain)
    }

    fn absolute(&self, request: &AuthRequest, endpoint: &Endpoint) -> String {
        if let Some(url) = &endpoint.absolute {
            return url.clone();
        }
        let scheme = if self.secure {
            "https"
        } else if request.scheme.is_empty() {
            "http"
        } else {
            &request.scheme
        };
        format!("{scheme}://{}{}", request.host, endpoint.path)
    }

    fn session_id<'r>(&self, request: &'r AuthRequest) -> Option<Crumb<'r>> {
        cookies(request).find(|c| c.name == self.session_cookie)
    }

    /// The request's `Cookie` header without authgate's own cookies (session and login
    /// flow): `None` when it has none of them, `Some(None)` when nothing else remains.
    pub(crate) fn cookies_for_upstream(&self, request: &AuthRequest) -> Option<Option<String>> {
        let ours = |c: &Crumb<'_>| c.name == self.session_cookie || c.name.starts_with(&self.flow_cookie_prefix);
        if !cookies(request).any(|c| ours(&c)) {
            return None;
        }
        let mut rest = String::with_capacity(request.header("cookie").map_or(0, str::len));
        for crumb in cookies(request).filter(|c| !ours(c)) {
            if !rest.is_empty() {
                rest.push_str("; ");
            }
            rest.push_str(crumb.name);
            rest.push('=');
            rest.push_str(crumb.value);
        }
        Some((!rest.is_empty()).then_some(rest))
    }

    /// The session the request's cookie names, if it is live, with its id.
    pub(crate) async fn session(
        &self,
        request: &AuthRequest,
    ) -> Result<Option<(String, std::sync::Arc<SessionRecord>)>, crate::cache::CacheError> {
        let Some(cookie) = self.session_id(request) else { return Ok(None) };
        let id = cookie.value_trimmed();
        Ok(self.sessions.load(id).await?.map(|record| (id.to_owned(), record)))
    }

    /// 302 to the provider's authorization endpoint, with a fresh flow cookie.
    pub(crate) fn start(&self, request: &AuthRequest) -> Decision {
        let redirect_uri = self.absolute(request, &self.callback);
        let authorization = match self.client.authorize_url(&redirect_uri) {
            Ok(authorization) => authorization,
            Err(error) => {
                tracing::warn!(%error, "cannot start a login");
                return Decision::error(Reason::IdpUnavailable);
            }
        };
        let flow = Flow {
            state: authorization.state.clone(),
            nonce: authorization.nonce,
            verifier: authorization.pkce_verifier,
            host: request.host.clone(),
            return_path: return_path(&request.host, &request.path),
            redirect_uri,
            created_at: now(),
        };
        let name = self.flow_cookie_name(&authorization.state);
        let mut set_cookies =
            vec![self.set_cookie(&name, &self.cipher.seal_text(&flow, &name), Some(FLOW_TTL.as_secs()), false)];
        // Expire the oldest flow cookies beyond the limit (names sort by nothing useful, so
        // age comes from the sealed content).
        let mut existing: Vec<(u64, String)> = cookies(request)
            .filter(|c| c.name.starts_with(&self.flow_cookie_prefix))
            .take(MAX_FLOW_COOKIES_EXAMINED)
            .map(|c| {
                let created = self.cipher.open_text::<Flow>(c.value_trimmed(), c.name).map_or(0, |f| f.created_at);
                (created, c.name.to_owned())
            })
            .collect();
        existing.sort();
        let excess = (existing.len() + 1).saturating_sub(MAX_FLOW_COOKIES);
        for (_, stale) in existing.into_iter().take(excess) {
            set_cookies.push(self.clear_cookie(&stale, false));
        }
        Decision::redirect(Reason::LoginRequired, &authorization.url, set_cookies)
    }

    /// The redirect back from the provider: code exchange, ID-token verification, the one
    /// identity-and-policy check (`admission`), a new session, back to where the user was.
    pub(crate) async fn callback(&self, request: &AuthRequest, admission: &Admission) -> Decision {
        let Ok(url) = url::Url::parse(&format!("http://placeholder{}", request.path)) else {
            return Decision::bad_request(Reason::BadCallback);
        };
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        if param("error").is_some() {
            return Decision::deny(401, Reason::IdpError, "the identity provider refused the login\n");
        }
        let (Some(code), Some(state)) = (param("code"), param("state")) else {
            return Decision::bad_request(Reason::MissingCodeOrState);
        };
        let name = self.flow_cookie_name(&state);
        let unknown =
            || Decision::deny(401, Reason::UnknownLoginState, "login expired or started elsewhere; try again\n");
        let Some(flow) = cookies(request)
            .find(|c| c.name == name)
            .and_then(|c| self.cipher.open_text::<Flow>(c.value_trimmed(), &name))
        else {
            return unknown();
        };
        let state_matches: bool = flow.state.as_bytes().ct_eq(state.as_bytes()).into();
        if !state_matches || flow.created_at.saturating_add(FLOW_TTL.as_secs()) < now() {
            return unknown();
        }
        let tokens = match self.client.exchange_code(&code, &flow.redirect_uri, flow.verifier.as_deref()).await {
            Ok(tokens) => tokens,
            Err(TokenError::Rejected(_)) => {
                return Decision::deny(401, Reason::CodeRejected, "the identity provider refused the login\n");
            }
            Err(TokenError::Unavailable(reason)) => return Decision::error(reason),
        };
        let Some(id_token) = tokens.id_token.clone() else {
            return Decision::deny(401, Reason::NoIdToken, "the identity provider returned no ID token\n");
        };
        let verdict = self
            .client
            .verify_id_token(&id_token, ExpectedNonce::Exactly(&flow.nonce), Some(&tokens.access_token))
            .await;
        let mut claims = match verdict {
            Verdict::Valid(claims) => claims,
            Verdict::Invalid(reason) => return Decision::deny(401, reason, "invalid ID token\n"),
            Verdict::Unavailable(_) => return Decision::error(Reason::IdpUnavailable),
        };
        // One ID token creates at most one session, on any replica.
        if self.replay_detection {
            // Kept while the token could still be accepted: until `exp` plus the leeway.
            let exp = u64_claim(&claims, "exp").unwrap_or(0);
            let ttl = Duration::from_secs(exp.saturating_add(self.leeway).saturating_sub(now()).max(60));
            match self.cache.claim(Kind::Replay, &token_key(&id_token), b"1", ttl).await {
                Ok(true) => {}
                Ok(false) => return Decision::deny(401, Reason::TokenReplayed, "this login was already used\n"),
                Err(_) => return Decision::error(Reason::CacheUnavailable),
            }
        }
        if self.fetch_user_info {
            let subject = str_claim(&claims, "sub").unwrap_or_default().to_owned();
            match self.client.user_info(&tokens.access_token, &subject).await {
                Ok(Some(info)) => {
                    for (name, value) in info {
                        claims.entry(name).or_insert(value);
                    }
                }
                Ok(None) => {}
                Err(Reason::UserinfoSubMismatch) => {
                    return Decision::deny(401, Reason::UserinfoSubMismatch, "inconsistent identity\n");
                }
                Err(reason) => return Decision::error(reason),
            }
        }
        // The same identity and policy check as every later request.
        let admitted = admission.admit(&claims, &tokens.access_token, &id_token);
        if admitted.outcome != Outcome::Allow {
            return admitted;
        }
        let record = SessionRecord {
            claims,
            id_token,
            access_expires_at: tokens.access_expires_at(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            created_at: now(),
        };
        let session_id = match self.sessions.create(&record).await {
            Ok(id) => id,
            Err(_) => return Decision::error(Reason::CacheUnavailable),
        };
        let cookies = vec![
            self.set_cookie(&self.session_cookie, &session_id, self.cookie_max_age, true),
            self.clear_cookie(&name, false),
        ];
        // Only back to the host the login started on; anything else goes to "/".
        let location = if flow.host.eq_ignore_ascii_case(&request.host) {
            return_path(&request.host, &flow.return_path)
        } else {
            "/".to_owned()
        };
        Decision::redirect(Reason::LoggedIn, &location, cookies)
    }

    /// Logout: only a POST or a same-site navigation (a cross-site `<img>` cannot log a user
    /// out); deletes the session everywhere, clears the cookie, and sends the browser to the
    /// provider's `end_session_endpoint`.
    pub(crate) async fn logout(&self, request: &AuthRequest) -> Decision {
        if !same_site(request) {
            return Decision::forbidden(Reason::CrossSiteLogout);
        }
        let mut id_token = None;
        if let Some(cookie) = self.session_id(request) {
            let id = cookie.value_trimmed();
            if let Ok(Some(record)) = self.sessions.load(id).await {
                id_token = Some(record.id_token.clone());
            }
            if self.sessions.delete(id).await.is_err() {
                return Decision::error(Reason::CacheUnavailable);
            }
        }
        let post_logout = self.absolute(request, &self.post_logout);
        let location = self.client.end_session_url(id_token.as_deref(), &post_logout).unwrap_or(post_logout);
        Decision::redirect(Reason::LoggedOut, &location, vec![self.clear_cookie(&self.session_cookie, true)])
    }
}

/// A POST (cross-site POSTs carry no `SameSite=Lax` cookie; `Origin` is checked when sent)
/// or a navigation whose Fetch Metadata, `Origin` or `Referer` says it came from this site.
fn same_site(request: &AuthRequest) -> bool {
    let origin_host = |origin: &str| {
        let rest = origin.split_once("://")?.1;
        Some(rest.split('/').next().unwrap_or(rest).to_owned())
    };
    let from_here = |origin: &str| origin_host(origin).as_deref() == Some(request.host.as_str());
    if request.method.eq_ignore_ascii_case("POST") {
        return request.header("origin").is_none_or(from_here);
    }
    match request.header("sec-fetch-site") {
        Some(site) => site == "same-origin" || site == "none",
        None => request.header("origin").or_else(|| request.header("referer")).is_some_and(from_here),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> AuthRequest {
        AuthRequest {
            method: "GET".into(),
            scheme: "https".into(),
            host: "app.example".into(),
            path: "/x".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn tells_navigations_from_api_calls() {
        assert!(is_browser_navigation(&request(&[("accept", "text/html,application/xhtml+xml")])));
        assert!(!is_browser_navigation(&request(&[("accept", "application/json")])));
        assert!(!is_browser_navigation(&request(&[("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")])));
        assert!(!is_browser_navigation(&request(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])));
        let mut post = request(&[("accept", "text/html")]);
        post.method = "POST".into();
        assert!(!is_browser_navigation(&post));
        let mut head = request(&[("accept", "text/html")]);
        head.method = "HEAD".into();
        assert!(is_browser_navigation(&head), "HEAD of a page behaves like GET");
        assert!(!is_browser_navigation(&request(&[
            ("accept", "text/html"),
            ("content-type", "application/grpc-web+proto")
        ])));
    }

    #[test]
    fn parses_cookies() {
        let r = request(&[("cookie", "a=1; _authgate_session=abc ; b=\"q\"")]);
        let parsed: Vec<(String, String)> =
            cookies(&r).map(|c| (c.name.to_owned(), c.value_trimmed().to_owned())).collect();
        assert_eq!(
            parsed,
            vec![("a".into(), "1".into()), ("_authgate_session".into(), "abc".into()), ("b".into(), "q".into())]
        );
    }

    #[test]
    fn endpoints_are_parsed_once_into_path_and_url() {
        let path = Endpoint::parse("/oauth2/callback?x#y");
        assert_eq!((path.path.as_str(), path.absolute), ("/oauth2/callback", None));
        let url = Endpoint::parse("https://auth.example/cb");
        assert_eq!((url.path.as_str(), url.absolute.as_deref()), ("/cb", Some("https://auth.example/cb")));
    }

    /// L3 and the end-to-end finding: nothing a browser could read as another host.
    #[test]
    fn l3_return_paths_stay_on_this_origin() {
        for path in ["/", "/a/b?c=d&e=%2F", "/.//evil.example", "/a@evil.example"] {
            assert_eq!(return_path("app.example", path), path);
        }
        for path in [
            "//evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{3002}evil.example",
            "https://evil.example/",
            "evil.example",
            "",
        ] {
            assert_eq!(return_path("app.example", path), "/", "{path:?}");
        }
    }

    /// L2: an oversized return path is not kept.
    #[test]
    fn l2_long_return_paths_go_to_the_root() {
        let long = format!("/x?{}", "a".repeat(MAX_RETURN_PATH));
        assert_eq!(return_path("app.example", &long), "/");
    }

    #[test]
    fn logout_needs_a_same_site_request() {
        assert!(same_site(&request(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&request(&[("sec-fetch-site", "cross-site")])));
        assert!(same_site(&request(&[("referer", "https://app.example/page")])));
        assert!(!same_site(&request(&[("referer", "https://evil.example/page")])));
        assert!(!same_site(&request(&[])), "a GET without any origin evidence is refused");
        let mut post = request(&[("origin", "https://evil.example")]);
        post.method = "POST".into();
        assert!(!same_site(&post));
        post.headers.clear();
        assert!(same_site(&post));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the path, a login returns to it only if it stays on this origin.
            #[test]
            fn return_paths_never_leave_the_origin(path in ".{0,64}") {
                let chosen = return_path("app.example", &path);
                prop_assert!(chosen == "/" || chosen == path);
                let base = url::Url::parse("https://app.example/").unwrap();
                let resolved = base.join(&chosen).unwrap();
                prop_assert_eq!(resolved.origin(), base.origin());
                prop_assert!(chosen.bytes().all(|b| b.is_ascii_graphic()));
            }

            /// The same with the characters browsers treat specially.
            #[test]
            fn return_paths_with_tricky_characters(path in "[/\\\\\t\n@:.%a-z]{0,24}") {
                let chosen = return_path("app.example", &path);
                let resolved = url::Url::parse("https://app.example/").unwrap().join(&chosen).unwrap();
                prop_assert_eq!(resolved.host_str(), Some("app.example"));
            }

            /// Cookie parsing never panics, and the session cookie is found however the
            /// header is padded.
            #[test]
            fn cookie_headers_parse_without_panicking(header in ".{0,200}", pad in "[ ;a-z=]{0,20}") {
                let _ = parse_cookies(&header).count();
                let with_session = format!("{pad}; _authgate_session=abc; {header}");
                let found = parse_cookies(&with_session).any(|c| c.name == "_authgate_session" && c.value == "abc");
                prop_assert!(found);
            }

            /// The allocation-free reader sees exactly the cookies the `cookie` crate sees.
            #[test]
            fn cookies_read_as_the_cookie_crate_reads_them(header in "[ \t;=\"a-c_]{0,40}|.{0,80}") {
                let ours: Vec<(&str, &str, &str)> =
                    parse_cookies(&header).map(|c| (c.name, c.value, c.value_trimmed())).collect();
                let crate_cookies: Vec<cookie::Cookie<'_>> =
                    cookie::Cookie::split_parse(header.as_str()).filter_map(Result::ok).collect();
                let theirs: Vec<(&str, &str, &str)> =
                    crate_cookies.iter().map(|c| (c.name(), c.value(), c.value_trimmed())).collect();
                prop_assert_eq!(ours, theirs);
            }

            /// A sealed flow cookie opens only unchanged, under its own name.
            #[test]
            fn flow_cookies_open_only_as_sealed(state in "[A-Za-z0-9_-]{1,40}", flip in 0usize..200) {
                let config = Config { session_encryption_key: crate::config::Secret::new("property-tests-key-0123456789abcdef"), ..Config::default() };
                let cipher = Cipher::new(&config, crate::session::Purpose::FlowCookie);
                let sealed = cipher.seal_text(&state, "name");
                prop_assert_eq!(cipher.open_text::<String>(&sealed, "name"), Some(state.clone()));
                prop_assert_eq!(cipher.open_text::<String>(&sealed, "other-name"), None);
                let mut bytes = sealed.into_bytes();
                let at = flip % bytes.len();
                bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(bytes).unwrap();
                prop_assert_eq!(cipher.open_text::<String>(&tampered, "name"), None);
            }
        }
    }
}
