#!/usr/bin/env bash
# The agent under load on loopback (release build), with each state backend: embedded (this
# node's memory) and Redis (a local redis-server started with deploy-examples/multi-node/
# redis.conf). Measures /v1/canAccess (a quota check; and a reservation of 1 unit, a
# compare-and-swap on one hot counter) with wrk (req/s, p50, p99), and durable ingest
# (POST /v1/events, batches of 100 unique events, each batch fsynced, and with Redis claimed,
# before its 202); then prints Redis against embedded. The `leases` backend is Redis with
# max_overshoot 0: reservations are spent from quota leases, not one compare-and-swap each.
#
#   scripts/bench-agent.sh                    # DURATION=10 CONNECTIONS=16 BACKENDS="embedded redis leases"
#   AFORO_BENCH_AGENT=path/to/aforo-agent …   # skips the release build
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
DURATION="${DURATION:-10}"; CONNECTIONS="${CONNECTIONS:-16}"; BACKENDS="${BACKENDS:-embedded redis leases}"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
apt_install wrk redis-server
AGENT="$(release_agent)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench-agent.XXXXXX")"
PID=""; RPID=""
cleanup() {
  local s=$?; trap - EXIT
  for p in $PID $RPID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"; exit "$s"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

cat >"$WORK/catalog.json" <<'EOF'
{"customers": {"bench": {"features": {"search": {"metric": "api_calls", "quota": 1000000000000}}}},
 "consumer_keys": [{"key_id": "bench", "key": "ck_bench_load", "customer_id": "bench"}]}
EOF
cat >"$WORK/access.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench_gateway"
wrk.body = '{"apiKey": "ck_bench_load", "featureKey": "search", "clientIp": "10.1.2.3"}'
EOF
cat >"$WORK/reserve.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench_gateway"
wrk.body = '{"apiKey": "ck_bench_load", "featureKey": "search", "quantity": 1}'
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

# A wrk latency figure ("371.00us", "1.62ms", "2.01s") in milliseconds.
to_ms() { python3 -c 'import sys; t=sys.argv[1]; n=t.rstrip("usm"); print(float(n)*{"us":1e-3,"ms":1.0,"s":1e3}[t[len(n):]])' "$1"; }

declare -A R
# wrk_run NAME SCRIPT PATH: prints wrk's summary, keeps req/s, p50 and p99 (ms) in R[NAME.*].
wrk_run() {
  local name=$1 script=$2 path=$3 out
  wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/$script" "http://127.0.0.1:$PORT$path" >/dev/null
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/$script" "http://127.0.0.1:$PORT$path")
  grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors" <<<"$out" || true
  R[$name.rps]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  R[$name.p50]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  R[$name.p99]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
}

for backend in $BACKENDS; do
  PORT=$(free_port)
  extra=()
  if [ "$backend" = redis ] || [ "$backend" = leases ]; then
    RPORT=$(free_port)
    mkdir -p "$WORK/redis-$backend"
    redis-server deploy-examples/multi-node/redis.conf --bind 127.0.0.1 --port "$RPORT" \
      --dir "$WORK/redis-$backend" --daemonize no >"$WORK/redis-$backend.log" 2>&1 &
    RPID=$!
    extra=(--config deploy-examples/multi-node/agent.json --node-id bench
      --state "redis://aforo:change-me-to-a-long-random-secret@127.0.0.1:$RPORT")
    [ "$backend" = leases ] && extra+=(--max-overshoot 0)
  elif [ "$backend" != embedded ]; then
    die "unknown backend $backend (BACKENDS takes embedded, redis and leases)"
  fi
  "$AGENT" "${extra[@]}" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data-$backend" \
    --environments production --catalog "$WORK/catalog.json" --component "$COMPONENT" \
    --production-events-per-hour 100000000000 >"$WORK/agent-$backend.log" 2>&1 &
  PID=$!
  for ((i = 0; i < 300; i++)); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break; sleep 0.1; done
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" || die "the agent did not start: $(cat "$WORK/agent-$backend.log")"
  step "[$backend] POST /v1/canAccess, quota check: ${DURATION}s, $CONNECTIONS connections"
  wrk_run "$backend.check" access.lua /v1/canAccess
  step "[$backend] POST /v1/canAccess, reserving 1 unit (one hot counter): ${DURATION}s, $CONNECTIONS connections"
  wrk_run "$backend.reserve" reserve.lua /v1/canAccess
  step "[$backend] POST /v1/events (durable ingest, batches of 100): ${DURATION}s, $CONNECTIONS connections"
  wrk_run "$backend.ingest" events.lua /v1/events
  stored=$(curl -fsS -H "Authorization: Bearer sk_live_bench_gateway" "http://127.0.0.1:$PORT/v1/usage" |
    python3 -c 'import json,sys; print(sum(int(r["events"]) for r in json.load(sys.stdin)["usage"]))')
  python3 -c "print('[$backend] durable ingest: %.0f events/s; events stored: %s' % (${R[$backend.ingest.rps]} * 100, '$stored'))"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  if [ -n "$RPID" ]; then kill "$RPID"; wait "$RPID" 2>/dev/null || true; RPID=""; fi
done

for other in redis leases; do
  [[ " $BACKENDS " == *" embedded "* && " $BACKENDS " == *" $other "* ]] || continue
  step "$other against embedded ($CONNECTIONS connections)"
  for t in check reserve ingest; do
    python3 - "$t" "$other" "${R[embedded.$t.rps]}" "${R[$other.$t.rps]}" "${R[embedded.$t.p50]}" \
      "${R[$other.$t.p50]}" "${R[embedded.$t.p99]}" "${R[$other.$t.p99]}" <<'PY'
import sys
t, other = sys.argv[1:3]
er, rr, e50, r50, e99, r99 = map(float, sys.argv[3:])
mult, unit = (100, "events/s") if t == "ingest" else (1, "decisions/s")
print(f"{t:8s} embedded {er*mult:8.0f} {unit}, {other} {rr*mult:8.0f} ({rr/er:.2f}x); "
      f"p50 {e50:.3f} -> {r50:.3f} ms (+{r50-e50:.3f}); p99 {e99:.3f} -> {r99:.3f} ms (+{r99-e99:.3f})")
PY
  done
done
