#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a while (default 30 s each; first argument
# overrides). Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Not part of the test run: a short, repeatable smoke run for the hostile-input entry points.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096 2>&1 | grep -E "^(Done|#[0-9]+ +DONE)|panicked|ERROR|SUMMARY" || true
  if [ -n "$(ls artifacts/"$target" 2>/dev/null)" ]; then
    echo "fuzz: $target found a crash: see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a crash"
