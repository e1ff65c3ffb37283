//! Loading: file → YAML tree → environment overrides → typed [`Config`] → validation,
//! collecting every problem on the way instead of stopping at the first.

use super::Config;
use super::env::{ENV_VARIABLES, EnvKind, EnvVariable};
use serde_path_to_error::Segment;
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// One thing wrong with the configuration, at a key path such as `redis.poolSize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found while loading, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads the configuration from an optional YAML file and the given environment
/// (a map, so tests inject one instead of touching the process environment).
pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    into_result(load_lenient(file, env))
}

/// Like [`load_str_lenient`], from an optional file.
pub fn load_lenient(file: Option<&Path>, env: &HashMap<String, String>) -> (Option<Config>, Vec<Problem>) {
    match file {
        None => load_str_lenient("", env),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => load_str_lenient(&text, env),
            Err(e) => {
                (None, vec![Problem::new(path.display().to_string(), format!("cannot read configuration file: {e}"))])
            }
        },
    }
}

fn into_result((config, problems): (Option<Config>, Vec<Problem>)) -> Result<Config, ConfigError> {
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError { problems }),
    }
}

/// Like [`load`], from YAML text.
pub fn load_str(yaml: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    into_result(load_str_lenient(yaml, env))
}

/// Loads as far as possible: the configuration that results (bad keys left at their
/// defaults; `None` when the text is not a YAML mapping at all) and every problem found.
/// `check-config` uses it to show the effective configuration next to the problems.
pub fn load_str_lenient(yaml: &str, env: &HashMap<String, String>) -> (Option<Config>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut tree = match parse_yaml(yaml) {
        Ok(tree) => tree,
        Err(problem) => return (None, vec![problem]),
    };
    drop_nulls(&mut tree);
    apply_env(&mut tree, env, &mut problems);
    let config = deserialize_collecting(tree, &mut problems);
    // A key already reported (and so left at its default) is not reported again.
    let reported: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    problems.extend(config.validate().into_iter().filter(|p| !reported.iter().any(|r| covers(r, &p.path))));
    (Some(config), problems)
}

/// Whether a problem at `reported` already covers one at `path` (same key or a parent).
fn covers(reported: &str, path: &str) -> bool {
    path == reported || path.strip_prefix(reported).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn parse_yaml(yaml: &str) -> Result<Value, Problem> {
    if yaml.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    match serde_yaml_ng::from_str::<Value>(yaml) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(value @ Value::Mapping(_)) => Ok(value),
        Ok(_) => Err(Problem::new(".", "the configuration must be a mapping of keys to values")),
        Err(e) => {
            let at = e.location().map(|l| format!(" at line {} column {}", l.line(), l.column())).unwrap_or_default();
            Err(Problem::new(".", format!("not valid YAML{at}: {e}")))
        }
    }
}

/// `key:` with nothing after it means "not set", as in most YAML-configured servers.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn apply_env(tree: &mut Value, env: &HashMap<String, String>, problems: &mut Vec<Problem>) {
    for variable in ENV_VARIABLES {
        let Some(text) = env.get(variable.name) else {
            continue;
        };
        // An empty variable is treated as unset (Kubernetes often renders absent values so).
        if text.trim().is_empty() {
            continue;
        }
        match env_value(variable, text) {
            Ok(value) => set_path(tree, variable.path, value),
            Err(message) => problems.push(Problem::new(variable.path, format!("from {}: {message}", variable.name))),
        }
    }
}

fn env_value(variable: &EnvVariable, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match variable.kind {
        EnvKind::Text | EnvKind::Duration => Ok(Value::String(text.to_owned())),
        EnvKind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        EnvKind::Integer => text
            .parse::<u64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("expected a non-negative integer, got {text:?}")),
        EnvKind::List => Ok(Value::Sequence(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
        )),
    }
}

fn set_path(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { unreachable!("made a mapping above") };
        let key = Value::String(key.to_owned());
        if keys.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

/// Deserializes the tree into [`Config`]; on each error, records it with its key path,
/// removes the offending key and tries again, so that one run reports every bad key.
fn deserialize_collecting(mut tree: Value, problems: &mut Vec<Problem>) -> Config {
    // Each round removes one key, so the loop ends; the bound is a guard against surprises.
    for _ in 0..1000 {
        let error = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return config,
            Err(error) => error,
        };
        let mut display = String::new();
        // Keys to remove so the next round gets past this error: up to the first list,
        // because a bad list item is dropped with its whole list (indices would shift).
        let mut removal: Vec<String> = Vec::new();
        let mut inside_list = false;
        for segment in error.path().iter() {
            match segment {
                Segment::Map { key } => {
                    if !display.is_empty() {
                        display.push('.');
                    }
                    display.push_str(key);
                    if !inside_list {
                        removal.push(key.clone());
                    }
                }
                Segment::Seq { index } => {
                    display.push_str(&format!("[{index}]"));
                    inside_list = true;
                }
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        let mut message = error.inner().to_string();
        if let Some(field) = unknown_field(&message).map(str::to_owned) {
            // The path usually ends at the unknown key already; make sure it does.
            if !display.ends_with(&field) {
                if !display.is_empty() {
                    display.push('.');
                }
                display.push_str(&field);
                if !inside_list {
                    removal.push(field.clone());
                }
            }
            message = unknown_key_message(&field, &message);
        }
        if display.is_empty() {
            display.push('.');
        }
        problems.push(Problem::new(display, message));
        if !remove_path(&mut tree, &removal) {
            break;
        }
    }
    Config::default()
}

/// serde's message for `deny_unknown_fields` is "unknown field `x`, expected one of …".
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// "unknown key", with the closest known key as a suggestion, or the list of known keys.
fn unknown_key_message(field: &str, serde_message: &str) -> String {
    let known: Vec<&str> = serde_message
        .split_once(", expected ")
        .map(|(_, expected)| expected.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let closest = known
        .iter()
        .map(|k| (edit_distance(&field.to_ascii_lowercase(), &k.to_ascii_lowercase()), *k))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    match closest {
        Some((_, suggestion)) => format!("unknown key; did you mean `{suggestion}`?"),
        None if known.is_empty() => "unknown key".to_owned(),
        None => format!("unknown key (known keys here: {})", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn remove_path(tree: &mut Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for key in parents {
        match node.get_mut(key.as_str()) {
            Some(child) => node = child,
            None => return false,
        }
    }
    match node {
        Value::Mapping(map) => map.remove(last.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a configuration or a list of problems, never a panic.
        #[test]
        fn any_text_loads_or_is_refused(yaml in "\\PC{0,200}") {
            let _ = load_str_lenient(&yaml, &HashMap::new());
        }

        /// Any value for any key, and any environment value for every variable.
        #[test]
        fn any_value_anywhere_loads_or_is_refused(
            key in "(redis\\.)?[a-zA-Z]{1,20}",
            value in "\\PC{0,30}",
            variable in proptest::sample::select(crate::config::ENV_VARIABLES.iter().map(|v| v.name).collect::<Vec<_>>()),
        ) {
            let (_, problems) = load_str_lenient(&format!("{key}: {value}\n"), &HashMap::new());
            prop_assert!(problems.iter().all(|p| !p.message.is_empty()));
            let env = HashMap::from([(variable.to_owned(), value.clone())]);
            let _ = load_str_lenient("providerURL: https://idp.example\n", &env);
        }
    }
}
