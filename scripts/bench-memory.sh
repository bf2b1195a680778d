#!/usr/bin/env bash
# Memory of one filter VM: the real aforo_metering.wasm in the replay harness with an
# entitlement snapshot of CUSTOMERS customers (default 10,000), each with a consumer key and
# two features, then REQUESTS requests spread over every customer. Prints the VM's linear
# memory once configured and at its peak (Wasm memory never shrinks, so the end is the peak).
#
#   scripts/bench-memory.sh            # CUSTOMERS=10000 REQUESTS=100000
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CUSTOMERS="${CUSTOMERS:-10000}"; REQUESTS="${REQUESTS:-100000}"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
ship_modules
cargo build --quiet -p aforo-host-tests --bin aforo-replay
REPLAY="$CARGO_TARGET_DIR/debug/aforo-replay"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench-memory.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK" "$CUSTOMERS" "$REQUESTS" <<'PY'
import hashlib, json, sys
work, n, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
customers, keys = {}, []
for i in range(n):
    customers[f"cust_{i:05d}"] = {"features": {"search": {"quota": 1000000, "window": "month"}, "chat": {}}}
    key = f"ck_bench_{i:05d}_0123456789"
    keys.append({"key_id": f"k{i}", "hash": "sha256:" + hashlib.sha256(key.encode()).hexdigest(),
                 "customer_id": f"cust_{i:05d}"})
config = {"api_key": "sk_live_bench_memory", "product_id": "prod_bench",
          "ingest_url": "http://ingest.aforo.test:8080", "flush_interval_ms": 1000,
          "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}],
          "entitlements": {"customers": customers, "consumer_keys": keys}}
json.dump(config, open(f"{work}/config.json", "w"))
# The same snapshot synced from entitlements_url instead (how production runs it).
json.dump(config["entitlements"], open(f"{work}/snapshot.json", "w"))
synced = {k: v for k, v in config.items() if k != "entitlements"}
synced["entitlements_url"] = "http://ingest.aforo.test:8080/v1/entitlements"
synced["sync_interval_ms"] = 60000
json.dump(synced, open(f"{work}/config-synced.json", "w"))
with open(f"{work}/traffic.jsonl", "w") as f:
    for r in range(requests):
        i = r % n
        f.write(json.dumps({"time": f"2026-03-15T12:{(r // 1000) // 60 % 60:02d}:{(r // 1000) % 60:02d}.{r % 1000:03d}Z",
                            "request": {"path": "/v1/search", "headers": {"x-api-key": f"ck_bench_{i:05d}_0123456789",
                                                                          "x-request-id": f"m-{r}"}}}) + "\n")
print(f"snapshot: {n} customers, {n} consumer keys; config {len(json.dumps(config))} bytes; {requests} requests")
PY
report() {
python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mb = lambda b: f"{b / 1048576:.1f} MiB"
print(f"== {sys.argv[2]}")
print(f"requests: {r['requests']['total']} ({r['requests']['by_decision']})")
print(f"events: received {r['events']['received']}, delivered {r['events']['delivered']}, balanced {r['events']['balanced']}")
print(f"VM linear memory once configured: {mb(r['memory_bytes_configured'])}")
print(f"VM linear memory at peak:         {mb(r['memory_bytes_peak'])}")
PY
}
"$REPLAY" run --module "$WASM_DIR/aforo_metering.wasm" --config "$WORK/config.json" \
  --traffic "$WORK/traffic.jsonl" --format json >"$WORK/report.json"
report "$WORK/report.json" "snapshot inline in the plugin configuration"
"$REPLAY" run --module "$WASM_DIR/aforo_metering.wasm" --config "$WORK/config-synced.json" \
  --snapshot "$WORK/snapshot.json" --traffic "$WORK/traffic.jsonl" --format json >"$WORK/report-synced.json"
report "$WORK/report-synced.json" "snapshot synced from entitlements_url"
