#!/usr/bin/env python3
"""Renders helm/authgate with its default values (plus the three values nothing can
default: providerURL, clientID, the session key) and with every file in
helm/authgate/examples/, and checks each rendering:
  - values.schema.json accepts the values; `helm lint --strict` passes;
  - every manifest validates against the Kubernetes 1.30 schemas, strictly (no unknown
    fields); the prometheus-operator kinds (ServiceMonitor, PrometheusRule) are checked
    for their required fields;
  - the rendered authgate.yaml is accepted by `authgate check-config` (argv[1]);
and that every file in tests/fixtures/helm/ is rejected, with the message its first line
names. Prints one line per check; exits 1 on the first failure."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

root = pathlib.Path(__file__).resolve().parents[2]
chart_dir = root / "helm/authgate"
authgate = sys.argv[1]
KUBERNETES = "1.30.0"
REQUIRED = {"config": {"providerURL": "https://idp.example.com", "clientID": "app"},
            "secrets": {"sessionEncryptionKey": "6b1f0c9e2d4a8b7c3e5f1a0d9c8b7a6e"}}


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values):
    with helm.Chart.load(str(chart_dir)) as chart, helm.Config(namespace="auth", storage_driver="memory") as cfg:
        chart.validate_schema(helm.values_from_yaml(yaml.safe_dump(values)))
        return cfg.install(chart, "authgate", helm.values_from_yaml(yaml.safe_dump(values)), dry_run="client")["manifest"]


def check(name, values):
    manifest = render(values)
    lint = helm.lint(str(chart_dir), helm.values_from_yaml(yaml.safe_dump(values)), strict=True)
    # Severity 1 is information ("icon is recommended"); 2 warnings and 3 errors fail.
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + list(lint.get("errors") or [])
    assert not problems, f"{name}: helm lint --strict: {problems}"
    kinds = []
    for doc in yaml.safe_load_all(manifest):
        if not doc:
            continue
        kind = doc["kind"]
        kinds.append(kind)
        if kind in ("ServiceMonitor", "PrometheusRule"):
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
            spec = doc["spec"]
            if kind == "ServiceMonitor":
                assert spec["endpoints"][0]["port"] == "admin" and spec["selector"]["matchLabels"], spec
            else:
                assert spec["groups"] and all(r.get("alert") and r.get("expr") for g in spec["groups"] for r in g["rules"]), spec
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{name}: {kind} {doc['metadata']['name']}: {error.message} at {list(error.path)}")
        if kind == "ConfigMap" and "authgate.yaml" in doc["data"]:
            config_yaml = doc["data"]["authgate.yaml"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "authgate.yaml")
        pathlib.Path(path).write_text(config_yaml)
        env = dict(os.environ, AUTHGATE_SESSION_ENCRYPTION_KEY="6b1f0c9e2d4a8b7c3e5f1a0d9c8b7a6e", AUTHGATE_CLIENT_SECRET="s")
        result = subprocess.run([authgate, "check-config", "--config", path], capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{name}: authgate check-config refused the rendered config:\n{result.stdout}{result.stderr}\n{config_yaml}"
    print(f"ok   {name}: {len(kinds)} manifests ({', '.join(sorted(set(kinds)))}), lint, strict schemas, check-config")
    return manifest


def main():
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text())
    check("default values", merge(defaults, REQUIRED))
    for example in sorted((chart_dir / "examples").glob("*.yaml")):
        values = yaml.safe_load(example.read_text())
        if not values.get("secrets", {}).get("existingSecret"):
            values = merge(values, {"secrets": REQUIRED["secrets"]})
        check(f"examples/{example.name}", merge(defaults, values))
    for bad in sorted((root / "tests/fixtures/helm").glob("*.yaml")):
        text = bad.read_text()
        expected = text.splitlines()[0].removeprefix("# expect:").strip()
        try:
            render(merge(defaults, yaml.safe_load(text)))
        except helm.HelmError as error:
            assert expected in str(error), f"{bad.name}: rejected, but not for {expected!r}: {error}"
            reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            print(f"ok   {bad.name}: rejected ({reason[-160:]})")
            continue
        raise AssertionError(f"{bad.name}: accepted, but it has a mistake ({expected})")
    # The chart's copies of the shipped alert rules and dashboard are the shipped ones.
    for copy, original in [("files/authgate-alerts.yaml", "deploy/prometheus/authgate-alerts.yaml"),
                           ("files/authgate-dashboard.json", "deploy/grafana/authgate-dashboard.json")]:
        assert (chart_dir / copy).read_bytes() == (root / original).read_bytes(), f"helm/authgate/{copy} differs from {original}"
    print("ok   the chart's alert rules and dashboard are the shipped ones")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAIL {error}")
        sys.exit(1)
