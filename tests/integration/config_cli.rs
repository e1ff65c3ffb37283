//! `authgate check-config`, `--version` and `--help`, run as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn authgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run authgate")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config").join(name).display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn three_mistakes_give_three_errors_and_a_failure_exit() {
    let out = authgate(&["check-config", "--config", &fixture("invalid/three_mistakes.yaml")], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(problems.len(), 3, "{stderr}");
    assert!(stderr.contains("invalid configuration (3 problems)"), "{stderr}");
}

#[test]
fn the_environment_shows_in_the_effective_configuration() {
    let out = authgate(&["check-config", "--config", &fixture("seed-example.yaml")], &[("REDIS_ADDRESS", "h:1")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l == "redis.address: h:1"), "{stdout}");
}

#[test]
fn the_effective_configuration_is_shown_even_when_incomplete() {
    let out = authgate(&["check-config"], &[("REDIS_ADDRESS", "h:1")]);
    assert!(!out.status.success());
    assert!(text(&out.stdout).lines().any(|l| l == "redis.address: h:1"));
    assert!(text(&out.stderr).contains("sessionEncryptionKey: required"));
}

#[test]
fn secrets_are_redacted() {
    let key = "a-session-key-that-must-never-be-printed";
    let out = authgate(
        &["check-config", "--config", &fixture("seed-example.yaml")],
        &[("AUTHGATE_SESSION_ENCRYPTION_KEY", key), ("REDIS_PASSWORD", "redis-password-value")],
    );
    assert!(out.status.success());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains(key) && !all.contains("redis-password-value") && !all.contains("your-client-secret"));
    assert!(all.contains("sessionEncryptionKey: <redacted>"));
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let out = authgate(&["check-config"], &[("AUTHGATE_CONFIG", &fixture("seed-example.yaml"))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = authgate(&["check-config", "--config", "/nonexistent/authgate.yaml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/authgate.yaml: cannot read configuration file"));
}

#[test]
fn serve_refuses_an_invalid_configuration() {
    let out = authgate(&["serve", "--config", &fixture("invalid/short_session_key.yaml")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("sessionEncryptionKey: too short"));
}

#[test]
fn version_and_help() {
    let out = authgate(&["--version"], &[]);
    assert_eq!(text(&out.stdout).trim(), format!("authgate {}", env!("CARGO_PKG_VERSION")));
    let help = text(&authgate(&["--help"], &[]).stdout);
    assert!(help.contains("serve") && help.contains("check-config"), "{help}");
}
