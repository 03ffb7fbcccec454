#!/usr/bin/env bash
# What a cluster-wide rate limit adds to a request (issue #37): latency (p50, p99) and CPU
# per request of the gateway and of Redis, for a cache hit on a route without a limit and
# on a route counted in Redis (a limit no request reaches: the cost of counting, not of
# refusing), and on the same limit counted locally (`cluster.rate_limits: false`).
#
#   benches/load/cluster_limits.sh                       # target/release/sessiongate
#   BIN=… RATE=2000 DURATION=10 ROUNDS=3 benches/load/cluster_limits.sh
#
# One gateway (one worker) on CPU 0; redis-server, oha (fixed rate, latency corrected for
# coordinated omission, 16 connections) and a static nginx upstream on CPU 1. Latency is
# oha's, from the client: it includes the Redis round trip on 127.0.0.1, where a real
# deployment adds its network's. CPU is read from /proc before and after each run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

BIN=${BIN:-target/release/sessiongate}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
require_tools cluster_limits redis-server redis-cli nginx oha python3 taskset curl

read -r UP_PID UP < <(static_upstream 1)
pids+=("$UP_PID")
REDIS_PORT=$(free_port)
taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no > "$work/redis.log" 2>&1 &
REDIS_PID=$!
pids+=("$REDIS_PID")
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
head -c 32 /dev/urandom | base64 > "$work/secret"
export BENCH_TOKEN="cluster-limits-bench-token-0123456789"

start_gateway() { # name "cluster.rate_limits value" → prints "pid port admin"
    local name=$1 mode=$2 port admin dir
    port=$(free_port); admin=$(free_port)
    dir="$work/$name"; mkdir -p "$dir"
    cat > "$dir/config.yaml" <<CONF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
pid_file: $dir/pid
upgrade_sock: $dir/sock
threads: 1
log: { level: warn }
providers:
  idp:
    kind: static
    tokens:
      - { token: "\${BENCH_TOKEN}", identity: { subject: bench, scopes: [read] } }
upstreams: { app: "http://127.0.0.1:$UP" }
rate_limits:
  roomy: { rate: 1000000/s, burst: 1000000 }
routes:
  - { name: limited, path_prefix: /limited, provider: idp, upstream: app, rate_limits: [roomy] }
  - { name: api, path_prefix: /, provider: idp, upstream: app }
cluster:
  redis: { url: "redis://127.0.0.1:$REDIS_PORT/0" }
  key_secret_file: $work/secret
  rate_limits: $mode
CONF
    taskset -c 0 "$BIN" --config "$dir/config.yaml" > "$dir/log" 2>&1 &
    local pid=$!
    wait_http "http://127.0.0.1:$admin/readyz" 20
    echo "$pid $port $admin"
}

read -r CL_PID CL_PORT CL_ADMIN < <(start_gateway cluster '{ key_prefix: "bench:rl" }')
read -r LO_PID LO_PORT LO_ADMIN < <(start_gateway local false)
pids+=("$CL_PID" "$LO_PID")
# The cluster gateway's first requests connect to Redis.
curl -fs -o /dev/null -H "Authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$CL_PORT/limited/x"
sleep 0.5

run() { # label gateway-pid port path → one line
    local label=$1 pid=$2 port=$3 path=$4 g0 g1 r0 r1
    g0=$(python3 benches/load/cpu_ticks.py "$pid"); r0=$(python3 benches/load/cpu_ticks.py "$REDIS_PID")
    taskset -c 1 oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" --latency-correction \
        -c 16 -H "Authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$port$path" > "$work/oha.json"
    g1=$(python3 benches/load/cpu_ticks.py "$pid"); r1=$(python3 benches/load/cpu_ticks.py "$REDIS_PID")
    python3 - "$work/oha.json" "$label" "$g0" "$g1" "$r0" "$r1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, g0, g1, r0, r1, hz = sys.argv[2], *map(int, sys.argv[3:8])
codes = r.get("statusCodeDistribution", {})
n = sum(int(v) for v in codes.values())
if set(codes) != {"200"}:
    sys.exit(f"{label}: answers other than 200: {codes}")
p = r["latencyPercentiles"]
print(f"{label:<16} {n / r['summary']['total']:>7.0f} {p['p50'] * 1e3:>7.3f} {p['p99'] * 1e3:>7.3f} "
      f"{(g1 - g0) / hz * 1e6 / n:>8.1f} {(r1 - r0) / hz * 1e6 / n:>8.1f}")
PY
}

echo "case             req/s  p50_ms  p99_ms  gw_cpu_us redis_cpu_us"
for round in $(seq 1 "$ROUNDS"); do
    run "no-limit" "$CL_PID" "$CL_PORT" /x
    run "cluster-limit" "$CL_PID" "$CL_PORT" /limited/x
    run "local-limit" "$LO_PID" "$LO_PORT" /limited/x
done
checks=$(curl -fs "http://127.0.0.1:$CL_ADMIN/metrics" | awk '/^sessiongate_cluster_rate_limit_checks_total/ {print $1 "=" $2}' | tr '\n' ' ')
echo "counted: $checks"
