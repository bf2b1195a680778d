#!/usr/bin/env bash
# Fuzzes every parser and the filter itself with cargo fuzz (libFuzzer), FUZZ_SECONDS per
# target (default 60; CI runs 15). Findings land in fuzz/artifacts/<target>/ and fail the run.
#   scripts/fuzz.sh                 every target
#   scripts/fuzz.sh config plan     some of them
#   FUZZ_SECONDS=3600 scripts/fuzz.sh filter
source "$(dirname "$0")/lib.sh"
cd "$ROOT/fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config ingest_body plan snapshot traffic filter)
FUZZ_TARGET_DIR="$CACHE/fuzz-target"

step "Fuzzing toolchain (nightly, cargo-fuzz)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The filter target replays the real module.
[ -f "$CARGO_WASM_DIR/aforo_metering.wasm" ] || (cd "$ROOT" && cargo build --quiet --target wasm32-wasip1 --profile wasm-release -p aforo-proxy-wasm)

# Sanitizer off: the code under test is safe Rust (and the filter runs inside wasmtime), so
# libFuzzer's job is panics, traps, overflows (debug assertions on) and hangs; ASan would
# only slow the 2-core machine down.
FLAGS=(--sanitizer none --debug-assertions --target-dir "$FUZZ_TARGET_DIR")

step "Build the fuzz targets (the first build compiles wasmtime: minutes)"
cargo +nightly fuzz build "${FLAGS[@]}"

failed=()
for t in "${TARGETS[@]}"; do
  step "Fuzz $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="$FUZZ_TARGET_DIR/fuzz-$t.log"
  before=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  if cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' '
    echo "corpus: $(ls "corpus/$t" | wc -l) inputs; findings: 0"
  else
    failed+=("$t")
    tail -40 "$log"
    if [ "$(ls "artifacts/$t" 2>/dev/null | wc -l)" -gt "$before" ]; then
      echo "FINDING in $t: see fuzz/artifacts/$t/ (reproduce: cargo +nightly fuzz run ${FLAGS[*]} $t fuzz/artifacts/$t/<file>)"
    else
      echo "the $t run failed without a finding (a build error?): see $log"
    fi
  fi
done
[ ${#failed[@]} -eq 0 ] || die "fuzzing failed in: ${failed[*]}"
step "Fuzzing found nothing in ${#TARGETS[@]} targets"
