//! Who the verified claims say the user is, whether policy lets them in, and the headers
//! the upstream gets: [`Admission::admit`] is the one place where that is decided, for a
//! session, a bearer token and a login alike.

use super::decision::Decision;
use crate::claims::{Claims, claim};
use crate::config::{Config, HeaderTemplate};
use crate::reason::Reason;
use serde_json::Value;

/// A claim as text (strings as they are, numbers printed); never a list or an object.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim as a list: an array of values, or one string as a single item (a group named
/// `Sales admins` is one group, never `Sales` and `admins`).
fn list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(text).filter(|x| !x.is_empty()).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Whether the provider says the e-mail is verified (`true`, or the string `"true"` some
/// providers send).
fn email_verified(claims: &Claims) -> bool {
    matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || claims.get("email_verified").and_then(Value::as_str) == Some("true")
}

/// The identity drawn from verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `userIdentifierClaim`, non-empty; an e-mail only when verified (or
    /// `allowUnverifiedEmail`).
    pub user: String,
    /// The `email` claim, only when verified (or `allowUnverifiedEmail`).
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

impl Identity {
    /// The identity the claims assert, or why they assert none. No fallback from one claim
    /// to another: a token without the configured identifier names nobody.
    pub fn from_claims(claims: &Claims, config: &Config) -> Result<Identity, Reason> {
        let trusted_email = config.allow_unverified_email || email_verified(claims);
        let email = claims.get("email").and_then(Value::as_str).filter(|e| !e.trim().is_empty());
        let user = claim(claims, &config.user_identifier_claim)
            .and_then(text)
            .filter(|u| !u.trim().is_empty())
            .ok_or(Reason::NoUserIdentifier)?;
        // An e-mail the provider has not verified may be anyone's (self-registration,
        // mutable e-mail attributes): it is no identity.
        if !trusted_email && (config.user_identifier_claim == "email" || email == Some(user.as_str())) {
            return Err(Reason::EmailNotVerified);
        }
        Ok(Identity {
            user,
            email: email.filter(|_| trusted_email).map(str::to_owned),
            groups: list(claim(claims, &config.group_claim_name)),
            roles: list(claim(claims, &config.role_claim_name)),
        })
    }
}

/// `allowedUsers`, `allowedUserDomains`, `allowedRolesAndGroups`, compiled.
///
/// Users and domains compare ASCII-case-insensitively and nothing else: no Unicode case
/// folding, which would turn a different address (`\u{212A}im@…`, KELVIN SIGN) into an
/// allowed one. Roles and groups compare exactly.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    users: Vec<String>,
    domains: Vec<String>,
    roles_and_groups: Vec<String>,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Policy {
            users: config.allowed_users.iter().map(|u| u.to_ascii_lowercase()).collect(),
            domains: config
                .allowed_user_domains
                .iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            roles_and_groups: config.allowed_roles_and_groups.clone(),
        }
    }

    /// Whether `identity` may pass. `allowedUsers` matches the user identifier or the
    /// (verified) e-mail, `allowedUserDomains` the (verified) e-mail's domain; matching
    /// either list is enough; with a role/group list, one of them is needed as well.
    pub fn allows(&self, identity: &Identity) -> bool {
        let user_listed = !self.users.is_empty() || !self.domains.is_empty();
        if user_listed {
            let user = identity.user.to_ascii_lowercase();
            let email = identity.email.as_deref().map(str::to_ascii_lowercase);
            let by_user = self.users.iter().any(|u| *u == user || email.as_deref() == Some(u.as_str()));
            let by_domain = email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, domain)| self.domains.iter().any(|d| d == domain));
            if !(by_user || by_domain) {
                return false;
            }
        }
        self.roles_and_groups.is_empty()
            || identity.groups.iter().chain(&identity.roles).any(|g| self.roles_and_groups.contains(g))
    }
}

/// Headers that carry identity to the upstream. A client must never be able to set them:
/// they are removed from every request authgate allows, then set from the verified identity.
pub const IDENTITY_HEADERS: &[&str] =
    &["x-forwarded-user", "x-auth-request-user", "x-auth-request-email", "x-user-groups", "x-user-roles"];

/// Identity, policy and identity headers: everything between verified claims and "allow".
#[derive(Debug, Clone)]
pub struct Admission {
    /// The claims-related keys (`userIdentifierClaim`, group and role claims).
    config: Config,
    policy: Policy,
    templates: Vec<HeaderTemplate>,
    /// Identity headers plus the configured templated ones: all removed from client requests.
    strip_headers: Vec<String>,
}

impl Admission {
    pub fn new(config: &Config) -> Self {
        let mut strip_headers: Vec<String> = IDENTITY_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        let configured =
            config.headers.iter().map(|h| h.name.as_str()).chain(config.strip_headers.iter().map(String::as_str));
        for name in configured {
            let name = name.to_ascii_lowercase();
            if !strip_headers.contains(&name) {
                strip_headers.push(name);
            }
        }
        Admission {
            config: config.clone(),
            policy: Policy::new(config),
            templates: config.headers.clone(),
            strip_headers,
        }
    }

    /// Every header authgate manages (removed from client requests).
    pub fn strip_headers(&self) -> &[String] {
        &self.strip_headers
    }

    /// Allows a verified identity if policy does, with the headers the upstream gets.
    pub fn admit(&self, claims: &Claims, access_token: &str, id_token: &str) -> Decision {
        let identity = match Identity::from_claims(claims, &self.config) {
            Ok(identity) => identity,
            Err(reason) => return Decision::forbidden(reason),
        };
        if !self.policy.allows(&identity) {
            return Decision::forbidden(Reason::PolicyDenied);
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut set = |name: &str, value: Option<String>| {
            headers.retain(|(n, _)| n != name);
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                headers.push((name.to_owned(), value));
            }
        };
        set("x-forwarded-user", header_value(&identity.user));
        set("x-auth-request-user", header_value(&identity.user));
        set("x-auth-request-email", identity.email.as_deref().and_then(header_value));
        set("x-user-groups", header_list(&identity.groups));
        set("x-user-roles", header_list(&identity.roles));
        for template in &self.templates {
            let value = render(&template.value, claims, access_token, id_token);
            set(&template.name.to_ascii_lowercase(), header_value(&value));
        }
        // Headers we set overwrite the client's; the rest of the identity headers go.
        let remove = self.strip_headers.iter().filter(|h| !headers.iter().any(|(n, _)| n == *h)).cloned().collect();
        let mut decision = Decision::allow(Reason::Authenticated, remove);
        decision.upstream_headers = headers;
        decision
    }
}

/// Longest header value authgate sends upstream; a longer one is left out (and the
/// client's copy still removed), never truncated into another value.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// A claim made safe as a header value: `%`, control bytes and DEL percent-encoded (RFC 3986
/// style, so an upstream can decode it unambiguously), `None` when too long. A CR/LF in a
/// display name can then never become a second header.
pub fn header_value(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == '%' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_HEADER_VALUE {
        tracing::warn!(bytes = out.len(), "an identity header value is too long: left out");
        return None;
    }
    Some(out)
}

/// A list as one header value: items joined with `,`, each item's own `,` (and `%`,
/// control bytes) percent-encoded, so `viewers,admins` as one group never reads as two.
pub fn header_list(items: &[String]) -> Option<String> {
    let encoded: Vec<String> =
        items.iter().filter_map(|item| header_value(item)).map(|item| item.replace(',', "%2C")).collect();
    let joined = encoded.join(",");
    if joined.len() > MAX_HEADER_VALUE {
        tracing::warn!(bytes = joined.len(), "an identity header list is too long: left out");
        return None;
    }
    Some(joined)
}

/// Renders a `headers` template: `{{.Claims.path}}`, `{{.AccessToken}}`, `{{.IdToken}}`
/// (the seed's Go-template forms). Unknown placeholders render empty.
pub fn render(template: &str, claims: &Claims, access_token: &str, id_token: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expression = rest[start + 2..start + end].trim();
        if let Some(path) = expression.strip_prefix(".Claims.") {
            match claim(claims, path) {
                Some(Value::Array(items)) => {
                    let items: Vec<String> = items.iter().filter_map(text).collect();
                    out.push_str(&header_list(&items).unwrap_or_default());
                }
                Some(value) => out.push_str(&text(value).unwrap_or_default()),
                None => {}
            }
        } else if expression == ".AccessToken" {
            out.push_str(access_token);
        } else if expression == ".IdToken" {
            out.push_str(id_token);
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn config() -> Config {
        Config { group_claim_name: "realm_access.groups".into(), ..Config::default() }
    }

    #[test]
    fn reads_dotted_and_dotted_name_claims() {
        let c = claims(json!({"realm_access": {"groups": ["a", "b"]}, "https://x.io/roles": "r1 r2",
            "email": "A@Example.com", "email_verified": true}));
        assert_eq!(list(claim(&c, "realm_access.groups")), ["a", "b"]);
        assert_eq!(list(claim(&c, "https://x.io/roles")), ["r1 r2"], "a string claim is one item");
        let identity = Identity::from_claims(&c, &config()).unwrap();
        assert_eq!(identity.user, "A@Example.com");
        assert_eq!(identity.groups, ["a", "b"]);
    }

    /// H3: an unverified e-mail is no identity and matches no allow list.
    #[test]
    fn h3_an_unverified_email_is_no_identity() {
        let unverified = claims(json!({"sub": "u-1", "email": "alice@corp.example", "email_verified": false}));
        assert_eq!(Identity::from_claims(&unverified, &Config::default()), Err(Reason::EmailNotVerified));
        let missing_flag = claims(json!({"sub": "u-1", "email": "alice@corp.example"}));
        assert_eq!(Identity::from_claims(&missing_flag, &Config::default()), Err(Reason::EmailNotVerified));
        // Identified by `sub`, the unverified e-mail is neither shown nor matched.
        let by_sub = Config {
            user_identifier_claim: "sub".into(),
            allowed_users: vec!["alice@corp.example".into()],
            ..Config::default()
        };
        let identity = Identity::from_claims(&unverified, &by_sub).unwrap();
        assert_eq!((identity.user.as_str(), identity.email.as_deref()), ("u-1", None));
        assert!(!Policy::new(&by_sub).allows(&identity));
        // Unless the operator says so.
        let allowed = Config { allow_unverified_email: true, ..Config::default() };
        assert_eq!(Identity::from_claims(&unverified, &allowed).unwrap().user, "alice@corp.example");
    }

    /// H3: no silent fallback from the configured claim to `sub`.
    #[test]
    fn h3_no_fallback_from_the_identifier_claim_to_sub() {
        let no_email = claims(json!({"sub": "client-123"}));
        assert_eq!(Identity::from_claims(&no_email, &Config::default()), Err(Reason::NoUserIdentifier));
    }

    /// L10: an empty identifier is no identity.
    #[test]
    fn l10_an_empty_identifier_is_no_identity() {
        let by_sub = Config { user_identifier_claim: "sub".into(), ..Config::default() };
        for value in [json!(""), json!("   "), json!([]), json!({})] {
            let c = claims(json!({"sub": value}));
            assert_eq!(Identity::from_claims(&c, &by_sub), Err(Reason::NoUserIdentifier), "{value}");
        }
        let empty_email = claims(json!({"sub": "x", "email": "", "email_verified": true}));
        assert_eq!(Identity::from_claims(&empty_email, &Config::default()), Err(Reason::NoUserIdentifier));
    }

    /// H3: ASCII case folding only; a KELVIN SIGN is not a K.
    #[test]
    fn h3_case_folding_is_ascii_only() {
        let config = Config {
            allowed_users: vec!["kim@corp.example".into()],
            allowed_user_domains: vec!["Corp.example".into()],
            ..Config::default()
        };
        let policy = Policy::new(&config);
        let id =
            |email: &str| Identity { user: email.into(), email: Some(email.into()), groups: vec![], roles: vec![] };
        assert!(policy.allows(&id("KIM@corp.example")));
        assert!(policy.allows(&id("bob@corp.EXAMPLE")));
        let kelvin = id("\u{212A}im@other.example");
        assert!(!policy.allows(&kelvin), "\u{212A} must not fold to k");
        assert!(!policy.allows(&id("eve@evil.example")));
    }

    #[test]
    fn roles_or_groups_are_required_on_top() {
        let config = Config { allowed_roles_and_groups: vec!["admins".into()], ..Config::default() };
        let policy = Policy::new(&config);
        let mut identity = Identity { user: "u".into(), email: None, groups: vec!["staff".into()], roles: vec![] };
        assert!(!policy.allows(&identity));
        identity.roles.push("admins".into());
        assert!(policy.allows(&identity));
        // A string claim is one group, not words.
        let c = claims(json!({"email": "a@b.c", "email_verified": true, "groups": "Sales admins"}));
        let identity = Identity::from_claims(&c, &Config::default()).unwrap();
        assert!(!policy.allows(&identity));
    }

    /// L1: claim values as header values.
    #[test]
    fn l1_header_values_cannot_inject_or_split() {
        assert_eq!(header_value("Eve\r\nX-Forwarded-User: admin").unwrap(), "Eve%0D%0AX-Forwarded-User: admin");
        assert_eq!(header_value("50%").unwrap(), "50%25");
        assert_eq!(header_value("J\u{fc}rgen").unwrap(), "J\u{fc}rgen");
        assert!(header_value(&"x".repeat(MAX_HEADER_VALUE + 1)).is_none());
        let groups = vec!["viewers,admins".to_owned(), "staff".to_owned()];
        assert_eq!(header_list(&groups).unwrap(), "viewers%2Cadmins,staff");
        assert_eq!(header_list(&groups).unwrap().split(',').count(), 2);
    }

    #[test]
    fn renders_templates() {
        let c = claims(json!({"email": "a@b.c", "groups": ["x", "y,z"], "n": 3}));
        assert_eq!(
            render("{{.Claims.email}}|{{ .Claims.groups }}|{{.Claims.n}}|{{.Claims.none}}", &c, "", ""),
            "a@b.c|x,y%2Cz|3|"
        );
        assert_eq!(render("Bearer {{.AccessToken}}", &c, "tok", ""), "Bearer tok");
        assert_eq!(render("plain", &c, "", ""), "plain");
        assert_eq!(render("{{.Claims.email", &c, "", ""), "{{.Claims.email");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn decode(value: &str) -> String {
            percent_encoding::percent_decode_str(value).decode_utf8().unwrap().into_owned()
        }

        proptest! {
            /// A header value never carries a control byte, and decodes back to the claim.
            #[test]
            fn header_values_are_safe_and_reversible(raw in "\\PC{0,40}|[\\x00-\\x1f%\\x7f a-z]{0,40}") {
                let value = header_value(&raw).unwrap();
                prop_assert!(!value.chars().any(|c| c.is_ascii_control()));
                prop_assert_eq!(decode(&value), raw);
            }

            /// A list reads back as exactly its items.
            #[test]
            fn header_lists_keep_their_items(items in proptest::collection::vec("[a-z,% \\r\\n]{1,8}", 0..6)) {
                let value = header_list(&items).unwrap();
                let read: Vec<String> = if value.is_empty() { Vec::new() } else { value.split(',').map(decode).collect() };
                prop_assert_eq!(read, items);
            }
        }
    }
}
