#!/usr/bin/env python3
"""Checks examples/istio/: every AuthorizationPolicy against Istio's schema (from the
Istio 1.24 CRDs, made strict: unknown fields are errors), every CUSTOM policy names a
provider the mesh config defines, and the mesh config's extension providers are sound
(no registry ships a schema for it: unique names, one provider kind each, port 1-65535,
service an FQDN, statusOnError an HTTP status, failOpen false). Exits 1 on a problem."""
import pathlib
import re
import sys

import jsonschema
import yaml
from cloudcoil.models.istio.security import v1 as security

root = pathlib.Path(__file__).resolve().parents[2]
istio = root / "examples/istio"


def strict(schema):
    """Unknown fields become errors: every object with properties gets additionalProperties
    false (pydantic's schema allows them)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def main():
    problems = []
    mesh = yaml.safe_load((istio / "mesh-config.yaml").read_text())["meshConfig"]
    providers = {}
    for p in mesh["extensionProviders"]:
        name = p.get("name")
        kinds = [k for k in p if k != "name"]
        if not name or name in providers:
            problems.append(f"provider name missing or repeated: {name!r}")
        if len(kinds) != 1:
            problems.append(f"{name}: exactly one provider kind, got {kinds}")
        providers[name] = p
        grpc = p.get("envoyExtAuthzGrpc")
        if grpc is None:
            continue
        allowed = {"service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck", "clearRouteCache"}
        problems += [f"{name}: unknown field {k}" for k in grpc if k not in allowed]
        if not re.fullmatch(r"([a-z0-9-]+/)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", grpc.get("service", "")):
            problems.append(f"{name}: service {grpc.get('service')!r} is not [namespace/]fqdn")
        if not 1 <= int(grpc.get("port", 0)) <= 65535:
            problems.append(f"{name}: port {grpc.get('port')}")
        if not re.fullmatch(r"[1-5][0-9][0-9]", str(grpc.get("statusOnError", "403"))):
            problems.append(f"{name}: statusOnError {grpc.get('statusOnError')!r} is not an HTTP status")
        if grpc.get("failOpen", False) is not False:
            problems.append(f"{name}: failOpen must be false (an auth server that fails open is a bypass)")
        if not re.fullmatch(r"[0-9.]+(ms|s)", str(grpc.get("timeout", ""))):
            problems.append(f"{name}: set a timeout (Istio's default is 600s)")
    schema = strict(security.AuthorizationPolicy.model_json_schema(by_alias=True))
    validator = jsonschema.Draft202012Validator(schema)
    policies = 0
    for path in sorted(istio.glob("authorizationpolicy-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            policies += 1
            for error in validator.iter_errors(doc):
                problems.append(f"{path.name}: {error.message} at {list(error.path)}")
            if doc["apiVersion"] != "security.istio.io/v1" or doc["kind"] != "AuthorizationPolicy":
                problems.append(f"{path.name}: {doc['apiVersion']} {doc['kind']}")
            spec = doc["spec"]
            if spec.get("action") == "CUSTOM":
                name = spec.get("provider", {}).get("name")
                if name not in providers:
                    problems.append(f"{path.name}: CUSTOM provider {name!r} is not defined in mesh-config.yaml")
    # The validator must catch what it claims to: a typo'd field and a wrong action.
    for broken, what in [({"spec": {"action": "CUSTOM", "provider": {"name": "authgate"}, "rulez": []}}, "unknown field"),
                         ({"spec": {"action": "MAYBE"}}, "wrong action")]:
        doc = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "x"}, **broken}
        if not list(validator.iter_errors(doc)):
            problems.append(f"the schema check does not catch a {what}")
    if problems:
        print("FAIL " + "\nFAIL ".join(problems))
        sys.exit(1)
    print(f"ok   {policies} AuthorizationPolicies valid against Istio's schema (strict), CUSTOM providers defined: {sorted(providers)}")


if __name__ == "__main__":
    main()
