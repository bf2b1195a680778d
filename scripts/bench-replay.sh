#!/usr/bin/env bash
# The replay harness's speed: REQUESTS requests (default 1,000,000) through the real
# aforo_metering.wasm in `aforo-replay run` (release build), on one core: a live key, CUSTOMERS
# customers (default 1,000) each calling with its own consumer key (hashed on every request), a
# monthly quota reserved on every request, one event per request delivered in batches of 100 to
# the simulated ingest, which parses, validates and deduplicates every event. The time includes
# compiling the module. Prints each run's wall time and peak memory, the medians, and requests/s
# against issue #21's target (1,000,000 in 5 s).
#
#   scripts/bench-replay.sh          # REQUESTS=1000000 CUSTOMERS=1000 ROUNDS=3
# OTHER_REPLAY=path/to/aforo-replay adds variant o: the same traffic through another build of the
# harness (an earlier commit's, say), alternating with this one, so two builds are measured side
# by side. OTHER_WASM=path/to/aforo_metering.wasm runs variant o with that module instead (with
# this harness unless OTHER_REPLAY is set too).
# Bounded: ROUNDS × variants runs, each refusing to go on past 600 s.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
REQUESTS="${REQUESTS:-1000000}"; CUSTOMERS="${CUSTOMERS:-1000}"; ROUNDS="${ROUNDS:-3}"
case "$REQUESTS$CUSTOMERS$ROUNDS" in *[!0-9]*) die "REQUESTS, CUSTOMERS and ROUNDS must be whole numbers" ;; esac
[ "$CUSTOMERS" -ge 1 ] && [ "$REQUESTS" -ge "$CUSTOMERS" ] || die "need 1 <= CUSTOMERS <= REQUESTS (got CUSTOMERS=$CUSTOMERS REQUESTS=$REQUESTS)"
[ -z "${OTHER_REPLAY:-}" ] || [ -x "$OTHER_REPLAY" ] || die "OTHER_REPLAY=$OTHER_REPLAY is not an executable aforo-replay"
[ -z "${OTHER_WASM:-}" ] || [ -f "$OTHER_WASM" ] || die "OTHER_WASM=$OTHER_WASM is not a file"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
ship_modules
step "Building the release harness (aforo-replay)"
cargo build --release --quiet -p aforo-host-tests --bin aforo-replay
REPLAY="$CARGO_TARGET_DIR/release/aforo-replay"
WASM="$WASM_DIR/aforo_metering.wasm"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench-replay.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK" "$CUSTOMERS" "$REQUESTS" <<'PY'
import datetime, hashlib, json, sys
work, n, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
customers, keys = {}, []
for i in range(n):
    customers[f"cust_{i:05d}"] = {"features": {"search": {"quota": 10 * requests, "window": "month"}}}
    key = f"ck_bench_{i:05d}_0123456789"
    keys.append({"key_id": f"k{i}", "hash": "sha256:" + hashlib.sha256(key.encode()).hexdigest(),
                 "customer_id": f"cust_{i:05d}"})
config = {"api_key": "sk_live_bench_replay", "product_id": "prod_bench",
          "ingest_url": "http://ingest.aforo.test:8080", "flush_interval_ms": 1000,
          "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}],
          "entitlements": {"customers": customers, "consumer_keys": keys}}
json.dump(config, open(f"{work}/config.json", "w"))
# One line per customer, repeated: every request carries its customer's key and a request id
# of its own. 4 ms apart: 900,000 events an hour, under the production ingest's 1,000,000.
per, extra = divmod(requests, n)
t0 = 1772442000  # 2026-03-02T09:00:00Z
with open(f"{work}/traffic.jsonl", "w") as f:
    at_ms = 0
    for i in range(n):
        count = per + (1 if i < extra else 0)
        s, ms = divmod(at_ms, 1000)
        when = datetime.datetime.fromtimestamp(t0 + s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        f.write(json.dumps({"time": f"{when}.{ms:03d}Z", "repeat": count, "interval_ms": 4,
            "request": {"method": "GET", "path": "/v1/search?q=item-{n}",
                        "headers": {"x-api-key": f"ck_bench_{i:05d}_0123456789", "x-request-id": f"c{i}-{{n}}"}},
            "response": {"status": 200, "body": "{\"hits\": 3}"},
            # Labelled, so the report counts by customer instead of keeping every request.
            "customer": f"cust_{i:05d}"}) + "\n")
        at_ms += 4 * count
PY

variants="t"
[ -z "${OTHER_REPLAY:-}${OTHER_WASM:-}" ] || variants="t o"
step "$REQUESTS requests, $CUSTOMERS customers with consumer keys, $ROUNDS rounds of: $variants"
declare -A secs mem
for round in $(seq 1 "$ROUNDS"); do
  for v in $variants; do
    bin="$REPLAY"; module="$WASM"
    if [ "$v" = o ]; then bin="${OTHER_REPLAY:-$REPLAY}"; module="${OTHER_WASM:-$WASM}"; fi
    timeout 600 /usr/bin/time -f "%e %M" -o "$WORK/time" \
      "$bin" run --module "$module" --config "$WORK/config.json" --traffic "$WORK/traffic.jsonl" \
      --format table --quiet >"$WORK/report.$v" 2>"$WORK/err.$v" \
      || { cat "$WORK/err.$v" >&2; die "variant $v failed in round $round (its report: above)"; }
    read -r s kb <"$WORK/time"
    # Every request allowed and every event delivered once, or the run measured something else.
    grep -q "allowed *$REQUESTS\$" "$WORK/report.$v" \
      && grep -q "received $REQUESTS, delivered $REQUESTS (0 duplicates), rejected 0, dead-lettered 0, buffered 0" "$WORK/report.$v" \
      || { cat "$WORK/report.$v" >&2; die "variant $v in round $round did not allow and deliver all $REQUESTS requests (its report: above)"; }
    printf 'round %s  %s  %7.2f s  %9.0f requests/s  %6.0f MB peak\n' "$round" "$v" "$s" \
      "$(echo "$REQUESTS / $s" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
    secs[$v]+="$s "; mem[$v]+="$kb "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
step "Medians over $ROUNDS rounds (target: 200,000 requests/s, 1,000,000 in 5 s)"
for v in $variants; do
  s=$(echo "${secs[$v]}" | median); kb=$(echo "${mem[$v]}" | median)
  label="t) this build"; [ "$v" = o ] && label="o) ${OTHER_REPLAY:+OTHER_REPLAY}${OTHER_REPLAY:+${OTHER_WASM:+ + }}${OTHER_WASM:+OTHER_WASM}"
  printf '  %-28s %7.2f s  %9.0f requests/s  %6.0f MB peak  %5.2f µs/request\n' "$label" "$s" \
    "$(echo "$REQUESTS / $s" | bc -l)" "$(echo "$kb / 1024" | bc -l)" "$(echo "$s * 1000000 / $REQUESTS" | bc -l)"
done
if [ "$variants" = "t o" ]; then
  t=$(echo "${secs[t]}" | median); o=$(echo "${secs[o]}" | median)
  printf '  t/o  speed %.3f (o time / t time)\n' "$(echo "$o / $t" | bc -l)"
fi
