#!/usr/bin/env bash
# The agent under load on loopback (release build): /v1/canAccess latency (p50 / p99 with wrk)
# and durable ingest throughput (POST /v1/events, batches of 100 unique events, each batch
# fsynced before its 202).
#
#   scripts/bench-agent.sh            # DURATION=10 CONNECTIONS=16 by default
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
DURATION="${DURATION:-10}"; CONNECTIONS="${CONNECTIONS:-16}"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
apt_install wrk
step "Release build of aforo-agent (the first one takes ~10 minutes on 2 cores)"
cargo build --release --quiet -p aforo-agent
AGENT="$CARGO_TARGET_DIR/release/aforo-agent"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench-agent.XXXXXX")"
PID=""
cleanup() { local s=$?; trap - EXIT; [ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$WORK"; exit "$s"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

cat >"$WORK/catalog.json" <<'EOF'
{"customers": {"bench": {"features": {"search": {"metric": "api_calls", "quota": 1000000000000}}}},
 "consumer_keys": [{"key_id": "bench", "key": "ck_bench_load", "customer_id": "bench"}]}
EOF
"$AGENT" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --environments production \
  --catalog "$WORK/catalog.json" --component "$COMPONENT" --production-events-per-hour 100000000000 \
  >"$WORK/agent.log" 2>&1 &
PID=$!
for ((i = 0; i < 300; i++)); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break; sleep 0.1; done

cat >"$WORK/access.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench_gateway"
wrk.body = '{"apiKey": "ck_bench_load", "featureKey": "search", "clientIp": "10.1.2.3"}'
EOF
cat >"$WORK/events.lua" <<'EOF'
-- Each request: a batch of 100 events with ids unique across threads and requests.
local counter = 0
local thread_id = 0
local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
function init(args)
  tid = tid or 0
end
function request()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format('{"id":"bench-%d-%d-%d","customer_id":"bench","metric":"api_calls","quantity":1,"timestamp":"%s","product_id":"p","environment":"production"}', tid, counter, i, ts)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sk_live_bench_gateway"}, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
EOF

step "POST /v1/canAccess: ${DURATION}s, $CONNECTIONS connections"
wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/access.lua" "http://127.0.0.1:$PORT/v1/canAccess" >/dev/null
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/access.lua" "http://127.0.0.1:$PORT/v1/canAccess" |
  grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors" || true

step "POST /v1/events (durable ingest, batches of 100): ${DURATION}s, $CONNECTIONS connections"
out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/events.lua" "http://127.0.0.1:$PORT/v1/events")
grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors" <<<"$out" || true
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
stored=$(curl -fsS -H "Authorization: Bearer sk_live_bench_gateway" "http://127.0.0.1:$PORT/v1/usage" |
  python3 -c 'import json,sys; print(sum(int(r["events"]) for r in json.load(sys.stdin)["usage"]))')
python3 -c "print('durable ingest: %.0f events/s (%s batches/s x 100); events stored: %s' % ($rps * 100, '$rps', '$stored'))"
