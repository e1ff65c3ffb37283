#!/usr/bin/env bash
# Whole-Check benchmark with its baselines measured in the same run (BENCHMARKS.md):
#   1. ext_authz Checks sent straight to the server (authgate-checkload: many RPCs in flight
#      over two HTTP/2 connections), authgate per scenario and mode ÷ a do-nothing ext_authz
#      server on the same tonic stack given the same request; bearer tokens never seen
#      before (signature verified on every Check) and back-channel logout tokens (replay
#      claim and marker write) signed for the run with the provider's key;
#   2. HTTP requests through a real Envoy (--concurrency 1, wrk -t1 -c16, answered by Envoy
#      itself so no upstream is measured): no auth filter, Envoy's in-process jwt_authn
#      (RS256, same token, no JWT cache), ext_authz to the do-nothing server, ext_authz to
#      authgate (bearer, and a session in each mode), over TCP and over a Unix socket
#      (`grpcAddress: unix:/path`, Envoy `pipe`);
#   3. memory: authgate's idle RSS.
# Prints one table of ratios. Not part of the test run. Options via environment:
#   DURATION (s, default 5), RUNS (rounds, default 3), CONCURRENCY (in-flight Checks, 64),
#   COLD_TOKENS (tokens signed per cold run, default 25000; the line says if they ran out).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${DURATION:-5} runs=${RUNS:-3} concurrency=${CONCURRENCY:-64} cold_tokens=${COLD_TOKENS:-25000}

scripts/install-test-deps.sh >/dev/null
command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --quiet --features bench-tools --bins
bin=target/release

. scripts/lib/processes.sh

base=${PORT_BASE:-19000}
redis=$((base + 1)) idp=$((base + 2)) null=$((base + 3))
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
mkdir "$work/keys"
uris="" ; for i in 1 2 3 4; do uris+="\"http://127.0.0.1:$((base + 20 + i))/oauth2/callback\","; done
IDP_PORT=$idp IDP_KEY_DIR="$work/keys" IDP_AUDIENCE=authgate-bench IDP_RESOURCE=urn:authgate:api \
IDP_CLIENTS="[{\"client_id\":\"authgate-bench\",\"client_secret\":\"bench-secret\",\"redirect_uris\":[${uris%,}],
  \"grant_types\":[\"authorization_code\",\"refresh_token\",\"client_credentials\"],\"response_types\":[\"code\"],
  \"token_endpoint_auth_method\":\"client_secret_basic\"}]" node tests/idp/server.mjs >"$work/idp.log" 2>&1 &
pids+=($!)
"$bin/authgate-null-authz" "127.0.0.1:$null" >"$work/null.log" 2>&1 &
pids+=($!)
null_pid=$!
"$bin/authgate-null-authz" "unix:$work/null.sock" >"$work/null-unix.log" 2>&1 &
pids+=($!)

modes=(memory redis hybrid)
# A fourth instance, in memory mode, listens on a Unix socket.
instances=(memory redis hybrid unix)
declare -A grpc admin pid http
session_key=$(openssl rand -hex 32)
for i in 1 2 3 4; do
  mode=${instances[$((i - 1))]}
  grpc[$mode]=127.0.0.1:$((base + 10 + i)) admin[$mode]=$((base + 30 + i)) http[$mode]=$((base + 20 + i))
  [ "$mode" = unix ] && grpc[$mode]=unix:$work/authgate.sock
  enabled=false; [ "$mode" = memory ] || [ "$mode" = unix ] || enabled=true
  cat >"$work/$mode.yaml" <<YAML
providerURL: http://127.0.0.1:$idp
clientID: authgate-bench
userIdentifierClaim: sub
forceHTTPS: false
excludedURLs: [/public]
logLevel: warn
callbackURL: http://127.0.0.1:$((base + 20 + i))/oauth2/callback
grpcAddress: ${grpc[$mode]}
httpAddress: 127.0.0.1:$((base + 20 + i))
adminAddress: 127.0.0.1:$((base + 30 + i))
redis:
  enabled: $enabled
  address: 127.0.0.1:$redis
  cacheMode: ${mode/unix/memory}
  keyPrefix: bench-$mode
YAML
  AUTHGATE_CLIENT_SECRET=bench-secret AUTHGATE_SESSION_ENCRYPTION_KEY=$session_key \
    "$bin/authgate" serve --config "$work/$mode.yaml" >"$work/authgate-$mode.log" 2>&1 &
  pids+=($!)
  pid[$mode]=$!
done
wait_for "http://127.0.0.1:$idp/.well-known/openid-configuration" issuer "the provider"
for mode in "${instances[@]}"; do wait_for "http://127.0.0.1:${admin[$mode]}/readyz" ready "authgate ($mode)"; done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid[memory]}/status")

declare -A cookie
for mode in "${instances[@]}"; do
  cookie[$mode]=$(scripts/oidc_login.py "http://127.0.0.1:${http[$mode]}/oauth2/start?rd=/private" "bench-$mode")
done
token=$(curl -fsS -u authgate-bench:bench-secret -d grant_type=client_credentials -d resource=urn:authgate:api -d scope=api \
  "http://127.0.0.1:$idp/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# --- 1. Checks straight to the server --------------------------------------------------
# Every measurement is taken $runs times, in rounds: each round measures every scenario once,
# a scenario next to its baseline, so a ratio is taken from two figures seconds apart (the
# machine's speed drifts by more than the differences measured). Ratios are the median of
# the rounds' ratios; each line shows the scenario's best round.
declare -A rates lines
record() { # label line
  local rate
  rate=$(awk '{for(i=1;i<=NF;i++) if ($i ~ /\/s$/) {sub(/\/s$/,"",$i); print $i; exit}}' <<<"$2")
  rates[$1]="${rates[$1]:-} $rate"
  if [ -z "${lines[$1]:-}" ] || awk -v a="$rate" -v b="$(best_rate "$1")" 'BEGIN{exit !(a>b)}'; then lines[$1]=$2; fi
}
best_rate() { tr ' ' '\n' <<<"${rates[$1]}" | sort -g | tail -1; }
measure() { # label target pid checkload-args…
  local label=$1 target=$2 p=$3; shift 3
  record "$label" "$("$bin/authgate-checkload" --target "$target" --label "$label" --pid "$p" \
    --concurrency "$concurrency" --connections 2 --warmup 1 --duration "$duration" "$@")"
}
best() { # label target pid checkload-args… : one measurement, printed
  measure "$@"
  echo "${lines[$1]}"
}
direct=("null: plain request" "excluded path" "anonymous browser (302)" "null: with a session cookie"
  "session hit, memory" "session hit, redis" "session hit, hybrid" "null: with a bearer token" "bearer JWT, cached")
echo "== Checks straight to the server (median of $runs rounds × ${duration}s, $concurrency in flight over 2 HTTP/2 connections)"
for _ in $(seq 1 "$runs"); do
  # The do-nothing server is given the same request as each scenario it is compared with.
  measure "null: plain request" "127.0.0.1:$null" "$null_pid" --path /public/x
  measure "excluded path" "${grpc[memory]}" "${pid[memory]}" --path /public/x
  measure "anonymous browser (302)" "${grpc[memory]}" "${pid[memory]}" --path /private --header "accept: text/html"
  for mode in "${modes[@]}"; do
    measure "null: with a session cookie" "127.0.0.1:$null" "$null_pid" --path /private --header "cookie: ${cookie[$mode]}"
    measure "session hit, $mode" "${grpc[$mode]}" "${pid[$mode]}" --path /private --header "cookie: ${cookie[$mode]}"
  done
  measure "null: with a bearer token" "127.0.0.1:$null" "$null_pid" --path /private --header "authorization: Bearer $token"
  measure "bearer JWT, cached" "${grpc[memory]}" "${pid[memory]}" --path /private --header "authorization: Bearer $token"
done
for label in "${direct[@]}"; do echo "${lines[$label]}"; done
# Never-seen tokens: every Check verifies a signature and caches the result. One short run
# each (1 s after 0.2 s of warm-up), as every request needs a token signed beforehand and
# signing is slower than verifying (the line says if the pool ran out).
cold() { # label target pid extra-args…
  local label=$1 target=$2 p=$3; shift 3
  local saved_duration=$duration; duration=1
  best "$label" "$target" "$p" --path /private --mint "$cold_tokens" --mint-from "$token" \
    --mint-key "$work/keys/key-1.pem" --warmup 0.2 "$@"
  duration=$saved_duration
}
cold "bearer JWT, cold" "${grpc[memory]}" "${pid[memory]}"
for mode in memory redis; do
  cold "logout-token claim, $mode" "${grpc[$mode]}" "${pid[$mode]}" \
    --backchannel "http://127.0.0.1:${http[$mode]}/backchannel-logout"
done
# Added latency at one connection, one Check at a time.
# Added latency at one connection, one Check at a time: p50 of each, in rounds like the
# rest; the added figure is the median of the rounds' differences. At one connection most
# of a Check's time is the two processes waking up, so single runs swing by tens of µs.
declare -A p50s
one() { # target label checkload-args…
  local line
  line=$("$bin/authgate-checkload" --target "$1" --label "$2" --concurrency 1 --connections 1 --warmup 1 \
    --duration "$duration" "${@:3}")
  record "$2" "$line"
  # "p50 207.2µs" or "p50   1.2ms", in µs.
  p50s[$2]="${p50s[$2]:-} $(awk '{for(i=1;i<=NF;i++) if ($i=="p50") {v=$(i+1); u=v; sub(/[0-9.]+/,"",u); sub(/[^0-9.]+$/,"",v);
    print (u=="ms") ? v*1000 : (u=="s") ? v*1000000 : v; exit}}' <<<"$line")"
}
added() { # scenario baseline: median of the rounds' p50 differences, in µs
  local a b
  read -r -a a <<<"${p50s[$1]}"
  read -r -a b <<<"${p50s[$2]}"
  for k in "${!a[@]}"; do echo "${a[$k]} ${b[$k]}"; done |
    awk '{print $1 - $2}' | sort -g | awk '{r[NR]=$1} END {printf "%+.0f µs", r[int((NR + 1) / 2)]}'
}
echo "-- one Check at a time (added latency; lines: best round)"
for _ in $(seq 1 "$runs"); do
  one "127.0.0.1:$null" "null: with a session cookie, 1" --path /private --header "cookie: ${cookie[memory]}"
  one "${grpc[memory]}" "session hit, memory, 1" --path /private --header "cookie: ${cookie[memory]}"
  one "127.0.0.1:$null" "null: with a bearer token, 1" --path /private --header "authorization: Bearer $token"
  one "${grpc[memory]}" "bearer JWT, cached, 1" --path /private --header "authorization: Bearer $token"
done
for label in "null: with a session cookie, 1" "session hit, memory, 1" "null: with a bearer token, 1" "bearer JWT, cached, 1"; do
  echo "${lines[$label]}"
done

# --- 2. Through Envoy ------------------------------------------------------------------
listener() { # name port filters(yaml, 10 spaces indent)
  cat <<YAML
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
}
ext_authz() { # cluster
  cat <<YAML
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              status_on_error: { code: 503 }
              grpc_service: { envoy_grpc: { cluster_name: $1 }, timeout: 3s }
YAML
}
cluster() { # name address(ip:port|unix:path) http2?
  cat <<YAML
  - name: $1
    type: STATIC
    connect_timeout: 1s
YAML
  [ "$3" = h2 ] && cat <<YAML
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
YAML
  cat <<YAML
    load_assignment:
      cluster_name: $1
      endpoints: [ { lb_endpoints: [ { endpoint: { address: $(endpoint_address "$2") } } ] } ]
YAML
}
endpoint_address() { # ip:port or unix:path, as an Envoy address
  case $1 in
    unix:*) echo "{ pipe: { path: ${1#unix:} } }" ;;
    *) echo "{ socket_address: { address: ${1%:*}, port_value: ${1##*:} } }" ;;
  esac
}
jwt_authn=$(cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                idp:
                  issuer: http://127.0.0.1:$idp
                  audiences: [authgate-bench]
                  remote_jwks:
                    http_uri: { uri: "http://127.0.0.1:$idp/jwks", cluster: idp, timeout: 2s }
                    cache_duration: 600s
              rules: [ { match: { prefix: "/" }, requires: { provider_name: idp } } ]
YAML
)
e=$((base + 40))
{
  echo "admin: { address: { socket_address: { address: 127.0.0.1, port_value: $e } } }"
  echo "static_resources:"
  echo "  listeners:"
  listener none $((e + 1)) ""
  listener jwt_authn $((e + 2)) "$jwt_authn"
  listener noop $((e + 3)) "$(ext_authz noop)"
  listener memory $((e + 4)) "$(ext_authz memory)"
  listener redis $((e + 5)) "$(ext_authz redis)"
  listener hybrid $((e + 6)) "$(ext_authz hybrid)"
  listener noop_unix $((e + 7)) "$(ext_authz noop_unix)"
  listener unix $((e + 8)) "$(ext_authz unix)"
  echo "  clusters:"
  cluster noop "127.0.0.1:$null" h2
  cluster noop_unix "unix:$work/null.sock" h2
  for mode in "${instances[@]}"; do cluster "$mode" "${grpc[$mode]}" h2; done
  cluster idp "127.0.0.1:$idp" h1
} >"$work/envoy.yaml"
.tools/bin/envoy -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level error >"$work/envoy.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$e/ready" LIVE envoy

wrk_measure() { # label port header
  local label=$1 port=$2 header=$3 rate
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$header" "http://127.0.0.1:$port/private")
  [ "$code" = 200 ] || { echo "bench-check: $label answered $code, not 200" >&2; exit 1; }
  rate=$(wrk -t1 -c16 -d"${duration}s" -H "$header" "http://127.0.0.1:$port/private" | awk '/Requests\/sec/ {print $2}')
  record "$label" "$(printf '%-36s %9.0f/s' "$label" "$rate")"
}
through_envoy=("envoy: no auth filter" "envoy: jwt_authn (RS256)" "envoy: ext_authz do-nothing" "envoy: authgate bearer"
  "envoy: authgate session, memory" "envoy: authgate session, redis" "envoy: authgate session, hybrid"
  "envoy unix: ext_authz do-nothing" "envoy unix: authgate bearer" "envoy unix: authgate session, memory")
echo
echo "== Through Envoy (--concurrency 1, wrk -t1 -c16, median of $runs rounds × ${duration}s; lines: best round)"
for _ in $(seq 1 "$runs"); do
  wrk_measure "envoy: no auth filter" $((e + 1)) "authorization: Bearer $token"
  wrk_measure "envoy: jwt_authn (RS256)" $((e + 2)) "authorization: Bearer $token"
  wrk_measure "envoy: ext_authz do-nothing" $((e + 3)) "authorization: Bearer $token"
  wrk_measure "envoy: authgate bearer" $((e + 4)) "authorization: Bearer $token"
  for i in 4 5 6; do
    mode=${modes[$((i - 4))]}
    wrk_measure "envoy: authgate session, $mode" $((e + i)) "cookie: ${cookie[$mode]}"
  done
  # Over a Unix socket: Envoy pipe → grpcAddress: unix:…
  wrk_measure "envoy unix: ext_authz do-nothing" $((e + 7)) "authorization: Bearer $token"
  wrk_measure "envoy unix: authgate bearer" $((e + 8)) "authorization: Bearer $token"
  wrk_measure "envoy unix: authgate session, memory" $((e + 8)) "cookie: ${cookie[unix]}"
done
for label in "${through_envoy[@]}"; do echo "${lines[$label]}"; done

ratio() { # scenario baseline: the median of the rounds' ratios (the k-th baseline measurement
  # that precedes the scenario's k-th; the session baseline is measured once per mode)
  local a b
  read -r -a a <<<"${rates[$1]}"
  read -r -a b <<<"${rates[$2]}"
  local step=$(( ${#b[@]} / ${#a[@]} )) offset=0
  case $1 in "session hit, redis") offset=1 ;; "session hit, hybrid") offset=2 ;; esac
  for k in "${!a[@]}"; do echo "${a[$k]} ${b[$((k * step + offset))]}"; done |
    awk '{print $1 / $2}' | sort -g | awk '{r[NR]=$1} END {printf "%.2f", r[int((NR + 1) / 2)]}'
}
echo
echo "== Ratios (the figure that counts on a shared 2-core machine)"
printf '%-58s %s\n' "scenario" "ratio"
printf '%-58s %s\n' "excluded path ÷ do-nothing server (direct)" "$(ratio "excluded path" "null: plain request")"
printf '%-58s %s\n' "anonymous browser ÷ do-nothing server (direct)" "$(ratio "anonymous browser (302)" "null: plain request")"
for mode in "${modes[@]}"; do
  printf '%-58s %s\n' "session hit, $mode ÷ do-nothing server (direct)" "$(ratio "session hit, $mode" "null: with a session cookie")"
done
printf '%-58s %s\n' "bearer, cached ÷ do-nothing server (direct)" "$(ratio "bearer JWT, cached" "null: with a bearer token")"
printf '%-58s %s\n' "envoy: authgate bearer ÷ ext_authz do-nothing" "$(ratio "envoy: authgate bearer" "envoy: ext_authz do-nothing")"
printf '%-58s %s\n' "envoy: authgate bearer ÷ jwt_authn (in-process)" "$(ratio "envoy: authgate bearer" "envoy: jwt_authn (RS256)")"
for mode in "${modes[@]}"; do
  printf '%-58s %s\n' "envoy: authgate session, $mode ÷ ext_authz do-nothing" "$(ratio "envoy: authgate session, $mode" "envoy: ext_authz do-nothing")"
done
printf '%-58s %s\n' "envoy: ext_authz do-nothing ÷ no auth filter" "$(ratio "envoy: ext_authz do-nothing" "envoy: no auth filter")"
printf '%-58s %s\n' "envoy: ext_authz do-nothing ÷ jwt_authn" "$(ratio "envoy: ext_authz do-nothing" "envoy: jwt_authn (RS256)")"
printf '%-58s %s\n' "envoy unix: do-nothing ÷ do-nothing over TCP" "$(ratio "envoy unix: ext_authz do-nothing" "envoy: ext_authz do-nothing")"
printf '%-58s %s\n' "envoy unix: authgate bearer ÷ ext_authz do-nothing (unix)" "$(ratio "envoy unix: authgate bearer" "envoy unix: ext_authz do-nothing")"
printf '%-58s %s\n' "envoy unix: authgate bearer ÷ jwt_authn (in-process)" "$(ratio "envoy unix: authgate bearer" "envoy: jwt_authn (RS256)")"
printf '%-58s %s\n' "envoy unix: authgate session, memory ÷ do-nothing (unix)" "$(ratio "envoy unix: authgate session, memory" "envoy unix: ext_authz do-nothing")"
printf '%-58s %s\n' "added p50 at one connection: session hit, memory" "$(added "session hit, memory, 1" "null: with a session cookie, 1")"
printf '%-58s %s\n' "added p50 at one connection: bearer JWT, cached" "$(added "bearer JWT, cached, 1" "null: with a bearer token, 1")"
echo
echo "idle RSS of authgate (memory mode, after start-up): $((idle_rss / 1024)) MB"
