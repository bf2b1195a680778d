#!/usr/bin/env bash
# Builds the core for Node.js (wasm32-unknown-unknown + wasm-bindgen) into
# plugins/aws-lambda/pkg, the directory the Lambda package loads.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
WB_VERSION=0.2.130   # = the wasm-bindgen crate pinned in plugins/aws-lambda/Cargo.toml
rustup target add wasm32-unknown-unknown >/dev/null
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WB_VERSION"; then
  step "Installing wasm-bindgen-cli $WB_VERSION (once; a few minutes)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --quiet
fi
cargo build --quiet --target wasm32-unknown-unknown --profile lambda-release -p aforo-lambda
wasm-bindgen --target nodejs --remove-name-section --remove-producers-section --out-dir "$ROOT/plugins/aws-lambda/pkg" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/lambda-release/aforo_lambda.wasm"
ls -l "$ROOT/plugins/aws-lambda/pkg/aforo_lambda_bg.wasm" | awk '{printf "aforo_lambda_bg.wasm: %s bytes\n", $5}'
