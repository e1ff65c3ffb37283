//! Why a request got the answer it got: one closed set of reason codes.
//!
//! A reason is a short, low-cardinality code: it goes into the decision log line, the
//! `reason` attribute of the `authgate.check` span, the gRPC status message, the
//! `error_description` of a bearer 401 and of a refused back-channel logout. It never
//! names a user, a token or a path. `docs/observability.md` lists every code (a test
//! checks the list against [`Reason::ALL`]).

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident => $code:literal,)*) => {
        /// A reason code; see the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in documentation order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The code as logs, spans and error descriptions show it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $code,)*
                }
            }

            /// What the code means (for the generated documentation).
            pub const fn description(self) -> &'static str {
                match self {
                    $(Reason::$name => concat!($($doc),*),)*
                }
            }
        }
    };
}

reasons! {
    // Allowed.
    /// The path is under `excludedURLs`.
    Excluded => "excluded",
    /// A valid session or bearer token, allowed by policy.
    Authenticated => "authenticated",
    // Denied: no usable credentials.
    /// No session and no bearer token (API request).
    Unauthenticated => "unauthenticated",
    /// No session; the browser is sent to the provider's login.
    LoginRequired => "login_required",
    /// The Check carries no HTTP request (e.g. a TCP ext_authz filter).
    NoHttpAttributes => "no_http_attributes",
    // Denied: identity and policy.
    /// Authenticated, but `allowedUsers`/`allowedUserDomains`/`allowedRolesAndGroups` say no.
    PolicyDenied => "policy_denied",
    /// The verified claims name no user (`userIdentifierClaim` missing or empty).
    NoUserIdentifier => "no_user_identifier",
    /// The identity would come from an e-mail the provider has not verified.
    EmailNotVerified => "email_not_verified",
    // Token verification (bearer, ID and logout tokens).
    /// Not three base64url segments, or an unreadable header.
    MalformedToken => "malformed_token",
    /// `alg` is not an allowed asymmetric algorithm (`none` and HS* are refused).
    AlgorithmNotAllowed => "algorithm_not_allowed",
    /// The token names a key the provider does not publish.
    UnknownSigningKey => "unknown_signing_key",
    /// The signature does not verify.
    BadSignature => "bad_signature",
    /// `exp` has passed (beyond `clockSkewSeconds`).
    TokenExpired => "token_expired",
    /// `nbf` (or `iat`) is in the future (beyond `clockSkewSeconds`).
    TokenNotYetValid => "token_not_yet_valid",
    /// `aud` does not contain the expected audience.
    WrongAudience => "wrong_audience",
    /// `iss` is not the discovered issuer.
    WrongIssuer => "wrong_issuer",
    /// A required claim (`exp`, `iss`, `aud`) is missing.
    MissingClaim => "missing_claim",
    /// Any other verification failure.
    InvalidToken => "invalid_token",
    /// A bearer token that is not an access token (an ID or logout token, another `typ`).
    NotAnAccessToken => "not_an_access_token",
    /// A one-time token (ID token at the callback) was already used.
    TokenReplayed => "token_replayed",
    // The browser login.
    /// A session was created; back to where the user was.
    LoggedIn => "logged_in",
    /// The callback URL could not be parsed.
    BadCallback => "bad_callback",
    /// The callback carries no `code` or no `state`.
    MissingCodeOrState => "missing_code_or_state",
    /// The provider answered the login with an `error`.
    IdpError => "idp_error",
    /// No flow cookie for this `state`, or it expired (a login started elsewhere or too long ago).
    UnknownLoginState => "unknown_login_state",
    /// The provider refused the authorization code.
    CodeRejected => "code_rejected",
    /// The token response carried no ID token.
    NoIdToken => "no_id_token",
    /// The ID token's `nonce` is not the one of this login.
    NonceMismatch => "nonce_mismatch",
    /// The ID token's `azp` is not our client id.
    AzpMismatch => "azp_mismatch",
    /// The ID token's `at_hash` does not match the access token.
    AtHashMismatch => "at_hash_mismatch",
    /// The userinfo endpoint failed or answered nonsense.
    UserinfoFailed => "userinfo_failed",
    /// The userinfo `sub` is not the ID token's.
    UserinfoSubMismatch => "userinfo_sub_mismatch",
    // Logout.
    /// The session was ended; on to the provider's end-session endpoint.
    LoggedOut => "logged_out",
    /// A logout that is neither a POST nor a same-site navigation.
    CrossSiteLogout => "cross_site_logout",
    // Back-channel logout tokens.
    /// The request carries no `logout_token`.
    MissingLogoutToken => "missing_logout_token",
    /// The token has no back-channel logout event.
    NotALogoutToken => "not_a_logout_token",
    /// A logout token must not carry a `nonce`.
    NonceInLogoutToken => "nonce_in_logout_token",
    /// The logout token has no `jti`.
    MissingJti => "missing_jti",
    /// The logout token names neither `sid` nor `sub`.
    NoSidOrSub => "no_sid_or_sub",
    /// This logout token (its `jti`) was already used.
    LogoutTokenReplayed => "logout_token_replayed",
    // The forward-auth bridge.
    /// A bridge call from an address not in `forwardAuth.trustedProxies`.
    UntrustedProxy => "untrusted_proxy",
    /// A bridge call without the right `forwardAuth.sharedSecret`.
    BadSharedSecret => "bad_shared_secret",
    /// A bridge call without the headers of the configured proxy convention.
    ForwardAuthHeadersMissing => "forward_auth_headers_missing",
    /// A bridge call whose convention headers are repeated, or disagree with the other
    /// convention's.
    ForwardAuthHeadersConflict => "forward_auth_headers_conflict",
    // Internal failures: the proxy's failure policy applies.
    /// The provider (discovery, keys, token or userinfo endpoint) cannot be reached.
    IdpUnavailable => "idp_unavailable",
    /// The provider answered with something unusable.
    IdpBadResponse => "idp_bad_response",
    /// The cache (Redis) cannot take or give what the decision needs.
    CacheUnavailable => "cache_unavailable",
    /// Another replica's refresh of this session did not finish in time.
    RefreshLockTimeout => "refresh_lock_timeout",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_described() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let code = reason.as_str();
            assert!(seen.insert(code), "{code} twice");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
            assert!(!reason.description().is_empty(), "{code} undocumented");
        }
    }
}
