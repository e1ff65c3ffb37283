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
}

/// The Istio examples: AuthorizationPolicies valid against Istio's schema (strict), every
/// CUSTOM policy naming a provider of the mesh config, and the provider entry sound.
#[test]
fn the_istio_examples_validate_and_name_a_defined_provider() {
    let out = run_ok(venv("python"), &["tests/deploy/check_istio.py"]);
    assert!(out.contains("CUSTOM providers defined: ['authgate']"), "{out}");
}

/// Every Envoy configuration shipped or reproduced here passes `envoy --mode validate`.
/// (examples/envoy/envoy.yaml is also what every end-to-end test runs.)
#[test]
fn the_envoy_configurations_pass_envoy_validate() {
    for path in ["examples/envoy/envoy.yaml", "tests/fixtures/envoy/istio-custom-policy.yaml"] {
        let out = run_ok(tool("envoy"), &["--mode", "validate", "-c", path, "--log-level", "error"]);
        assert!(out.contains("OK"), "{path}: {out}");
    }
}

fn checks_so_far(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("authgate_check_requests_total{") && l.contains("transport=\"grpc\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The filter chain Istio generates for a CUSTOM policy, in a real Envoy: requests the
/// policy matches reach authgate (and are protected), the others (its `notPaths`) go to
/// the upstream without a Check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_custom_policy_sends_only_matched_requests_to_authgate() {
    let authgate = crate::support::Authgate::builder().start().await;
    let upstream = crate::support::EchoUpstream::start().await;
    let listener = crate::support::free_port();
    let config = crate::support::Envoy::example_config(
        "tests/fixtures/envoy/istio-custom-policy.yaml",
        listener,
        crate::support::free_port(),
        &[authgate.grpc],
        upstream.addr,
    );
    let envoy = crate::support::Envoy::start_config(&config).await;
    let client = reqwest::Client::new();
    let metrics = format!("http://{}/metrics", authgate.admin);
    let checks = async || checks_so_far(&reqwest::get(&metrics).await.unwrap().text().await.unwrap());

    let before = checks().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = client.get(envoy.url(path)).header("accept", "application/json").send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is not matched by the policy: straight to the upstream");
        let echoed: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echoed["path"], path);
    }
    assert_eq!(checks().await, before, "no Check for the policy's notPaths");

    for path in ["/private", "/api/orders", "/healthz/deeper"] {
        let response = client.get(envoy.url(path)).header("accept", "application/json").send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} is matched: authgate decides\n{}", authgate.logs());
        assert!(response.headers().contains_key("www-authenticate"));
    }
    assert_eq!(checks().await, before + 3.0, "one Check per matched request");
}

/// The Compose example parses against the Compose specification's schema and its Envoy
/// configuration passes `envoy --mode validate` (Docker cannot run here); the same
/// topology as local processes (scripts/replicas.sh) logs a user in through Envoy, every
/// replica knows the session, and a logout is felt by all three.
#[test]
fn the_compose_topology_validates_and_runs_as_local_processes() {
    run_ok(venv("check-jsonschema"), &["--builtin-schema", "vendor.compose-spec", "examples/compose/compose.yaml"]);
    run_ok(tool("envoy"), &["--mode", "validate", "-c", "examples/compose/envoy.yaml", "--log-level", "error"]);
    // Ports below the ephemeral range (no outgoing connection takes them) and above those
    // `free_port` draws from and their Cluster bus ports (no other test's server takes them).
    let base = 32_000 + 50 * fastrand::u16(..14);
    let out = Command::new(repo_root().join("scripts/replicas.sh"))
        .arg("--check")
        .env("AUTHGATE_BIN", env!("CARGO_BIN_EXE_authgate"))
        .env("PORT_BASE", base.to_string())
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("known to all three replicas; logout felt by all three"), "{text}");
}
