#!/usr/bin/env bash
# The project's one test command (README, `make check` and CI all run this):
# installs what the tests need, then checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  # Last, so that the run closes on nextest's summary line.
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
