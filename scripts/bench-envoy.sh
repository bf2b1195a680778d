#!/usr/bin/env bash
# Side-by-side load run on loopback: the same Envoy (one worker) and the same upstream (nginx),
# in turn A B C A B C …:
#   a) no filter, b) the pass-through proxy-wasm filter (the floor), c) the full aforo filter
#      with a live entitlement snapshot and metering every request, n) the same configuration in
#      the native dynamic module (libaforo_envoy.so), m) a do-nothing dynamic module (the
#      native floor: what Envoy's dynamic-module plumbing costs; VARIANTS="a b c m n"),
#   e) one of Envoy's own filters doing nothing (header_mutation with no mutations): what any
#      extra filter costs, against which m's plumbing is measured,
#   f) b making c's per-request host calls and nothing else (the floor under c's calls with the
#      default options: the request headers, the clock twice, the quota's read and compare-and-set,
#      the status, three RateLimit-* headers; no ticks, flushes or syncs), k) m making n's
#      per-request Envoy calls likewise.
#      FLOOR_CALLS="headers clock status" makes f and k make only those groups of calls
#      (host-tests/passthrough*/src/lib.rs name them; default aforo: all of c's and n's).
# Two passes, each ROUNDS × VARIANTS runs of DURATION seconds:
#   1. saturated: wrk at CONNECTIONS connections, as fast as Envoy answers: requests/s, p50, p99;
#   2. fixed rate: oha at half the floor's saturated requests/s (QPS overrides), the same
#      connections, latency corrected for coordinated omission: p50, p99, p999 — the latency
#      users see below saturation.
# Prints every run, the medians per variant and pass, and the ratios c/a, c/b, m/a, n/a, n/m,
# n/c, and with the floors f/b, c/f, k/a, k/m and n/k.
#
#   scripts/bench-envoy.sh     # ROUNDS=3 DURATION=10 CONNECTIONS=16 VARIANTS="a b c m n" FIXED=1
# INGEST=null (default): nginx serves the snapshot from a file and answers every batch 202, so
#   the ingest costs the load generator's core next to nothing (in production it is another
#   machine); INGEST=agent runs a release aforo-agent there instead (its work on each batch
#   shares that core with wrk and nginx, and shows in the latency).
# PROBE='{"batch_size": 1000}' adds variant d: c with these options merged (VARIANTS="b c d"), and
# p: n with them (VARIANTS="m n p").
# OTHER_WASM=path/to/aforo_metering.wasm adds variant o: c's configuration in that build of the
# module (an earlier commit's, say), so two builds are measured side by side (VARIANTS="b c o").
# CUSTOMERS=10000 serves a snapshot of that many customers, each with a consumer key (the bench's
#   customer among them; default 1), so the cost of reading a large snapshot on every sync
#   (sync_interval_ms, 5 s by default) shows in the tail. INGEST=null only.
# PERF=1 records a perf profile of Envoy during each measured run (perf.<variant>.data here;
# PERF_HZ sets the sampling rate, default 499; PERF_CALLGRAPH= (empty) records no call graphs).
# Bounded: 2 × ROUNDS × |VARIANTS| runs of DURATION seconds. Needs wrk, oha and nginx (installed
# here).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10}"; CONNECTIONS="${CONNECTIONS:-16}"
VARIANTS="${VARIANTS:-a b c m n}"; INGEST="${INGEST:-null}"; FIXED="${FIXED:-1}"
# One space between groups whatever was typed (the probes split on spaces; a newline would break
# the YAML too).
FLOOR_CALLS="$(printf '%s' "${FLOOR_CALLS:-aforo}" | tr -s ' \t\n' '   ' | sed 's/^ //; s/ $//')"
for g in $FLOOR_CALLS; do
  case "$g" in
    aforo) [ "$FLOOR_CALLS" = aforo ] || die "FLOOR_CALLS: aforo means all of the calls; it cannot be combined with other groups ('$FLOOR_CALLS')" ;;
    headers | clock | quota | status | ratelimit | worker) ;;
    *) die "FLOOR_CALLS names groups of calls (aforo, or some of: headers clock quota status ratelimit worker), not '$g'" ;;
  esac
done
PROBE="${PROBE:-}"; CUSTOMERS="${CUSTOMERS:-1}"
case "$INGEST" in null | agent) ;; *) die "INGEST must be null or agent, not '$INGEST'" ;; esac
case "$CUSTOMERS" in '' | *[!0-9]* | 0) die "CUSTOMERS must be a whole number >= 1, not '$CUSTOMERS'" ;; esac
[ "$CUSTOMERS" = 1 ] || [ "$INGEST" = null ] || die "CUSTOMERS=$CUSTOMERS needs INGEST=null (the agent serves its own catalog)"
# Envoy's one worker gets a core of its own; wrk, nginx and the agent share the other, so the
# figures are Envoy's own cost per request (on 2 cores: ENVOY_CPU=0, OTHER_CPU=1).
ENVOY_CPU="${ENVOY_CPU:-0}"; OTHER_CPU="${OTHER_CPU:-1}"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
case " $VARIANTS " in
  # A pass-through module from before the probe would take f's configuration and make no call:
  # f would measure b. Built here even when setup is skipped.
  *" f "*) cargo build --quiet --target wasm32-wasip1 --profile wasm-release -p aforo-passthrough ;;
esac
ship_modules
apt_install wrk nginx-light
case " $VARIANTS " in
  *" o "*) [ -f "${OTHER_WASM:-}" ] || die "variant o needs OTHER_WASM=path/to/aforo_metering.wasm (another build of the module), not '${OTHER_WASM:-}'" ;;
esac
if [ "$FIXED" = 1 ] && ! command -v oha >/dev/null; then
  step "Installing oha (a fixed-rate load generator) with cargo"
  cargo install --locked --quiet oha
fi
NATIVE_MODULE="${AFORO_ENVOY_MODULE:-$CARGO_TARGET_DIR/release/libaforo_envoy.so}"
NATIVE_FLOOR="$CARGO_TARGET_DIR/release/libaforo_passthrough_native.so"
case " $VARIANTS " in
  *" n "* | *" p "*) [ -f "$NATIVE_MODULE" ] || die "$NATIVE_MODULE is missing: cargo build --release -p aforo-envoy (scripts/setup.sh does)" ;;
esac
case " $VARIANTS " in
  *" m "* | *" k "*) cargo build --release --quiet -p aforo-passthrough-native ;;
esac
if [ "$INGEST" = agent ]; then
  # The agent serves the snapshot and takes the events; AFORO_BENCH_AGENT points at an existing
  # binary to skip the release build.
  AGENT="$(release_agent)"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench.XXXXXX")"
PIDS=()
cleanup() {
  local s=$?
  trap - EXIT
  # The Envoy of the run under way, also when the run stopped half-way (no snapshot, say).
  if [ -n "${epid:-}" ]; then kill "$epid" 2>/dev/null || true; wait "$epid" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "logs and configurations kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$s"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { local i; for ((i = 0; i < 300; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; die "$1 did not answer"; }

UP=$(free_port); AGENT_PORT=$(free_port); LISTEN=$(free_port); ADMIN=$(free_port)

# The entitlements: one customer with a large quota, reached by a consumer key.
cat >"$WORK/catalog.json" <<'EOF'
{"customers": {"bench": {"features": {"search": {"metric": "api_calls", "quota": 1000000000000}}}},
 "consumer_keys": [{"key_id": "bench", "key": "ck_bench_load", "customer_id": "bench"}]}
EOF
# The snapshot aforo-agent serves for that catalog (the key as its SHA-256), for INGEST=null.
key_hash=$(printf '%s' ck_bench_load | sha256sum | cut -d' ' -f1)
snapshot="{\"consumer_keys\":[{\"customer_id\":\"bench\",\"hash\":\"sha256:$key_hash\",\"key_id\":\"bench\"}],\"customers\":{\"bench\":{\"features\":{\"search\":{\"quota\":1000000000000,\"used\":0,\"used_by_source\":0,\"window_start\":\"$(date -u +%Y-%m-01T00:00:00Z)\"}}}},\"environment\":\"production\",\"generated_at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"version\":1}"
# The snapshot as a file nginx serves; CUSTOMERS > 1 adds CUSTOMERS - 1 customers with a key each.
# (nginx's workers run as another user when started as root: they may pass through $WORK, no more.)
chmod 711 "$WORK" && mkdir -m 755 "$WORK/public"
snapshot_file="$WORK/public/snapshot.json"
python3 - "$snapshot" "$CUSTOMERS" "$snapshot_file" <<'PY'
import hashlib, json, sys
snap, n, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bench = snap["customers"]["bench"]["features"]["search"]
for i in range(1, n):
    cid = f"cust_{i:05d}"
    snap["customers"][cid] = {"features": {"search": dict(bench, quota=1000000)}}
    snap["consumer_keys"].append({"customer_id": cid, "key_id": f"k{i}",
        "hash": "sha256:" + hashlib.sha256(f"ck_bench_{i:05d}".encode()).hexdigest()})
json.dump(snap, open(out, "w"), separators=(",", ":"))
PY
chmod 644 "$snapshot_file"

# The upstream: nginx, one worker, a small JSON answer; with INGEST=null also the ingest.
null_ingest=""
if [ "$INGEST" = null ]; then
  null_ingest="
  server {
    listen 127.0.0.1:$AGENT_PORT;
    client_max_body_size 16m;
    location = /healthz { return 200 'ok'; }
    location = /v1/entitlements { default_type application/json; alias $snapshot_file; }
    location = /v1/events {
      default_type application/json;
      return 202 '{\"accepted\":0,\"duplicates\":0,\"rejected\":[],\"flagged\":[]}';
    }
  }"
fi
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"ok":true,"usage":{"total_tokens":42}}'; }
  }$null_ingest
}
EOF
taskset -c "$OTHER_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

if [ "$INGEST" = agent ]; then
  taskset -c "$OTHER_CPU" "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --data-dir "$WORK/agent" --environments production \
    --catalog "$WORK/catalog.json" --component "$COMPONENT" --production-events-per-hour 100000000000 \
    >"$WORK/agent.log" 2>&1 &
  PIDS+=($!)
fi
wait_http "http://127.0.0.1:$AGENT_PORT/healthz"
wait_http "http://127.0.0.1:$UP/"

# c's filter configuration, and d's: c's with PROBE's options merged in.
filter_config() { # extra-json
  python3 -c '
import json, sys
port, extra = sys.argv[1], sys.argv[2]
c = {"api_key": "sk_live_bench_gateway", "product_id": "bench",
     "routes": [{"path_prefix": "/", "feature": "search", "metric": "api_calls"}],
     "ingest_url": f"http://127.0.0.1:{port}", "ingest_cluster": "aforo_agent",
     "entitlements_url": f"http://127.0.0.1:{port}/v1/entitlements",
     "entitlements_cluster": "aforo_agent", "flush_interval_ms": 1000, "max_buffer_events": 100000}
c.update(json.loads(extra or "{}"))
print(json.dumps(c))
' "$AGENT_PORT" "$1"
}
C_CONFIG=$(filter_config "")
D_CONFIG=$(filter_config "$PROBE")

cluster() { # name port
  printf '  - name: %s\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: %s\n      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }] }]\n' "$1" "$1" "$2"
}
wasm_filter() { # module config-json
  cat <<EOF
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: aforo
                root_id: aforo
                failure_policy: FAIL_OPEN
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '$2'
                vm_config:
                  vm_id: aforo
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: $1 } }
EOF
}
native_filter() { # module config-json
  cat <<EOF
          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                module: { local: { filename: $1 } }
              filter_name: aforo
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '$2'
EOF
}
bootstrap() { # variant
  local filters=""
  case "$1" in
    a) ;;
    b) filters="$(wasm_filter "$WASM_DIR/aforo_passthrough.wasm" '{}')" ;;
    c) filters="$(wasm_filter "$WASM_DIR/aforo_metering.wasm" "$C_CONFIG")" ;;
    d) filters="$(wasm_filter "$WASM_DIR/aforo_metering.wasm" "$D_CONFIG")" ;;
    e) filters="          - name: envoy.filters.http.header_mutation
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations: {}
" ;;
    f) filters="$(wasm_filter "$WASM_DIR/aforo_passthrough.wasm" "{\"calls\": \"$FLOOR_CALLS\"}")" ;;
    m) filters="$(native_filter "$NATIVE_FLOOR" '{}')" ;;
    k) filters="$(native_filter "$NATIVE_FLOOR" "calls:$FLOOR_CALLS")" ;;
    n) filters="$(native_filter "$NATIVE_MODULE" "$C_CONFIG")" ;;
    p) filters="$(native_filter "$NATIVE_MODULE" "$D_CONFIG")" ;;
    o) filters="$(wasm_filter "$OTHER_WASM" "$C_CONFIG")" ;;
    *) die "unknown variant '$1' (a, b, c, d, e, f, k, m, n, o, p)" ;;
  esac
  cat <<EOF
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: $LISTEN } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: upstream } }]
          http_filters:
$filters
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
$(cluster upstream "$UP")
$(cluster aforo_agent "$AGENT_PORT")
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN } }
EOF
}

# wrk's latency figures to milliseconds.
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.3f", v }'; }
envoy_stat() { # admin-port stat-name: its value, or "?"
  curl -fsS "http://127.0.0.1:$ADMIN/stats?filter=^$1\$" | awk -F': ' '{print $2}' | grep . || echo '?'
}
URL="http://127.0.0.1:$LISTEN/v1/search"

# Starts variant $1's Envoy (pid in $epid), waits until it is ready and c has its snapshot.
start_envoy() {
  bootstrap "$1" >"$WORK/envoy-$1.yaml"
  taskset -c "$ENVOY_CPU" "$AFORO_ENVOY" -c "$WORK/envoy-$1.yaml" --concurrency 1 --disable-hot-restart --base-id "$ADMIN" \
    -l warning >"$WORK/envoy-$1.log" 2>&1 &
  epid=$!
  wait_http "http://127.0.0.1:$ADMIN/ready"
  if [ "$1" = c ] || [ "$1" = d ] || [ "$1" = n ] || [ "$1" = o ] || [ "$1" = p ]; then
    local i
    for ((i = 0; ; i++)); do
      case "$(envoy_stat "$(stat_prefix "$1")aforo_snapshot_syncs_total")" in 0 | '?') ;; *) break ;; esac
      [ "$i" -lt 100 ] || die "$1 got no snapshot in 10 s (KEEP=1 keeps $WORK/envoy-$1.log)"
      sleep 0.1
    done
  fi
  # Warm up.
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -H 'x-api-key: ck_bench_load' "$URL" >/dev/null
}

# Where a variant's filter keeps its stats.
stat_prefix() { case "$1" in n | p) echo dynamicmodulescustom. ;; *) echo wasmcustom. ;; esac; }
# After a run of c, d or n: requests allowed and events delivered to the ingest (every request
# metered).
c_counts() {
  case "$1" in c | d | n | o | p) ;; *) return 0 ;; esac
  printf 'allowed=%s delivered=%s' "$(envoy_stat "$(stat_prefix "$1")aforo_decisions_allowed_total")" \
    "$(envoy_stat "$(stat_prefix "$1")aforo_events_delivered_total")"
}

stop_envoy() { kill "$epid"; wait "$epid" 2>/dev/null || true; }

# CPU time the hypervisor gave to other guests (steal), as jiffies; its share of a run shows
# how noisy the machine was while it ran.
steal_jiffies() { awk '$1 == "cpu" {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# A process's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
steal_share() { # before-output after-output
  awk -v b="$1" -v a="$2" 'BEGIN { split(b, x, " "); split(a, y, " "); t = y[2] - x[2]; printf("steal=%.1f%%", (t > 0) ? 100 * (y[1] - x[1]) / t : 0) }'
}

RESULTS="$WORK/results"
: >"$RESULTS"
step "Saturated: wrk, $CONNECTIONS connections, ${DURATION}s per run, ingest: $INGEST"
for ((r = 1; r <= ROUNDS; r++)); do
  for v in $VARIANTS; do
    start_envoy "$v"
    perfpid=""
    if [ "${PERF:-0}" = 1 ]; then
      perf record -F "${PERF_HZ:-499}" ${PERF_CALLGRAPH--g} -p "$epid" -o "$ROOT/perf.$v.data" -- sleep "$DURATION" >/dev/null 2>&1 &
      perfpid=$!
    fi
    s0=$(steal_jiffies)
    c0=$(cpu_ticks "$epid")
    out=$(taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'x-api-key: ck_bench_load' "$URL")
    c1=$(cpu_ticks "$epid")
    [ -z "$perfpid" ] || wait "$perfpid"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    # Envoy's CPU time per request (all its threads; the launcher execs Envoy, so $epid is it):
    # less sensitive to steal and scheduling than requests/s.
    cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$(awk '/requests in/ {print $1}' <<<"$out")" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.1f", (n > 0) ? (b - a) * 1e6 / hz / n : 0 }')
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    printf 'round %d  %s  %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6.1f us/req  %s %s%s\n' "$r" "$v" "$rps" "$p50" "$p99" \
      "$cpu_us" "$(steal_share "$s0" "$(steal_jiffies)")" "${non2xx:+non-2xx=$non2xx }" "$(c_counts "$v")"
    echo "sat $v $rps $p50 $p99 0 $cpu_us" >>"$RESULTS"
    stop_envoy
  done
done

if [ "$FIXED" = 1 ]; then
  # Half the floor's (b) saturated requests/s; without b, half of no filter's (a).
  median_sat() { awk -v v="$1" '$1 == "sat" && $2 == v {print $3}' "$RESULTS" | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
  floor=$(median_sat b); base="the floor's"
  if [ -z "$floor" ]; then floor=$(median_sat a); base="no filter's"; fi
  QPS="${QPS:-$(awk -v f="${floor:-0}" 'BEGIN {printf "%d", f / 2}')}"
  [ "${QPS:-0}" -gt 0 ] || die "no floor measured to take half of: set QPS or include variant a or b"
  step "Fixed rate: oha at $QPS requests/s (half $base), $CONNECTIONS connections, ${DURATION}s per run"
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in $VARIANTS; do
      start_envoy "$v"
      # --latency-correction: latency counts from when a request was due, so a stall shows in
      # every request it delayed (no coordinated omission).
      s0=$(steal_jiffies)
      taskset -c "$OTHER_CPU" oha --no-tui --output-format json --latency-correction -q "$QPS" \
        -z "${DURATION}s" -c "$CONNECTIONS" -H 'x-api-key: ck_bench_load' "$URL" >"$WORK/oha.json"
      read -r rps p50 p99 p999 ok <<<"$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
ok = sum(n for code, n in d.get("statusCodeDistribution", {}).items() if code.startswith("2"))
print(d["summary"]["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000, p["p99.9"] * 1000, ok)
' "$WORK/oha.json")"
      printf 'round %d  %s  %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  p999 %7.3f ms  %s 2xx=%s %s\n' \
        "$r" "$v" "$rps" "$p50" "$p99" "$p999" "$(steal_share "$s0" "$(steal_jiffies)")" "$ok" "$(c_counts "$v")"
      echo "fixed $v $rps $p50 $p99 $p999" >>"$RESULTS"
      stop_envoy
    done
  done
fi

python3 - "$RESULTS" "$VARIANTS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
variants = sys.argv[2].split()
names = {"a": "a) no filter", "b": "b) pass-through filter", "c": "c) aforo filter", "d": "d) c + PROBE",
         "e": "e) Envoy's own, no-op", "m": "m) pass-through native", "n": "n) aforo native module",
         "o": "o) c, OTHER_WASM", "p": "p) n + PROBE", "f": "f) b + c's host calls",
         "k": "k) m + n's Envoy calls"}
for kind, title in (("sat", "saturated"), ("fixed", "fixed rate")):
    med = {}
    for v in variants:
        rs = [r for r in rows if r[0] == kind and r[1] == v]
        if rs:
            med[v] = [statistics.median(float(r[i]) for r in rs) for i in (2, 3, 4, 5)]
            med[v].append(statistics.median(float(r[6]) for r in rs) if all(len(r) > 6 for r in rs) else 0)
    if not med:
        continue
    n = max(len([r for r in rows if r[0] == kind and r[1] == v]) for v in med)
    print("\n%s: medians over %d rounds" % (title, n))
    print("  %-24s %12s %10s %10s %10s %12s" % ("variant", "req/s", "p50 ms", "p99 ms", "p999 ms", "cpu us/req"))
    for v in med:
        p999 = "%10.3f" % med[v][3] if kind == "fixed" else "%10s" % "-"
        cpu = "%12.1f" % med[v][4] if med[v][4] else "%12s" % "-"
        print("  %-24s %12.0f %10.3f %10.3f %s %s" % (names.get(v, v), med[v][0], med[v][1], med[v][2], p999, cpu))
    for top, base in (("c", "a"), ("c", "b"), ("d", "b"), ("d", "c"), ("e", "a"), ("m", "a"), ("m", "e"),
                      ("n", "a"), ("n", "m"), ("n", "c"), ("o", "b"), ("c", "o"), ("p", "m"), ("p", "n"),
                      ("f", "b"), ("c", "f"), ("k", "a"), ("k", "m"), ("n", "k")):
        if top in med and base in med:
            t, b = med[top], med[base]
            line = "  %s/%s  throughput %.3f   p50 %.3f   p99 %.3f" % (
                top, base, t[0] / b[0], t[1] / b[1], t[2] / b[2])
            if kind == "fixed":
                line += "   p999 %.3f" % (t[3] / b[3])
            elif t[4] and b[4]:
                line += "   cpu/req %+.1f us" % (t[4] - b[4])
            print(line)
EOF
