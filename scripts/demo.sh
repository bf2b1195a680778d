#!/usr/bin/env bash
# The demo: sets everything up, then replays sample traffic through the real filter module in
# the replay harness (virtual clock, simulated ingest) and prints decisions, events and the
# invoice; then rates a sample events file with every pricing model.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
REPLAY="$CARGO_TARGET_DIR/debug/aforo-replay"

step "Replay: 100,150 requests through aforo_metering.wasm, rated with graduated tiers"
"$REPLAY" scenario host-tests/scenarios/graduated-100k --module "$WASM_DIR/aforo_metering.wasm" --format table

step "Replay: the ingest fails for 90 seconds of virtual time; nothing is lost"
"$REPLAY" scenario host-tests/scenarios/ingest-outage --module "$WASM_DIR/aforo_metering.wasm" --format table

step "Rating: a sample plan with every pricing model"
"$REPLAY" rate --plan host-tests/samples/plan.json --events host-tests/samples/events.jsonl --now 2026-03-15T12:00:00Z --format table
