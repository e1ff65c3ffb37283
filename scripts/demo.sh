#!/usr/bin/env bash
# Runs authgate doing its job: real Envoy on http://127.0.0.1:8000 asks authgate (ext_authz
# gRPC) about every request before passing it to a demo upstream that echoes its headers;
# logins go to a real OpenID Provider (oidc-provider) on http://127.0.0.1:9400.
#   scripts/demo.sh          start everything, print what to try, run until Ctrl-C
#   scripts/demo.sh --check  start, try the requests, stop (exit 1 if a result is wrong)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install-test-deps.sh >/dev/null
cargo build --release --locked --quiet

KEEP_WORK=1
. scripts/lib/processes.sh
logs=$work

python3 examples/echo_upstream.py 8002 >"$logs/upstream.log" 2>&1 &
pids+=($!)
IDP_PORT=9400 node tests/idp/server.mjs >"$logs/idp.log" 2>&1 &
pids+=($!)
target/release/authgate serve --config examples/authgate.yaml >"$logs/authgate.log" 2>&1 &
pids+=($!)
.tools/bin/envoy -c examples/envoy/envoy.yaml --disable-hot-restart --log-level warn >"$logs/envoy.log" 2>&1 &
pids+=($!)

wait_for http://127.0.0.1:9400/.well-known/openid-configuration issuer "the OpenID Provider"
wait_for http://127.0.0.1:9090/readyz ready authgate
wait_for http://127.0.0.1:8001/ready LIVE envoy
wait_for http://127.0.0.1:8002/ path upstream

cat <<TXT
authgate demo is running (logs in $logs):
  Envoy (the app):  http://127.0.0.1:8000
  authgate admin:   http://127.0.0.1:9090/healthz  /readyz  /metrics
  authgate gRPC:    127.0.0.1:9001   (try: .tools/bin/grpcurl -plaintext 127.0.0.1:9001 list)

TXT
cat <<'TXT'
Open http://127.0.0.1:8000/private in a browser and log in as any user name with any
password (alice is in groups admins,staff; bob in staff); the page shows the identity
headers authgate added. Log out at http://127.0.0.1:8000/oauth2/logout.

Or with curl:
  curl -i http://127.0.0.1:8000/public/hello                         # excluded path: 200 from the upstream
  curl -i -H 'X-Forwarded-User: admin' http://127.0.0.1:8000/public/x  # spoofed identity header: removed
  curl -i http://127.0.0.1:8000/private                              # an API call without credentials: 401
  curl -i -H 'Accept: text/html' http://127.0.0.1:8000/private       # a browser: 302 to the login page
  TOKEN=$(curl -s -u authgate-demo:demo-client-secret -d grant_type=client_credentials \
          -d resource=urn:authgate:api -d scope=api http://127.0.0.1:9400/token | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
  curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/private   # bearer JWT: 200
TXT

if [ "${1:-}" = "--check" ]; then
  code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
  ok=true
  [ "$(code http://127.0.0.1:8000/public/hello)" = 200 ] || { echo "demo: /public/hello was not 200" >&2; ok=false; }
  [ "$(code http://127.0.0.1:8000/private)" = 401 ] || { echo "demo: /private was not 401" >&2; ok=false; }
  [ "$(code -H 'Accept: text/html' http://127.0.0.1:8000/private)" = 302 ] || { echo "demo: a browser was not sent to log in" >&2; ok=false; }
  token=$(curl -s -u authgate-demo:demo-client-secret -d grant_type=client_credentials -d resource=urn:authgate:api -d scope=api \
    http://127.0.0.1:9400/token | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
  [ "$(code -H "Authorization: Bearer $token" http://127.0.0.1:8000/private)" = 200 ] || { echo "demo: a bearer token was not accepted" >&2; ok=false; }
  if curl -s -H 'X-Forwarded-User: admin' http://127.0.0.1:8000/public/x | grep -qi 'x-forwarded-user'; then
    echo "demo: spoofed X-Forwarded-User reached the upstream" >&2; ok=false
  fi
  $ok && echo "demo: all checks passed"
  $ok
  exit
fi
echo "Ctrl-C to stop."
wait
