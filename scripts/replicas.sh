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

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

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

wait_for() { # url expected-substring what
  for _ in $(seq 1 400); do
    if curl -fsS "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "replicas: $3 did not start" >&2
  tail -n 20 "$work"/*.log >&2
  exit 1
}
wait_for "http://127.0.0.1:$idp/.well-known/openid-configuration" issuer "the OpenID Provider"
for i in 1 2 3; do wait_for "http://127.0.0.1:$((base + 30 + i))/readyz" ready "authgate replica $i"; done
wait_for "http://127.0.0.1:$admin_envoy/ready" LIVE envoy

echo "three replicas behind Envoy: http://127.0.0.1:$app/private (log in as any user); replicas' admin on :$((base + 31))-:$((base + 33)); logs in $work"

if [ "${1:-}" = "--check" ]; then
  python3 - "$app" "$base" <<'PY'
import http.cookiejar, re, sys, urllib.parse, urllib.request
app, base = int(sys.argv[1]), int(sys.argv[2])
jar = http.cookiejar.CookieJar()
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
def go(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {"Accept": "text/html"})
    try:
        response = opener.open(request)
        return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
# Log in through Envoy, following redirects and the provider's two forms (login, consent).
url, body = f"http://127.0.0.1:{app}/private", None
for _ in range(20):
    status, headers, page = go(url, body)
    body = None
    if status in (301, 302, 303):
        url = urllib.parse.urljoin(url, headers["Location"]); continue
    form = re.search(r'<form[^>]*action="([^"]+)"', page)
    if status == 200 and form and "interaction" in form.group(1):
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
        fields.update({"login": "replica-check", "password": "x"})
        url, body = urllib.parse.urljoin(url, form.group(1)), urllib.parse.urlencode(fields).encode(); continue
    break
assert status == 200 and "x-forwarded-user" in page.lower(), f"login through Envoy ended with {status}: {page[:300]}"
cookie = "; ".join(f"{c.name}={c.value}" for c in jar if c.domain in ("127.0.0.1", "127.0.0.1.local"))
def bridge(i, path="/private"):
    request = urllib.request.Request(f"http://127.0.0.1:{base + 20 + i}/auth", headers={
        "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": f"127.0.0.1:{app}",
        "X-Forwarded-Uri": path, "Accept": "application/json", "Cookie": cookie})
    try:
        return urllib.request.urlopen(request).status
    except urllib.error.HTTPError as e:
        return e.code
assert [bridge(i) for i in (1, 2, 3)] == [200] * 3, "every replica knows the session"
status, _, _ = go(f"http://127.0.0.1:{app}/oauth2/logout", headers={"Sec-Fetch-Site": "same-origin", "Cookie": cookie})
assert status == 302, f"logout answered {status}"
assert [bridge(i) for i in (1, 2, 3)] == [401] * 3, "the logout is felt by every replica"
print("replicas: login through Envoy known to all three replicas; logout felt by all three")
PY
  exit
fi
echo "Ctrl-C to stop."
wait
