# Shared by the scripts: where things live, and small helpers. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AFORO_CACHE:-$HOME/.cache/aforo-gateway}"
# Builds live outside the clone, so CI on this machine reuses them (wasmtime takes minutes).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
# CI builds each fresh clone once: incremental caches (gigabytes per clone path) only fill the disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
VENV="$CACHE/venv"
export AFORO_ENVOY="${AFORO_ENVOY:-$VENV/bin/envoy}"
export AFORO_CFN_LINT="${AFORO_CFN_LINT:-$VENV/bin/cfn-lint}"
# The proxy-wasm modules cargo builds, and the same modules as shipped (SHIP_DIR): shrunk by
# binaryen's wasm-opt -Oz (same behaviour, about 12% smaller; BENCHMARKS.md). Scripts, examples
# and the test suite run WASM_DIR: AFORO_WASM_DIR when set (read, never written), else these.
CARGO_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip1/wasm-release"
SHIP_DIR="$CACHE/wasm"
WASM_DIR="${AFORO_WASM_DIR:-$SHIP_DIR}"
# The features rustc's wasm32-wasip1 target emits; wasm-opt refuses a module using others.
WASM_OPT_FLAGS=(-Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int)
# Where setup puts Node.js when the machine's is too old for the console's build (Vite needs
# 20.19+; Debian 12 ships 18): first on PATH, so every script and test uses the same node.
NODE_DIR="$CACHE/node/bin"
export PATH="$NODE_DIR:$PATH"
COMPONENT="$CARGO_TARGET_DIR/wasm32-wasip2/wasm-release/aforo_policy.wasm"

# Makes the shipped modules from cargo's, again whenever what they are made from changes: each
# records cargo's bytes (SHA-256), the optimiser's version and its flags. One writer at a time
# (CI clones share the cache), each from a private copy of cargo's module.
ship_modules() {
  command -v wasm-opt >/dev/null || apt_install binaryen
  mkdir -p "$SHIP_DIR"
  (
    flock 9
    for m in aforo_metering aforo_passthrough; do
      src="$CARGO_WASM_DIR/$m.wasm"
      [ -f "$src" ] || die "$src is missing: build it with cargo build --target wasm32-wasip1 --profile wasm-release -p aforo-proxy-wasm -p aforo-passthrough (scripts/setup.sh does)"
      tmp="$SHIP_DIR/.$m.$$"
      cp "$src" "$tmp.in"
      key="$(sha256sum <"$tmp.in" | cut -d' ' -f1) $(wasm-opt --version) ${WASM_OPT_FLAGS[*]}"
      if [ -f "$SHIP_DIR/$m.wasm" ] && [ "$(cat "$SHIP_DIR/$m.wasm.made-from" 2>/dev/null)" = "$key" ]; then
        rm -f "$tmp.in"
        continue
      fi
      wasm-opt "${WASM_OPT_FLAGS[@]}" "$tmp.in" -o "$tmp.out" || { rm -f "$tmp.in" "$tmp.out"; die "wasm-opt could not optimise $src"; }
      echo "$key" >"$tmp.key"
      mv "$tmp.out" "$SHIP_DIR/$m.wasm"
      mv "$tmp.key" "$SHIP_DIR/$m.wasm.made-from"
      rm -f "$tmp.in" "$SHIP_DIR/$m.wasm.source-sha256"
    done
  ) 9>"$SHIP_DIR/.lock"
}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

# Installs Debian packages that are missing (quietly; once).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "Installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The release aforo-agent the benchmarks run: $AFORO_BENCH_AGENT when set (skips the build),
# else built here. Prints its path.
release_agent() {
  if [ -n "${AFORO_BENCH_AGENT:-}" ]; then
    echo "$AFORO_BENCH_AGENT"
  else
    step "Release build of aforo-agent (the first one takes ~10 minutes on 2 cores)" >&2
    cargo build --release --quiet -p aforo-agent >&2
    echo "$CARGO_TARGET_DIR/release/aforo-agent"
  fi
}
