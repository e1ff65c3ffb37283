#!/usr/bin/env bash
# Runs the cache benchmark (benches/cache.rs): the seed's table for memory, redis and
# hybrid mode on a local redis-server, with redis-benchmark as the baseline in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh >/dev/null
cargo bench --locked --bench cache
