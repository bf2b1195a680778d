#!/usr/bin/env bash
# What each part of the proxy-wasm module costs: builds aforo_metering.wasm (cargo's, and as
# shipped after wasm-opt) and once more with its names kept (into a separate target directory,
# so the other build is untouched), then adds up twiggy's per-function sizes by crate (and by
# module of aforo-core). The named build's functions are cargo's module's code, byte for byte
# (only names and debug sections are extra); wasm-opt then shrinks all of it by about 12%.
#
#   scripts/module-size.sh          # needs twiggy: installed with cargo when missing
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
if ! command -v twiggy >/dev/null; then
  step "Installing twiggy (a Wasm size profiler) with cargo"
  cargo install --locked --quiet twiggy
fi
step "The module, from cargo and as shipped"
cargo build --quiet --target wasm32-wasip1 --profile wasm-release -p aforo-proxy-wasm -p aforo-passthrough
ship_modules
printf '%s: %d bytes (wasm-opt -Oz)\n' "$SHIP_DIR/aforo_metering.wasm" "$(stat -c %s "$SHIP_DIR/aforo_metering.wasm")"
printf '%s: %d bytes (cargo)\n' "$CARGO_WASM_DIR/aforo_metering.wasm" "$(stat -c %s "$CARGO_WASM_DIR/aforo_metering.wasm")"

step "The same module with its names kept, by crate"
NAMED_TARGET="$CACHE/target-named"
CARGO_TARGET_DIR="$NAMED_TARGET" cargo build --quiet --target wasm32-wasip1 --profile wasm-release \
  --config 'profile.wasm-release.strip=false' -p aforo-proxy-wasm
named="$NAMED_TARGET/wasm32-wasip1/wasm-release/aforo_metering.wasm"
twiggy top -f csv "$named" | python3 -c '
import csv, re, sys, collections
parts = collections.Counter()
for row in csv.DictReader(sys.stdin):
    name, size = row["Name"], int(row["ShallowSize"])
    if name.startswith("custom section") or "subsection" in name:
        continue  # names and debug info: not in the shipped module
    if name.startswith("data segment"):
        parts["data (string literals, tables, the option table)"] += size
        continue
    if name.startswith(("proxy_on_", "proxy_abi_")):
        # The ABI callbacks (plugins/proxy-wasm/src/abi/exports.rs), with the adapter and
        # core code the linker inlined into them.
        parts["proxy_on_* callbacks (with code inlined into them)"] += size
        continue
    if name in ("dlmalloc", "dlfree", "realloc", "dispose_chunk", "prepend_alloc", "malloc", "free",
                "calloc", "aligned_alloc", "posix_memalign", "sbrk", "memcpy", "memmove", "memset",
                "memcmp", "strlen"):
        parts["wasi-libc (its allocator and memory functions)"] += size
        continue
    segments = re.findall(r"([a-z_][a-z0-9_]*)::", name)
    own = [s for s in segments if s not in ("core", "alloc", "std", "impl")]
    if own:
        part = own[0]
    elif segments:
        part = "Rust standard library (" + segments[0] + ")"
    else:
        part = "unnamed (types, imports, exports, tables, small functions)"
    if part == "aforo_core":
        m = re.search(r"aforo_core::([a-z_]+)", name)
        part = "aforo_core::" + (m.group(1) if m else "?")
    elif part in ("fmt", "iter", "str", "collections", "ptr", "sys", "panicking", "raw_vec", "vec",
                  "string", "hash", "io", "env", "slice", "ops", "rc", "int", "unicode", "panic",
                  "num", "cell", "option", "result", "mem", "char", "array", "sync", "fs", "path",
                  "ffi", "time", "cmp", "borrow", "boxed", "thread", "error", "any", "convert",
                  "process", "os", "intrinsics", "hint", "task", "future", "marker", "default",
                  "clone", "primitive_docs", "f64", "f32", "net"):
        part = "Rust standard library (" + part + ")"
    parts[part] += size
std_total = sum(v for k, v in parts.items() if k.startswith("Rust standard library"))
merged = collections.Counter({k: v for k, v in parts.items() if not k.startswith("Rust standard library")})
merged["Rust standard library (formatting, collections, strings, panics, ...)"] = std_total
total = sum(merged.values())
print("%10s %7s  %s" % ("bytes", "share", "part"))
for part, size in merged.most_common():
    print("%10d %6.1f%%  %s" % (size, 100.0 * size / total, part))
print("%10d %6.1f%%  %s" % (total, 100.0, "code and data (the shipped module adds its section headers)"))
'
