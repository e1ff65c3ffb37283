# Task runner. `make check` is exactly what CI (.ci/run) runs.
.PHONY: check build test fmt lint run deps

check:
	scripts/test.sh

deps:
	scripts/install-test-deps.sh

build:
	cargo build --release --locked

test:
	cargo nextest run

fmt:
	cargo fmt --all

lint:
	cargo clippy --all-targets -- -D warnings

run: build
	target/release/authgate serve --config examples/authgate.yaml
