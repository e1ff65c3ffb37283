//! `excludedURLs`: path prefixes that need no authentication.
//!
//! Matching is by whole path segments (`/public` matches `/public` and `/public/x`, not
//! `/publicity`); a prefix ending in `/` matches only below it.
//!
//! An exclusion is a hole in authentication, so it only applies to a path that means the
//! same thing to every upstream: plain ASCII segments without anything a server could
//! normalise into another path. A path that could mean something else never matches (it
//! is then authenticated like any other), and so does a path containing:
//! - dot segments (`/public/../admin`), in any encoding (`%2e`, `%252e`, `%u002e`);
//! - `;` (servlet path parameters: Tomcat and Jetty read `/public/..;/admin` as `/admin`);
//! - `#` (a fragment is never sent by a browser; a proxy forwarding one raw lets a
//!   `path.Clean`-style upstream resolve what follows it);
//! - encoded `/`, `\`, `.` or `%` (`%2f`, `%5c`, `%2e`, `%25`: double decoding), `%u` escapes,
//!   any other percent escape, a raw `\`;
//! - control bytes, spaces and non-ASCII (look-alikes that NFKC-normalising upstreams fold).
//!
//! The check is on the path exactly as the proxy forwards it (the query string after the
//! first `?` excluded), never on a decoded form.

#[derive(Debug, Clone, Default)]
pub struct ExcludedPaths {
    prefixes: Vec<String>,
}

impl ExcludedPaths {
    pub fn new(prefixes: &[String]) -> Self {
        ExcludedPaths { prefixes: prefixes.to_vec() }
    }

    /// Whether `path` (without query string) is under one of the prefixes.
    pub fn matches(&self, path: &str) -> bool {
        if self.prefixes.is_empty() || !is_plain(path) {
            return false;
        }
        self.prefixes.iter().any(|prefix| match path.strip_prefix(prefix.as_str()) {
            None => false,
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        })
    }
}

/// A path every upstream reads the same way: origin-form, printable ASCII without escapes,
/// parameters, a query, fragments or backslashes, and no dot segments.
pub fn is_plain(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b';' | b'?' | b'#' | b'\\'))
        && path.split('/').all(|segment| segment != "." && segment != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(prefixes: &[&str]) -> ExcludedPaths {
        ExcludedPaths::new(&prefixes.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn matches_whole_segments() {
        let e = excluded(&["/public", "/health"]);
        assert!(e.matches("/public"));
        assert!(e.matches("/public/"));
        assert!(e.matches("/public/css/site.css"));
        assert!(e.matches("/health"));
        assert!(!e.matches("/publicity"));
        assert!(!e.matches("/"));
        assert!(!e.matches("/private/public"));
    }

    #[test]
    fn trailing_slash_prefix_matches_only_below() {
        let e = excluded(&["/static/"]);
        assert!(e.matches("/static/app.js"));
        assert!(!e.matches("/static"));
    }

    #[test]
    fn refuses_paths_that_could_escape_the_prefix() {
        let e = excluded(&["/public"]);
        assert!(!e.matches("/public/../admin"));
        assert!(!e.matches("/public/./x"));
        assert!(!e.matches("/public/%2e%2e/admin"));
        assert!(!e.matches("/public%2F..%2Fadmin"));
        assert!(!e.matches("/public\\..\\admin"));
        assert!(!e.matches("public"));
    }

    /// H2: parser differentials between authgate and the upstream.
    #[test]
    fn h2_path_parameters_fragments_and_double_encoding_never_match() {
        let e = excluded(&["/public"]);
        for path in [
            "/public/..;/admin",
            "/public/..;jsessionid=x/admin",
            "/public;x/../admin",
            "/public#/../admin",
            "/public/%252e%252e/admin",
            "/public/%25%32%65%25%32%65/admin",
            "/public/%u002e%u002e/admin",
            "/public/%2E%2E/admin",
            "/public/%5c../admin",
            "/public/\u{ff0e}\u{ff0e}/admin",
            "/public/\u{2024}\u{2024}/admin",
            "/public/x\0/admin",
            "/public/x\t/admin",
            "/public/x y",
            "/public/\u{7f}",
        ] {
            assert!(!e.matches(path), "{path:?} must not be excluded");
        }
        assert!(e.matches("/public/a-b_c~d.e/f!g$h&i'j(k)l*m+n,o=p:q@r"), "plain punctuation is fine");
    }

    /// Found by the `excluded_path` fuzz target: a `?` ends the path for an upstream, so
    /// `/public/..?x` is `/public/..`, i.e. `/`. Callers strip the query first; the matcher
    /// does not rely on it.
    #[test]
    fn fuzz_regression_a_query_mark_ends_the_path() {
        assert!(!excluded(&["/public"]).matches("/public/..?/z>>.>>>b/"));
        assert!(!excluded(&["/public"]).matches("/public/x?y"));
    }

    #[test]
    fn nothing_matches_without_prefixes() {
        assert!(!ExcludedPaths::default().matches("/anything"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// What an upstream might make of a path: URL normalisation, once or twice
        /// percent-decoded, `;params` dropped, `\` read as `/`.
        fn readings(path: &str) -> Vec<String> {
            let base = url::Url::parse("http://upstream/").unwrap();
            let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
            let once = decode(path);
            let twice = decode(&once);
            let no_params = path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/");
            [path.to_owned(), once, twice, no_params, path.replace('\\', "/")]
                .iter()
                .filter_map(|p| base.join(p).ok().map(|u| u.path().to_owned()))
                .collect()
        }

        proptest! {
            /// An excluded path stays under its prefix however an upstream reads it.
            #[test]
            fn an_excluded_path_stays_under_its_prefix(rest in "[/a-z.;%#?\\\\25EeFfCc]{0,24}") {
                let path = format!("/public{rest}");
                if excluded(&["/public"]).matches(&path) {
                    for reading in readings(&path) {
                        prop_assert!(reading == "/public" || reading.starts_with("/public/"), "{path:?} read as {reading:?}");
                    }
                }
            }

            /// Any string: a yes or a no, never a panic.
            #[test]
            fn any_path_is_decided(path in ".{0,64}") {
                let _ = excluded(&["/public", "/static/"]).matches(&path);
            }
        }
    }
}
