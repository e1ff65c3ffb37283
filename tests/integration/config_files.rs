//! Configuration loading against fixture files: one file per invalid case, each naming the
//! key paths it must be rejected for; the seed's examples accepted; environment overrides.

use authgate::config::{self, CacheMode, ENV_VARIABLES, EnvKind};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const VALID: &str = "providerURL: https://idp.example.com/realms/demo
clientID: app
clientSecret: s3cret
sessionEncryptionKey: 0123456789abcdef0123456789abcdef
";

#[test]
fn every_invalid_fixture_reports_exactly_its_keys() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures().join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: BTreeSet<String> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| panic!("{} lacks a '# expect:' first line", path.display()))
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let error = config::load(Some(&path), &no_env()).expect_err(&format!("{} must be rejected", path.display()));
        let found: BTreeSet<String> = error.problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(found, expected, "{}: problems were:\n{error}", path.display());
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} invalid fixtures found");
}

#[test]
fn all_problems_are_reported_at_once() {
    let error = config::load(Some(&fixtures().join("invalid/three_mistakes.yaml")), &no_env()).unwrap_err();
    assert_eq!(error.problems.len(), 3, "{error}");
    let text = error.to_string();
    assert!(text.contains("clientID: required"), "{text}");
    assert!(text.contains("redis.poolSize: invalid type"), "{text}");
    assert!(text.contains("redis.cacheMode: unknown variant `turbo`"), "{text}");
}

#[test]
fn the_seeds_example_configurations_are_accepted() {
    let config = config::load(Some(&fixtures().join("seed-example.yaml")), &no_env()).unwrap();
    assert_eq!(config.effective_cache_mode(), CacheMode::Hybrid);
    assert_eq!(config.redis.address, "redis.example.com:6379");
    assert_eq!(config.redis.max_conn_age.get().as_secs(), 3600);
    assert_eq!(config.redis.key_prefix, "traefikoidc");
    assert_eq!(config.redis.password.expose(), "your-redis-password");
    assert!(config.redis.tls.enabled);
    let cluster = config::load(Some(&fixtures().join("seed-cluster-example.yaml")), &no_env()).unwrap();
    assert!(cluster.redis.cluster_mode);
    assert_eq!(cluster.effective_cache_mode(), CacheMode::Redis);
}

#[test]
fn the_shipped_example_is_valid() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/authgate.yaml");
    config::load(Some(&example), &no_env()).unwrap();
}

#[test]
fn the_environment_overrides_the_file() {
    let yaml = format!(
        "{VALID}redis:\n  enabled: true\n  address: file:6379\n  cacheMode: hybrid\n  poolSize: 4\n  minIdleConns: 2\n"
    );
    let config = config::load_str(
        &yaml,
        &env(&[
            ("REDIS_ADDRESS", "env:6380"),
            ("REDIS_POOL_SIZE", "20"),
            ("REDIS_READ_TIMEOUT", "250ms"),
            ("REDIS_TLS_ENABLED", "TRUE"),
            ("AUTHGATE_CLIENT_ID", "from-env"),
            ("AUTHGATE_EXCLUDED_URLS", " /public , /health ,"),
        ]),
    )
    .unwrap();
    assert_eq!(config.redis.address, "env:6380");
    assert_eq!(config.redis.pool_size, 20);
    assert_eq!(config.redis.min_idle_conns, 2, "keys the environment does not set keep the file's value");
    assert_eq!(config.redis.read_timeout.get().as_millis(), 250);
    assert!(config.redis.tls.enabled);
    assert_eq!(config.client_id, "from-env");
    assert_eq!(config.excluded_urls, ["/public", "/health"]);
}

#[test]
fn redis_enabled_false_in_the_environment_rolls_back_to_memory() {
    // The seed's rollback plan: REDIS_ENABLED=false falls back to memory, whatever the file says.
    let yaml = format!("{VALID}redis:\n  enabled: true\n  cacheMode: redis\n");
    let config = config::load_str(&yaml, &env(&[("REDIS_ENABLED", "false")])).unwrap();
    assert_eq!(config.effective_cache_mode(), CacheMode::Memory);
}

#[test]
fn bad_environment_values_name_the_variable_and_the_key() {
    let error = config::load_str(VALID, &env(&[("REDIS_POOL_SIZE", "lots"), ("REDIS_ENABLED", "maybe")])).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("redis.poolSize: from REDIS_POOL_SIZE: expected a non-negative integer"), "{text}");
    assert!(text.contains("redis.enabled: from REDIS_ENABLED: expected true or false"), "{text}");
    assert_eq!(error.problems.len(), 2);
}

#[test]
fn an_empty_variable_is_treated_as_unset() {
    let config = config::load_str(VALID, &env(&[("REDIS_ADDRESS", "")])).unwrap();
    assert_eq!(config.redis.address, "localhost:6379");
}

#[test]
fn every_environment_variable_sets_a_real_key() {
    let keys: BTreeSet<String> = config::Config::default()
        .effective_lines()
        .iter()
        .map(|line| line.split(": ").next().unwrap().to_owned())
        .collect();
    let shown_at = |loaded: &config::Config, path: &str| {
        let line = loaded.effective_lines().into_iter().find(|l| l.starts_with(&format!("{path}: "))).unwrap();
        line.split_once(": ").unwrap().1.to_owned()
    };
    for variable in ENV_VARIABLES {
        assert!(keys.contains(variable.path), "{} sets unknown key {}", variable.name, variable.path);
        // And the loader really applies it: probe with a value the key does not already
        // have, so a variable that is ignored cannot pass. The file leaves the key out
        // (a secret in it would show `<redacted>` before and after).
        let base: String = VALID
            .lines()
            .filter(|l| !l.starts_with(&format!("{}:", variable.path)))
            .map(|l| format!("{l}\n"))
            .collect();
        let before = shown_at(&config::load_str_lenient(&base, &env(&[])).0.unwrap(), variable.path);
        let value = match variable.kind {
            EnvKind::Bool if before == "true" => "false",
            EnvKind::Bool => "true",
            EnvKind::Integer if before == "7" => "8",
            EnvKind::Integer => "7",
            EnvKind::Duration if before == "7s" => "8s",
            EnvKind::Duration => "7s",
            EnvKind::List => "/probe-list-entry",
            EnvKind::Text => "probe-value-q9",
        };
        let (loaded, problems) = config::load_str_lenient(&base, &env(&[(variable.name, value)]));
        let after = shown_at(&loaded.unwrap(), variable.path);
        // Either the value shows at its key (redacted for secrets), or the key rejected it
        // (e.g. "probe-value-q9" is no cache mode).
        let rejected = problems.iter().any(|p| p.path == variable.path);
        let shown = after != before && (after.contains(value) || after.contains("<redacted>"));
        assert!(rejected || shown, "{} did not reach {}: {before:?} -> {after:?}", variable.name, variable.path);
    }
}

#[test]
fn the_seeds_redis_variables_are_all_read() {
    let seed = [
        "REDIS_ENABLED",
        "REDIS_ADDRESS",
        "REDIS_PASSWORD",
        "REDIS_DB",
        "REDIS_KEY_PREFIX",
        "REDIS_CACHE_MODE",
        "REDIS_MAX_RETRIES",
        "REDIS_POOL_SIZE",
        "REDIS_MIN_IDLE_CONNS",
        "REDIS_MAX_CONN_AGE",
        "REDIS_POOL_TIMEOUT",
        "REDIS_IDLE_TIMEOUT",
        "REDIS_DIAL_TIMEOUT",
        "REDIS_READ_TIMEOUT",
        "REDIS_WRITE_TIMEOUT",
        "REDIS_CIRCUIT_BREAKER_THRESHOLD",
        "REDIS_CIRCUIT_BREAKER_TIMEOUT",
        "REDIS_TLS_ENABLED",
        "REDIS_TLS_CERT_FILE",
        "REDIS_TLS_KEY_FILE",
        "REDIS_TLS_CA_FILE",
        "REDIS_TLS_INSECURE_SKIP_VERIFY",
    ];
    for name in seed {
        assert!(ENV_VARIABLES.iter().any(|v| v.name == name), "{name} is not read");
    }
}

#[test]
fn the_reference_documents_every_key_and_variable() {
    let reference =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md")).unwrap();
    for line in config::Config::default().effective_lines() {
        let path = line.split(": ").next().unwrap();
        assert!(reference.contains(&format!("`{path}`")), "docs/configuration.md does not document `{path}`");
    }
    for variable in ENV_VARIABLES {
        assert!(reference.contains(variable.name), "docs/configuration.md does not list {}", variable.name);
    }
}
