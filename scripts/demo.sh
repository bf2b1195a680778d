#!/usr/bin/env bash
# The demo: sets everything up, then runs the product for real on loopback ports:
#   aforo-agent (sandbox ledger on its embedded SQLite store, catalog and plan from demo/)
#   a demo API upstream, and a real Envoy with aforo_metering.wasm (deploy-examples/envoy/
#   envoy-local-agent.yaml), which decides each request from the agent's snapshot and sends
#   usage events to the agent.
# It sends demo/traffic.jsonl through Envoy and prints the decisions by customer, the events
# delivered, the dead letters and the invoice preview. Everything it starts is stopped on exit,
# also on Ctrl-C or failure.
#
# AFORO_DEMO_SKIP_SETUP=1 skips scripts/setup.sh (the tests set it; setup already ran).
# AFORO_DEMO_STATE=DIR records the pids and ports it used there (the tests check they are gone).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
# The demo needs Envoy, the filter and the agent, not the AWS Lambda package.
[ "${AFORO_DEMO_SKIP_SETUP:-0}" = 1 ] || AFORO_SETUP_LAMBDA=0 AFORO_SETUP_REDIS=0 AFORO_SETUP_LINTERS=0 AFORO_SETUP_BROWSER=0 "$ROOT/scripts/setup.sh"

BIN="$CARGO_TARGET_DIR/debug"
for b in aforo-agent aforo-replay; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run scripts/setup.sh"
done
# The shipped filter, made again if cargo's changed (unless AFORO_WASM_DIR names the modules).
[ -n "${AFORO_WASM_DIR:-}" ] || ship_modules
[ -f "$WASM_DIR/aforo_metering.wasm" ] || die "$WASM_DIR/aforo_metering.wasm is missing: run scripts/setup.sh"
[ -f "$COMPONENT" ] || die "$COMPONENT is missing: run scripts/setup.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-demo.XXXXXX")"
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" = 130 ] || [ "$status" = 143 ]; then
    echo "demo interrupted; everything it started is stopped" >&2
  elif [ "$status" != 0 ] && [ -d "$WORK" ]; then
    echo "demo failed (exit $status); last log lines:" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # URL, what, seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not come up at $1"
}
envoy_stat() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/stats?filter=^wasmcustom.$1\$" | awk -F': ' '{print $2}'; }

AGENT_PORT=$(free_port); APP_PORT=$(free_port); ENVOY_PORT=$(free_port); ADMIN_PORT=$(free_port)
GATEWAY_KEY=sk_test_demo_gateway
if [ -n "${AFORO_DEMO_STATE:-}" ]; then
  mkdir -p "$AFORO_DEMO_STATE"
  echo "$AGENT_PORT $APP_PORT $ENVOY_PORT $ADMIN_PORT" >"$AFORO_DEMO_STATE/ports"
fi
record_pid() { PIDS+=("$1"); [ -z "${AFORO_DEMO_STATE:-}" ] || echo "$1" >>"$AFORO_DEMO_STATE/pids"; }

step "Starting aforo-agent (sandbox ledger, SQLite in $WORK/data) on 127.0.0.1:$AGENT_PORT"
"$BIN/aforo-agent" --listen "127.0.0.1:$AGENT_PORT" --data-dir "$WORK/data" --environments sandbox \
  --catalog demo/catalog.json --component "$COMPONENT" >"$WORK/agent.log" 2>&1 &
record_pid $!
wait_http "http://127.0.0.1:$AGENT_PORT/healthz" "aforo-agent" 60

step "Starting the demo API on 127.0.0.1:$APP_PORT"
"$BIN/aforo-replay" upstream --port "$APP_PORT" >"$WORK/upstream.log" 2>&1 &
record_pid $!

step "Starting Envoy with aforo_metering.wasm on 127.0.0.1:$ENVOY_PORT (deploy-examples/envoy/envoy-local-agent.yaml)"
sed -e "s#/etc/envoy/aforo_metering.wasm#$WASM_DIR/aforo_metering.wasm#" \
    -e "s#address: 0.0.0.0, port_value: 10000#address: 127.0.0.1, port_value: $ENVOY_PORT#" \
    -e "s#port_value: 9901#port_value: $ADMIN_PORT#" \
    -e "s#port_value: 8080#port_value: $APP_PORT#" \
    -e "s#port_value: 8787#port_value: $AGENT_PORT#" \
    -e "s#127.0.0.1:8787#127.0.0.1:$AGENT_PORT#g" \
    deploy-examples/envoy/envoy-local-agent.yaml >"$WORK/envoy.yaml"
AFORO_API_KEY=$GATEWAY_KEY "$AFORO_ENVOY" -c "$WORK/envoy.yaml" --concurrency 2 --disable-hot-restart \
  --base-id "$ADMIN_PORT" >"$WORK/envoy.log" 2>&1 &
record_pid $!
wait_http "http://127.0.0.1:$ADMIN_PORT/ready" "Envoy" 60
for ((i = 0; i < 100; i++)); do
  [ "$(envoy_stat aforo_snapshot_syncs_total)" -ge 1 ] 2>/dev/null && break
  sleep 0.1
done
[ "$(envoy_stat aforo_snapshot_syncs_total)" -ge 1 ] 2>/dev/null || die "the filter did not load the agent's entitlement snapshot"

step "Sending demo/traffic.jsonl through Envoy"
"$BIN/aforo-replay" send --target "http://127.0.0.1:$ENVOY_PORT" --traffic demo/traffic.jsonl --format table

step "Waiting for the filter to flush its events to the agent"
# Envoy publishes the filter's counters on its stats flush; wait until they account for every
# event (received = delivered + rejected + dead-lettered, nothing buffered) twice in a row.
settled=0
for ((i = 0; i < 60 && settled < 2; i++)); do
  sleep 0.5
  received=$(envoy_stat aforo_events_received_total); delivered=$(envoy_stat aforo_events_delivered_total)
  rejected=$(envoy_stat aforo_events_rejected_total); dead=$(envoy_stat aforo_events_dead_lettered)
  buffered=$(envoy_stat aforo_events_buffered)
  if [ "${received:-0}" -gt 0 ] && [ "${buffered:-1}" = 0 ] &&
     [ "$received" = "$((${delivered:-0} + ${rejected:-0} + ${dead:-0}))" ]; then
    settled=$((settled + 1))
  else
    settled=0
  fi
done
printf '\nEvents (filter -> agent)\n'
printf '  metered by the filter  %s\n  delivered to the agent %s\n  still buffered         %s\n  dead-lettered          %s\n' \
  "${received:-0}" "${delivered:-0}" "${buffered:-0}" "${dead:-0}"
[ "$settled" = 2 ] || die "the filter's events did not all reach the agent within 30 s (see the counters above)"

printf '\nUsage stored by the agent (sandbox)\n'
curl -fsS -H "Authorization: Bearer $GATEWAY_KEY" "http://127.0.0.1:$AGENT_PORT/v1/usage?environment=sandbox" |
  python3 -c '
import json, sys
rows = json.load(sys.stdin)["usage"]
print("  %-10s %-10s %10s" % ("customer", "metric", "quantity"))
for r in rows:
    print("  %-10s %-10s %10s" % (r["customer_id"], r["metric"], r["quantity"]))'
dead_letters=$(curl -fsS -H "Authorization: Bearer $GATEWAY_KEY" "http://127.0.0.1:$AGENT_PORT/v1/dead-letters?environment=sandbox" |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)["dead_letters"]))')
printf '  dead letters in the agent: %s\n' "$dead_letters"

printf '\nInvoice preview (sandbox, this month, demo/plan.json)\n'
curl -fsS -H "Authorization: Bearer $GATEWAY_KEY" "http://127.0.0.1:$AGENT_PORT/v1/invoices/preview?environment=sandbox" |
  python3 -c '
import json, sys
for inv in json.load(sys.stdin)["invoices"]:
    print("  %s (%s, %s)" % (inv["customer_id"], inv["environment"], inv["currency"]))
    for l in inv["lines"]:
        print("    %-14s %-10s %-10s %8s %10s" % (l["charge"], l["metric"] or "", l["model"], l["quantity"], l["amount"]))
    print("    %-45s %10s" % ("subtotal", inv["subtotal"]))
    print("    %-45s %10s" % ("minimum true-up", inv["minimum_true_up"]))
    print("    %-45s %10s" % ("total", inv["total"]))'

step "Demo done; stopping the agent, Envoy and the demo API"
