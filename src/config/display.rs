//! The effective configuration as `check-config` prints it: one `key.path: value` line per
//! key, in the same path syntax as the problems, secrets redacted.

use super::Config;
use serde_json::Value;

impl Config {
    /// `key.path: value` lines, sorted by path; secrets show `<redacted>`.
    pub fn effective_lines(&self) -> Vec<String> {
        let mut tree = serde_json::to_value(self).expect("the configuration serializes");
        // Show the mode in effect rather than "unset".
        tree["redis"]["cacheMode"] = Value::String(self.effective_cache_mode().as_str().to_owned());
        let mut lines = Vec::new();
        flatten("", &tree, &mut lines);
        lines.sort();
        lines
    }
}

fn flatten(path: &str, value: &Value, lines: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                flatten(&child_path, child, lines);
            }
        }
        Value::Array(items) if items.iter().any(|v| v.is_object()) => {
            for (i, child) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), child, lines);
            }
        }
        Value::String(text) => lines.push(format!("{path}: {text}")),
        other => lines.push(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn prints_paths_and_redacts_secrets() {
        let mut config = Config { client_secret: Secret::new("very-secret-value"), ..Config::default() };
        config.redis.address = "h:1".into();
        let lines = config.effective_lines();
        assert!(lines.contains(&"redis.address: h:1".to_owned()));
        assert!(lines.contains(&"clientSecret: <redacted>".to_owned()));
        assert!(lines.contains(&"redis.cacheMode: memory".to_owned()));
        assert!(lines.contains(&r#"scopes: ["openid","profile","email"]"#.to_owned()));
        assert!(!lines.iter().any(|l| l.contains("very-secret-value")));
    }
}
