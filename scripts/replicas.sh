#!/usr/bin/env bash
# examples/compose/compose.yaml as local processes, no Docker: three authgate replicas in
# hybrid mode sharing a password-protected redis-server, a real Envoy round-robining Checks
# over them (examples/envoy/envoy.yaml with three endpoints), the test OpenID Provider and
# an echo upstream.
#   scripts/replicas.sh          start everything, print the URLs, run until Ctrl-C
#   scripts/replicas.sh --check  start, log in through Envoy, check every replica knows the
#                                session and that a logout is felt by all, stop (exit 1 if not)
# Environment: AUTHGATE_BIN (default: a release build), PORT_BASE (default 18000; the
# processes use PORT_BASE..PORT_BASE+40).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install-test-deps.sh >/dev/null
bin=${AUTHGATE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin=target/release/authgate
fi
base=${PORT_BASE:-18000}
app=$base admin_envoy=$((base + 1)) upstream=$((base + 2)) idp=$((base + 3)) redis=$((base + 4))
password=$(openssl rand -hex 16)
session_key=$(openssl rand -hex 32)

. scripts/lib/processes.sh

redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no --requirepass "$password" \
  --maxmemory 256mb --maxmemory-policy volatile-lru >"$work/redis.log" 2>&1 &
pids+=($!)
python3 examples/echo_upstream.py "$upstream" >"$work/upstream.log" 2>&1 &
pids+=($!)
IDP_PORT=$idp IDP_CLIENTS="[{\"client_id\":\"authgate-demo\",\"client_secret\":\"demo-client-secret\",
  \"redirect_uris\":[\"http://127.0.0.1:$app/oauth2/callback\"],\"post_logout_redirect_uris\":[\"http://127.0.0.1:$app/\"],
  \"grant_types\":[\"authorization_code\",\"refresh_token\",\"client_credentials\"],\"response_types\":[\"code\"],
  \"token_endpoint_auth_method\":\"client_secret_basic\"}]" node tests/idp/server.mjs >"$work/idp.log" 2>&1 &
pids+=($!)

endpoints=""
for i in 1 2 3; do
  cat >"$work/authgate-$i.yaml" <<YAML
providerURL: http://127.0.0.1:$idp
clientID: authgate-demo
userIdentifierClaim: sub
forceHTTPS: false
excludedURLs: [/public]
grpcAddress: 127.0.0.1:$((base + 10 + i))
httpAddress: 127.0.0.1:$((base + 20 + i))
adminAddress: 127.0.0.1:$((base + 30 + i))
redis:
  enabled: true
  address: 127.0.0.1:$redis
  cacheMode: hybrid
YAML
  AUTHGATE_CLIENT_SECRET=demo-client-secret AUTHGATE_SESSION_ENCRYPTION_KEY=$session_key REDIS_PASSWORD=$password \
    "$bin" serve --config "$work/authgate-$i.yaml" >"$work/authgate-$i.log" 2>&1 &
  pids+=($!)
  endpoints+="        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $((base + 10 + i)) } } }\n"
done
# The shipped Envoy example, on these ports and with the three replicas.
python3 - "$work/envoy.yaml" "$app" "$admin_envoy" "$upstream" "$endpoints" <<'PY'
import sys
out, app, admin, upstream, endpoints = sys.argv[1:]
config = open("examples/envoy/envoy.yaml").read()
for example, ours in [("port_value: 8001 }", f"port_value: {admin} }}"), ("port_value: 8000 }", f"port_value: {app} }}"),
                      ("port_value: 8002 }", f"port_value: {upstream} }}"),
                      ("        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9001 } } }\n",
                       endpoints.replace("\\n", "\n"))]:
    assert config.count(example) == 1, example
    config = config.replace(example, ours)
open(out, "w").write(config)
PY
.tools/bin/envoy -c "$work/envoy.yaml" --disable-hot-restart --log-level warn >"$work/envoy.log" 2>&1 &
pids+=($!)

wait_for "http://127.0.0.1:$idp/.well-known/openid-configuration" issuer "the OpenID Provider"
for i in 1 2 3; do wait_for "http://127.0.0.1:$((base + 30 + i))/readyz" ready "authgate replica $i"; done
wait_for "http://127.0.0.1:$admin_envoy/ready" LIVE envoy

echo "three replicas behind Envoy: http://127.0.0.1:$app/private (log in as any user); replicas' admin on :$((base + 31))-:$((base + 33)); logs in $work"

if [ "${1:-}" = "--check" ]; then
  # Log in through Envoy (the login's own requests land on different replicas).
  cookie=$(scripts/oidc_login.py "http://127.0.0.1:$app/private" replica-check)
  through_envoy=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H "Cookie: $cookie" "http://127.0.0.1:$app/private")
  [ "$through_envoy" = 200 ] || { echo "replicas: the session was refused through Envoy ($through_envoy)" >&2; exit 1; }
  bridge() { # replica → the status its forward-auth bridge answers for the session
    curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Proto: http' \
      -H "X-Forwarded-Host: 127.0.0.1:$app" -H 'X-Forwarded-Uri: /private' -H 'Accept: application/json' \
      -H "Cookie: $cookie" "http://127.0.0.1:$((base + 20 + $1))/auth"
  }
  statuses() { echo "$(bridge 1) $(bridge 2) $(bridge 3)"; }
  [ "$(statuses)" = "200 200 200" ] || { echo "replicas: not every replica knows the session: $(statuses)" >&2; exit 1; }
  logout=$(curl -s -o /dev/null -w '%{http_code}' -H 'Sec-Fetch-Site: same-origin' -H "Cookie: $cookie" "http://127.0.0.1:$app/oauth2/logout")
  [ "$logout" = 302 ] || { echo "replicas: logout answered $logout" >&2; exit 1; }
  [ "$(statuses)" = "401 401 401" ] || { echo "replicas: the logout was not felt by every replica: $(statuses)" >&2; exit 1; }
  echo "replicas: login through Envoy known to all three replicas; logout felt by all three"
  exit
fi
echo "Ctrl-C to stop."
wait
