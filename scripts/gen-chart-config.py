#!/usr/bin/env python3
"""Regenerates, from the doc comments and types in src/config/mod.rs (the same source as
docs/configuration.md):
  - the `config:` block of helm/authgate/values.yaml (between its BEGIN/END markers):
    every configuration key, commented with its documentation;
  - the `config` part of helm/authgate/values.schema.json: every key typed, unknown keys
    rejected, secrets refused there (they belong in the chart's Secret).
Run after adding or changing a configuration key; the chart test (which runs this with
--check: exit 1 if a file would change) fails until you do."""
import json
import sys
import textwrap

from config_source import fields, root
values_path = root / "helm/authgate/values.yaml"
schema_path = root / "helm/authgate/values.schema.json"

# Nested blocks and where they sit.
structs = {"Config": [], "ForwardAuthConfig": ["forwardAuth"], "RedisConfig": ["redis"],
           "RedisTlsConfig": ["redis", "tls"], "SentinelConfig": ["redis", "sentinel"]}
nested = {"RedisConfig": "redis", "RedisTlsConfig": "tls", "SentinelConfig": "sentinel",
          "ForwardAuthConfig": "forwardAuth"}
duration = {"type": ["string", "number"], "description": "seconds, or a string such as 500ms, 1m"}
types = {
    "String": {"type": "string"}, "Seconds": duration, "bool": {"type": "boolean"},
    "u32": {"type": "integer", "minimum": 0}, "u64": {"type": "integer", "minimum": 0},
    "Vec<String>": {"type": "array", "items": {"type": "string"}},
    "Option<CacheMode>": {"enum": ["memory", "redis", "hybrid"]},
    "LogLevel": {"enum": ["trace", "debug", "info", "warn", "error"]},
    "LogFormat": {"enum": ["text", "json"]},
    "ForwardAuthConvention": {"enum": ["traefik", "caddy", "nginx"]},
    "Vec<HeaderTemplate>": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
}
# Secrets come from the chart's Secret (environment variables), never from the ConfigMap.
secret_types = {"Secret", "Vec<Secret>"}
# Listener addresses come from the chart's `ports`.
chart_owned = {"grpcAddress", "httpAddress", "adminAddress"}


def schema_of(struct):
    properties = {}
    for key, ty, doc in fields(struct):
        if ty in secret_types or (struct == "Config" and key in chart_owned):
            continue
        if ty in nested:
            properties[key] = schema_of(ty)
        else:
            properties[key] = dict(types[ty], description=doc) if "description" not in types[ty] else dict(types[ty])
    return {"type": "object", "additionalProperties": False, "properties": properties}


def yaml_of(struct, indent):
    pad = " " * indent
    out = []
    for key, ty, doc in fields(struct):
        if struct == "Config" and key in chart_owned:
            continue
        wrapped = textwrap.wrap(doc, 96 - indent, break_on_hyphens=False, break_long_words=False)
        if ty in secret_types:
            out.append(f"{pad}# {key}: set it in `secrets` (a Secret), not here.")
            continue
        out.extend(f"{pad}# {w}" for w in wrapped)
        if ty in nested:
            out.append(f"{pad}{key}:")
            out.extend(yaml_of(ty, indent + 2))
        elif struct == "Config" and key in ("providerURL", "clientID"):
            out.append(f'{pad}{key}: ""')
        else:
            out.append(f"{pad}# {key}:")
    if not any(not l.lstrip().startswith("#") for l in out):
        # An all-commented block still needs a value: an empty mapping.
        out.append(f"{pad}{{}}")
    return out


config_yaml = "\n".join(["config:"] + yaml_of("Config", 2))
values = values_path.read_text()
begin, end = "# BEGIN config (scripts/gen-chart-config.py)", "# END config"
start, stop = values.index(begin) + len(begin), values.index(end)
new_values = values[:start] + "\n" + config_yaml + "\n" + values[stop:]

schema = json.loads(schema_path.read_text())
schema["properties"]["config"] = schema_of("Config")
schema["properties"]["config"]["required"] = ["providerURL", "clientID"]
new_schema = json.dumps(schema, indent=2) + "\n"

if "--check" in sys.argv:
    stale = [p.name for p, new in [(values_path, new_values), (schema_path, new_schema)] if p.read_text() != new]
    if stale:
        print(f"stale: {', '.join(stale)}: run scripts/gen-chart-config.py")
        sys.exit(1)
else:
    values_path.write_text(new_values)
    schema_path.write_text(new_schema)
