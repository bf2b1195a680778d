#!/usr/bin/env bash
# Sets everything up, then runs every check CI runs: formatting, lints, the wasm builds and
# every test (core, harness, scenarios, real Envoy end to end, the agent, the Node.js Lambda
# package) and a short fuzzing run of every target.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"

step "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "Lints (clippy, warnings are errors; unwrap/expect/panic denied outside tests)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "The core builds for wasm32-wasip1 on its own"
cargo build --quiet -p aforo-core --target wasm32-wasip1 --no-default-features

step "Tests (against the modules as shipped: $WASM_DIR)"
AFORO_WASM_DIR="$WASM_DIR" cargo test --workspace

step "Node tests of the AWS Lambda package (plugins/aws-lambda: npm test)"
(cd "$ROOT/plugins/aws-lambda" && npm test --silent)

step "Fuzzing, a short run of every target (scripts/fuzz.sh; FUZZ_SECONDS=${FUZZ_SECONDS:=15} each)"
FUZZ_SECONDS="$FUZZ_SECONDS" "$ROOT/scripts/fuzz.sh"

step "All checks passed"
