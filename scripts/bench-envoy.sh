#!/usr/bin/env bash
# Side-by-side load run on loopback: the same Envoy (one worker) and the same upstream (nginx),
# in turn A B C A B C …:
#   a) no filter, b) the pass-through proxy-wasm filter (the floor), c) the full aforo filter
#      with a live entitlement snapshot from aforo-agent and metering to it.
# Prints requests/s and p50 / p99 latency per run, the medians, and the ratios c/a and c/b.
#
#   scripts/bench-envoy.sh            # ROUNDS=3 DURATION=10 CONNECTIONS=16 VARIANTS="a b c"
# PERF=1 records a perf profile of Envoy during each measured run (perf.<variant>.data here).
# Bounded: ROUNDS × 3 runs of DURATION seconds each. Needs wrk and nginx (installed here).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10}"; CONNECTIONS="${CONNECTIONS:-16}"
VARIANTS="${VARIANTS:-a b c}"
# Envoy's one worker gets a core of its own; wrk, nginx and the agent share the other, so the
# figures are Envoy's own cost per request (on 2 cores: ENVOY_CPU=0, OTHER_CPU=1).
ENVOY_CPU="${ENVOY_CPU:-0}"; OTHER_CPU="${OTHER_CPU:-1}"
[ "${AFORO_BENCH_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
apt_install wrk nginx-light
# The agent only serves the snapshot and takes the events (on the other core); AFORO_BENCH_AGENT
# points at an existing binary to skip the release build.
AGENT="$(release_agent)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aforo-bench.XXXXXX")"
PIDS=()
cleanup() {
  local s=$?
  trap - EXIT
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$s"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { local i; for ((i = 0; i < 300; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; die "$1 did not answer"; }

UP=$(free_port); AGENT_PORT=$(free_port); LISTEN=$(free_port); ADMIN=$(free_port)

# The upstream: nginx, one worker, a small JSON answer.
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
  }
}
EOF
taskset -c "$OTHER_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

# The agent: entitlements for one customer with a large quota, and the ingest for the events.
cat >"$WORK/catalog.json" <<'EOF'
{"customers": {"bench": {"features": {"search": {"metric": "api_calls", "quota": 1000000000000}}}},
 "consumer_keys": [{"key_id": "bench", "key": "ck_bench_load", "customer_id": "bench"}]}
EOF
taskset -c "$OTHER_CPU" "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --data-dir "$WORK/agent" --environments production \
  --catalog "$WORK/catalog.json" --component "$COMPONENT" --production-events-per-hour 100000000000 \
  >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$AGENT_PORT/healthz"
wait_http "http://127.0.0.1:$UP/"

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
bootstrap() { # variant
  local filters=""
  case "$1" in
    a) ;;
    b) filters="$(wasm_filter "$WASM_DIR/aforo_passthrough.wasm" '{}')" ;;
    c) filters="$(wasm_filter "$WASM_DIR/aforo_metering.wasm" "{\"api_key\": \"sk_live_bench_gateway\", \"product_id\": \"bench\", \"routes\": [{\"path_prefix\": \"/\", \"feature\": \"search\", \"metric\": \"api_calls\"}], \"ingest_url\": \"http://127.0.0.1:$AGENT_PORT\", \"ingest_cluster\": \"aforo_agent\", \"entitlements_url\": \"http://127.0.0.1:$AGENT_PORT/v1/entitlements\", \"entitlements_cluster\": \"aforo_agent\", \"flush_interval_ms\": 1000, \"max_buffer_events\": 100000}")" ;;
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

RESULTS="$WORK/results"
: >"$RESULTS"
for ((r = 1; r <= ROUNDS; r++)); do
  for v in $VARIANTS; do
    bootstrap "$v" >"$WORK/envoy-$v.yaml"
    taskset -c "$ENVOY_CPU" "$AFORO_ENVOY" -c "$WORK/envoy-$v.yaml" --concurrency 1 --disable-hot-restart --base-id "$ADMIN" \
      -l warning >"$WORK/envoy-$v.log" 2>&1 &
    epid=$!
    wait_http "http://127.0.0.1:$ADMIN/ready"
    if [ "$v" = c ]; then
      for ((i = 0; i < 100; i++)); do
        curl -fsS "http://127.0.0.1:$ADMIN/stats?filter=^wasmcustom.aforo_snapshot_syncs_total\$" | grep -q ': [1-9]' && break
        sleep 0.1
      done
    fi
    # Warm up, then measure.
    taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -H 'x-api-key: ck_bench_load' "http://127.0.0.1:$LISTEN/v1/search" >/dev/null
    perfpid=""
    if [ "${PERF:-0}" = 1 ]; then
      perf record -F 499 -g -p "$epid" -o "$ROOT/perf.$v.data" -- sleep "$DURATION" >/dev/null 2>&1 &
      perfpid=$!
    fi
    out=$(taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'x-api-key: ck_bench_load' "http://127.0.0.1:$LISTEN/v1/search")
    [ -z "$perfpid" ] || wait "$perfpid"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    if [ "$v" = c ]; then
      allowed=$(curl -fsS "http://127.0.0.1:$ADMIN/stats?filter=^wasmcustom.aforo_decisions_allowed_total\$" | awk -F': ' '{print $2}')
      extra="allowed=${allowed:-?}"
    else
      extra=""
    fi
    printf 'round %d  %s  %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %s%s\n' "$r" "$v" "$rps" "$p50" "$p99" "${non2xx:+non-2xx=$non2xx }" "$extra"
    echo "$v $rps $p50 $p99" >>"$RESULTS"
    kill "$epid"; wait "$epid" 2>/dev/null || true
  done
done

[ "$VARIANTS" = "a b c" ] || exit 0
python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for v in "abc":
    rs = [r for r in rows if r[0] == v]
    med[v] = tuple(statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3))
names = {"a": "a) no filter", "b": "b) pass-through filter", "c": "c) aforo filter"}
print("\nmedians over %d rounds" % len([r for r in rows if r[0] == "a"]))
print("  %-24s %12s %10s %10s" % ("variant", "req/s", "p50 ms", "p99 ms"))
for v in "abc":
    print("  %-24s %12.0f %10.3f %10.3f" % (names[v], *med[v]))
print("\n  throughput c/a %.3f   c/b %.3f" % (med["c"][0] / med["a"][0], med["c"][0] / med["b"][0]))
print("  p99        c/a %.3f   c/b %.3f" % (med["c"][2] / med["a"][2], med["c"][2] / med["b"][2]))
EOF
