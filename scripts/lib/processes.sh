# Sourced by the scripts that run several processes (demo.sh, replicas.sh,
# bench-check.sh): `$work` holds their files and logs, every PID added to `pids` is stopped
# on exit, and `wait_for URL SUBSTRING WHAT` waits until URL answers with SUBSTRING.
# KEEP_WORK=1 keeps `$work` (the demo prints where its logs are).
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM
wait_for() { # url expected-substring what
  for _ in $(seq 1 400); do
    if curl -fsS "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "$(basename "$0"): $3 did not start; logs in $work" >&2
  tail -n 20 "$work"/*.log >&2
  exit 1
}
