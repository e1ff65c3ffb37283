//! The gRPC surface through the real `grpcurl` CLI: reflection, health, Check.

use crate::support::{Authgate, tool};
use std::net::SocketAddr;
use std::process::Command;

/// `grpcurl -plaintext FLAGS ADDR ARGS`: its success and everything it printed.
fn grpcurl(addr: SocketAddr, flags: &[&str], args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("grpcurl"))
        .arg("-plaintext")
        .args(flags)
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("run grpcurl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let authgate = Authgate::builder().start().await;
    let (ok, out) = grpcurl(authgate.grpc, &[], &["list"]);
    assert!(ok, "{out}");
    let services: Vec<&str> = out.lines().collect();
    assert!(services.contains(&"envoy.service.auth.v3.Authorization"), "{out}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{out}");

    let (ok, out) = grpcurl(authgate.grpc, &[], &["describe", "envoy.service.auth.v3.CheckResponse"]);
    assert!(ok && out.contains("denied_response") && out.contains("error_response"), "{out}");
}

#[tokio::test]
async fn health_says_serving() {
    let authgate = Authgate::builder().start().await;
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let request = format!(r#"{{"service":"{service}"}}"#);
        let (ok, out) = grpcurl(authgate.grpc, &["-d", &request], &["grpc.health.v1.Health/Check"]);
        assert!(ok, "{out}");
        assert!(out.contains("\"SERVING\""), "{service:?}: {out}");
    }
}

#[tokio::test]
async fn check_with_json_input_returns_a_decision() {
    let authgate = Authgate::builder().key("excludedURLs", "[/public]").start().await;
    let check = |path: &str| {
        format!(
            r#"{{"attributes":{{"request":{{"http":{{"method":"GET","host":"app.example","scheme":"https","path":"{path}","headers":{{"accept":"application/json"}}}}}}}}}}"#
        )
    };
    let (ok, out) =
        grpcurl(authgate.grpc, &["-d", &check("/public/x")], &["envoy.service.auth.v3.Authorization/Check"]);
    assert!(ok, "{out}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(response["okResponse"].is_object(), "{out}");
    assert!(response["status"].get("code").is_none(), "OK is code 0, omitted in JSON: {out}");

    let (ok, out) = grpcurl(authgate.grpc, &["-d", &check("/private")], &["envoy.service.auth.v3.Authorization/Check"]);
    assert!(ok, "{out}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["status"]["code"], 16, "UNAUTHENTICATED: {out}");
    assert_eq!(response["deniedResponse"]["status"]["code"], "Unauthorized", "{out}");
}

#[tokio::test]
async fn a_check_without_http_attributes_is_denied_clearly() {
    // Istio also installs a TCP ext_authz filter, whose Checks carry no HTTP request.
    let authgate = Authgate::builder().start().await;
    let (ok, out) = grpcurl(authgate.grpc, &["-d", "{}"], &["envoy.service.auth.v3.Authorization/Check"]);
    assert!(ok, "{out}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["status"]["code"], 3, "INVALID_ARGUMENT: {out}");
    assert_eq!(response["status"]["message"], "no_http_attributes");
}
