//! `excludedURLs`: path prefixes that need no authentication.
//!
//! Matching is by whole path segments (`/public` matches `/public` and `/public/x`, not
//! `/publicity`), and a path that could mean something else to the upstream than it looks
//! (dot segments, encoded `/`, `\` or `.`) never matches: `/public/../admin` must not slip
//! through because it starts with `/public`. A prefix ending in `/` matches only below it.

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
        if self.prefixes.is_empty() || is_ambiguous(path) {
            return false;
        }
        self.prefixes.iter().any(|prefix| match path.strip_prefix(prefix.as_str()) {
            None => false,
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        })
    }
}

/// Paths an upstream might normalise into something else.
fn is_ambiguous(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") || lower.contains("%00") {
        return true;
    }
    path.split('/').any(|segment| segment == "." || segment == "..")
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

    #[test]
    fn nothing_matches_without_prefixes() {
        assert!(!ExcludedPaths::default().matches("/anything"));
    }
}
