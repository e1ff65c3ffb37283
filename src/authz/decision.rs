//! What the decision core takes in ([`AuthRequest`]) and gives back ([`Decision`]), free of
//! any wire format.

use crate::reason::Reason;
use std::collections::HashMap;

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

    /// The path without its query string: everything before the first `?`, exactly as the
    /// proxy forwards it (a `#` stays, and makes the path ambiguous for exclusions).
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// Adds a request header to `headers` the way HTTP joins repeated fields: `Cookie` crumbs
/// with `; ` (RFC 9113 §8.2.3), any other field with `, `. Both adapters use it, so a
/// session cookie in a second `Cookie` header is found whichever way the request came.
pub fn add_header(headers: &mut HashMap<String, String>, name: String, value: &str) {
    let separator = if name == "cookie" { "; " } else { ", " };
    headers
        .entry(name)
        .and_modify(|existing| {
            existing.push_str(separator);
            existing.push_str(value);
        })
        .or_insert_with(|| value.to_owned());
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
    pub reason: Reason,
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
    pub(crate) fn allow(reason: Reason, upstream_remove: Vec<String>) -> Self {
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
    pub fn deny(status: u16, reason: Reason, body: &str) -> Self {
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
        let mut decision = Decision::deny(401, Reason::Unauthenticated, "authentication required\n");
        decision.response_headers.push(("www-authenticate".into(), "Bearer realm=\"authgate\"".into()));
        decision
    }

    /// 401 for a bearer token that failed verification; `reason` goes into `error_description`.
    pub fn invalid_token(reason: Reason) -> Self {
        let mut decision = Decision::deny(401, reason, "invalid token\n");
        decision.response_headers.push((
            "www-authenticate".into(),
            format!("Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"{reason}\""),
        ));
        decision
    }

    /// A 302 to `location`, with cookies to set.
    pub fn redirect(reason: Reason, location: &str, set_cookies: Vec<String>) -> Self {
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
    pub fn bad_request(reason: Reason) -> Self {
        Decision::deny(400, reason, "bad request\n")
    }

    /// 403: authenticated, but policy says no.
    pub fn forbidden(reason: Reason) -> Self {
        Decision::deny(403, reason, "access denied\n")
    }

    /// An internal failure (provider or cache unreachable): the proxy's failure policy applies.
    pub fn error(reason: Reason) -> Self {
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
        Decision::deny(400, Reason::NoHttpAttributes, "authgate authorizes HTTP requests only\n")
    }
}
