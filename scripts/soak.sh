#!/usr/bin/env bash
# The soak: mixed traffic over three replicas (hybrid mode) behind a balanced Envoy, with
# a Redis fault every two minutes, for AUTHGATE_SOAK_MINUTES (default 15). Prints errors,
# p99 and each replica's RSS per minute, then the figures of each fault. Not part of the
# default test run. Results are recorded in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh >/dev/null
export AUTHGATE_SOAK_MINUTES="${AUTHGATE_SOAK_MINUTES:-15}"
exec cargo nextest run --locked --run-ignored only --no-capture -E 'test(=soak::soak)' "$@"
