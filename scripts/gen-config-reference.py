#!/usr/bin/env python3
"""Regenerates the key tables of docs/configuration.md from the doc comments in
src/config/mod.rs and the variable table in src/config/env.rs. The prose before the first
table and after the last one is kept. Run after adding or changing a configuration key;
the test `the_reference_documents_every_key_and_variable` fails until you do."""
import re

from config_source import fields, root

env_src = (root / "src/config/env.rs").read_text()
doc_path = root / "docs/configuration.md"
doc = doc_path.read_text()

structs = {
    "Config": "",
    "ForwardAuthConfig": "forwardAuth.",
    "RedisConfig": "redis.",
    "RedisTlsConfig": "redis.tls.",
    "SentinelConfig": "redis.sentinel.",
}
titles = {
    "Config": "Top-level keys",
    "ForwardAuthConfig": "`forwardAuth` (the bridge, new)",
    "RedisConfig": "`redis` (the seed's block, plus `username`, `sentinel`, hybrid and fallback keys)",
    "RedisTlsConfig": "`redis.tls`",
    "SentinelConfig": "`redis.sentinel` (new)",
}
types = {
    "String": "string", "Secret": "secret", "Seconds": "duration", "bool": "bool", "u32": "integer", "u64": "integer",
    "Vec<String>": "list", "Vec<Secret>": "list of secrets", "Option<CacheMode>": "`memory` \\| `redis` \\| `hybrid`",
    "LogLevel": "`trace` \\| `debug` \\| `info` \\| `warn` \\| `error`", "LogFormat": "`text` \\| `json`",
    "Vec<HeaderTemplate>": "list of `{name, value}`",
    "ForwardAuthConvention": "`traefik` \\| `caddy` \\| `nginx`",
}
env = {m.group(2): m.group(1) for m in re.finditer(r'var\(\s*"(\w+)",\s*"([\w.]+)"', env_src)}
tables = []
for name, prefix in structs.items():
    rows = []
    for key, ty, meaning in fields(name):
        key = prefix + key
        if ty not in ("RedisConfig", "RedisTlsConfig", "SentinelConfig", "ForwardAuthConfig"):
            variable = env.get(key)
            rows.append(f"| `{key}` | {types.get(ty, ty)} | {'`' + variable + '`' if variable else '—'} | {meaning} |")
    tables.append(f"## {titles[name]}\n\n| key | type | environment | meaning and default |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")

start = doc.index("## Top-level keys")
end = doc.index("## Other environment variables")
doc_path.write_text(doc[:start] + "\n".join(tables) + "\n" + doc[end:])
