#!/usr/bin/env bash
# Sets everything up, then runs every check CI runs: formatting, lints, the wasm builds and
# every test (core, harness, scenarios, real Envoy end to end).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"

step "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "Lints (clippy, warnings are errors; unwrap/expect/panic denied outside tests)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "The core builds for wasm32-wasip1 on its own"
cargo build --quiet -p aforo-core --target wasm32-wasip1 --no-default-features

step "Tests"
cargo test --workspace

step "All checks passed"
