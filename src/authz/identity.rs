//! Who the verified claims say the user is, whether policy lets them in, and the headers
//! the upstream gets: [`Admission::admit`] is the one place where that is decided, for a
//! session, a bearer token and a login alike.

use super::decision::Decision;
use crate::claims::{Claims, claim};
use crate::config::{Config, HeaderTemplate};
use crate::reason::Reason;
use serde_json::Value;

/// A claim as text (strings as they are, numbers and booleans printed).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim as a list: an array of strings, or one string split on commas and spaces.
fn list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(Value::String(s)) => s.split([',', ' ']).filter(|x| !x.is_empty()).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The identity drawn from verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `userIdentifierClaim`, falling back to `sub`.
    pub user: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

impl Identity {
    pub fn from_claims(claims: &Claims, config: &Config) -> Option<Identity> {
        let user =
            claim(claims, &config.user_identifier_claim).and_then(text).or_else(|| claims.get("sub").and_then(text))?;
        Some(Identity {
            user,
            email: claims.get("email").and_then(text),
            email_verified: matches!(claims.get("email_verified"), Some(Value::Bool(true)))
                || claims.get("email_verified").and_then(Value::as_str) == Some("true"),
            groups: list(claim(claims, &config.group_claim_name)),
            roles: list(claim(claims, &config.role_claim_name)),
        })
    }
}

/// `allowedUsers`, `allowedUserDomains`, `allowedRolesAndGroups`, compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    users: Vec<String>,
    domains: Vec<String>,
    roles_and_groups: Vec<String>,
    allow_unverified_email: bool,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Policy {
            users: config.allowed_users.iter().map(|u| u.to_lowercase()).collect(),
            domains: config.allowed_user_domains.iter().map(|d| d.trim_start_matches('@').to_lowercase()).collect(),
            roles_and_groups: config.allowed_roles_and_groups.clone(),
            allow_unverified_email: config.allow_unverified_email,
        }
    }

    /// Whether `identity` may pass. With user and domain lists, matching either is enough;
    /// with a role/group list, one of them is needed as well.
    pub fn allows(&self, identity: &Identity) -> bool {
        let user_listed = !self.users.is_empty() || !self.domains.is_empty();
        if user_listed {
            let user = identity.user.to_lowercase();
            let email = identity.email.as_deref().map(str::to_lowercase);
            let by_user = self.users.iter().any(|u| *u == user || email.as_deref() == Some(u.as_str()));
            let by_domain = (identity.email_verified || self.allow_unverified_email)
                && email
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
        for header in &config.headers {
            let name = header.name.to_ascii_lowercase();
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
        let Some(identity) = Identity::from_claims(claims, &self.config) else {
            return Decision::invalid_token(Reason::NoUserIdentifier);
        };
        if !self.policy.allows(&identity) {
            return Decision::forbidden(Reason::PolicyDenied);
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
            let value = render(&template.value, claims, access_token, id_token);
            let name = template.name.to_ascii_lowercase();
            headers.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                headers.push((name, value));
            }
        }
        // Headers we set overwrite the client's; the rest of the identity headers go.
        let remove = self.strip_headers.iter().filter(|h| !headers.iter().any(|(n, _)| n == *h)).cloned().collect();
        let mut decision = Decision::allow(Reason::Authenticated, remove);
        decision.upstream_headers = headers;
        decision
    }
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
                Some(Value::Array(items)) => out.push_str(&items.iter().filter_map(text).collect::<Vec<_>>().join(",")),
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
        let c = claims(
            json!({"realm_access": {"groups": ["a", "b"]}, "https://x.io/roles": "r1 r2", "email": "A@Example.com"}),
        );
        assert_eq!(list(claim(&c, "realm_access.groups")), ["a", "b"]);
        assert_eq!(list(claim(&c, "https://x.io/roles")), ["r1", "r2"]);
        let identity = Identity::from_claims(&c, &config()).unwrap();
        assert_eq!(identity.user, "A@Example.com");
        assert_eq!(identity.groups, ["a", "b"]);
    }

    #[test]
    fn policy_matches_users_and_verified_domains_case_insensitively() {
        let config = Config {
            allowed_users: vec!["Alice@example.com".into()],
            allowed_user_domains: vec!["Corp.example".into()],
            ..Config::default()
        };
        let policy = Policy::new(&config);
        let id = |email: &str, verified: bool| Identity {
            user: email.into(),
            email: Some(email.into()),
            email_verified: verified,
            groups: vec![],
            roles: vec![],
        };
        assert!(policy.allows(&id("alice@EXAMPLE.com", false)));
        assert!(policy.allows(&id("bob@corp.EXAMPLE", true)));
        assert!(!policy.allows(&id("bob@corp.example", false)), "domain match needs a verified email");
        assert!(!policy.allows(&id("eve@evil.example", true)));
    }

    #[test]
    fn roles_or_groups_are_required_on_top() {
        let config = Config { allowed_roles_and_groups: vec!["admins".into()], ..Config::default() };
        let policy = Policy::new(&config);
        let mut identity = Identity {
            user: "u".into(),
            email: None,
            email_verified: false,
            groups: vec!["staff".into()],
            roles: vec![],
        };
        assert!(!policy.allows(&identity));
        identity.roles.push("admins".into());
        assert!(policy.allows(&identity));
    }

    #[test]
    fn renders_templates() {
        let c = claims(json!({"email": "a@b.c", "groups": ["x", "y"], "n": 3}));
        assert_eq!(
            render("{{.Claims.email}}|{{ .Claims.groups }}|{{.Claims.n}}|{{.Claims.none}}", &c, "", ""),
            "a@b.c|x,y|3|"
        );
        assert_eq!(render("Bearer {{.AccessToken}}", &c, "tok", ""), "Bearer tok");
        assert_eq!(render("plain", &c, "", ""), "plain");
        assert_eq!(render("{{.Claims.email", &c, "", ""), "{{.Claims.email");
    }
}
