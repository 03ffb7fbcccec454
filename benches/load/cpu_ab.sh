#!/usr/bin/env bash
# A/B of two sessiongate builds: CPU time per request (user + system, all threads) and
# req/s, on the cache-hit path and the `auth: none` path, interleaved A B A B … so that
# drift on a shared machine hits both alike. Compare the ratios, not the absolutes.
#
#   A=/path/to/old/sessiongate B=target/release/sessiongate benches/load/cpu_ab.sh
#   ROUNDS=3 DURATION=10 (defaults)
#   TOGETHER=1 …                 # load A and B at the same time (two wrk, both gateways on
#                                # CPU 0): a slow spell of the shared machine then hits
#                                # both alike, and each round's B ÷ A is the figure to read
#   OVERHEAD=1 A=X B=X …         # the auth step alone: one gateway serving hits while the
#                                # other serves `auth: none`, at once, then swapped
#   RULES=1 A=X B=X …            # issue #36: hits on a route with a path template and three
#                                # rules against hits on the same template without rules,
#                                # and against a plain route, at once, then swapped
#                                # (builds with `path:`/`rules:` only)
#   LIMITS=1 A=X B=X …           # issue #37: hits on a route with a local rate limit
#                                # (per subject, never reached) against hits on the same
#                                # route shape without one, at once, then swapped
#                                # (builds with `rate_limits:` only)
#   PERF=/tmp/b.txt …            # also: perf profile of B's first cache-hit run (top symbols;
#                                # the raw data beside it as /tmp/b.txt.data for perf report -i)
#   A=target/release/sessiongate CONFIG_A="work_stealing: true" CONFIG_B="work_stealing: false" \
#       benches/load/cpu_ab.sh     # one build, two settings (top-level YAML per gateway)
#   A=X B=X CONFIG_A="" CONFIG_B="tracing: { endpoint: http://@UPSTREAM@, sample_ratio: 0 }" \
#       benches/load/cpu_ab.sh     # issue #39: @UPSTREAM@ is the static nginx, which
#                                  # answers an OTLP export 200 like any request
#   LOG_A=info LOG_B=info …      # log levels (default warn: no access log); each gateway
#                                # writes its log to a file of its own
#
# Each gateway runs alone on CPU 0 with one worker; wrk -t1 -c64 and a static nginx
# upstream share CPU 1. CPU is read from /proc/PID/task/*/stat after the `)` that ends
# the thread name (Pingora's thread names contain spaces), before and after each run.
# A static provider keeps the provider out of the measurement (a hit never calls it).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

A=${A:?path of build A}
B=${B:-target/release/sessiongate}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
require_tools cpu_ab nginx wrk python3 taskset curl

read -r UP_PID UP < <(static_upstream 1)
pids+=("$UP_PID")

export CPU_AB_TOKEN="cpu-ab-token-0123456789abcdef"
# RULES=1: the token's identity has what the rules read, and a templated route with three
# rules sits beside the plain one (older builds cannot read either).
IDENTITY_EXTRA= RULES_ROUTE=
if [ -n "${RULES:-}" ]; then
    IDENTITY_EXTRA=', organizations: [acme], claims: { two-factor: "true" }'
    RULES_ROUTE='  - name: ruled
    path: "/orgs/{org}/{rest*}"
    provider: idp
    upstream: app
    require_scopes: { all_of: [read] }
    rules:
      - { name: tenant, expr: "request.params.org in identity.organizations" }
      - { name: two-factor, expr: "identity.claims['"'"'two-factor'"'"'] == '"'"'true'"'"'" }
      - { name: fresh, expr: "identity.expires_at == null || identity.expires_at > now + 60" }
  - name: templated
    path: "/orgz/{org}/{rest*}"
    provider: idp
    upstream: app
    require_scopes: { all_of: [read] }'
fi
# LIMITS=1: a policy no request reaches (the cost of counting, not of refusing), on a
# route beside the plain one.
LIMITS_SECTION=
if [ -n "${LIMITS:-}" ]; then
    LIMITS_SECTION='rate_limits:
  roomy: { rate: 1000000000/s, burst: 1000000 }'
    RULES_ROUTE="$RULES_ROUTE
  - { name: limited, path_prefix: /limited, provider: idp, upstream: app, require_scopes: { all_of: [read] }, rate_limits: [roomy] }"
fi
start_gateway() { # binary [extra top-level YAML] [log level] → prints "pid port"
    local bin=$1 extra=${2:-} level=${3:-warn} port admin dir
    extra=${extra//@UPSTREAM@/127.0.0.1:$UP}
    port=$(free_port); admin=$(free_port)
    dir="$work/gw-$port"; mkdir -p "$dir"
    cat > "$dir/config.yaml" <<CONF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
pid_file: $dir/pid
upgrade_sock: $dir/sock
log: { level: $level }
$extra
providers:
  idp:
    kind: static
    tokens:
      - { token: "\${CPU_AB_TOKEN}", identity: { subject: bench, scopes: [read, write], ip_restrict: [127.0.0.0/8]$IDENTITY_EXTRA } }
upstreams: { app: "http://127.0.0.1:$UP" }
$LIMITS_SECTION
routes:
$RULES_ROUTE
  - { name: open, path_prefix: /open, auth: none, upstream: app }
  - { name: api, path_prefix: /, provider: idp, upstream: app, require_scopes: { all_of: [read] } }
CONF
    taskset -c 0 "$bin" --config "$dir/config.yaml" > "$dir/log" 2>&1 &
    local pid=$!
    pids+=($pid)
    wait_http "http://127.0.0.1:$admin/readyz" 20
    echo "$pid $port"
}

cpu_ticks() { # pid → utime+stime of all its threads, in clock ticks
    python3 benches/load/cpu_ticks.py "$1"
}
cpu_split() { # pid → "user,system" ticks of all its threads (a Python tuple's items)
    python3 benches/load/cpu_ticks.py --split "$1" | tr ' ' ,
}

read -r PID_A PORT_A < <(start_gateway "$A" "${CONFIG_A:-}" "${LOG_A:-warn}")
read -r PID_B PORT_B < <(start_gateway "$B" "${CONFIG_B:-}" "${LOG_B:-warn}")
# start_gateway ran in a subshell: its `pids+=` did not reach this shell's cleanup list.
pids+=("$PID_A" "$PID_B")
HZ=$(getconf CLK_TCK)

run() { # label pid port path [header] → one line: label req/s cpu-us-per-request
    local label=$1 pid=$2 port=$3 path=$4 header=${5:-}
    local before after out reqs
    before=$(cpu_ticks "$pid")
    local perf_pid=
    if [ -n "${PERF:-}" ] && [ "$label" = "hit B" ] && [ ! -e "$PERF.data" ]; then
        perf record -F 1999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$pid" -o "$PERF.data" \
            -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    if [ -n "$header" ]; then
        out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -H "$header" "http://127.0.0.1:$port$path")
    else
        out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port$path")
    fi
    after=$(cpu_ticks "$pid")
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        perf report -i "$PERF.data" --stdio --no-children -g none --percent-limit 0.2 \
            --sort dso,symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80 > "$PERF" || true
    fi
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    if echo "$out" | grep -q "Non-2xx"; then echo "$label: non-2xx answers" >&2; exit 1; fi
    python3 -c "t=($after-$before)/$HZ; r=$reqs; print(f'$label {r/$DURATION:.0f} {t*1e6/r:.1f}')"
}

together() { # label path [header] [path for B] [header for B] → two lines (A and B
    # loaded at once) and B ÷ A
    local label=$1 path=$2 header=${3:-} path_b=${4:-$2} header_b=${5-${3:-}} a0 b0 a1 b1 out_a out_b
    local -a h=() hb=()
    [ -n "$header" ] && h=(-H "$header")
    [ -n "$header_b" ] && hb=(-H "$header_b")
    a0=$(cpu_split "$PID_A"); b0=$(cpu_split "$PID_B")
    taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "${h[@]}" "http://127.0.0.1:$PORT_A$path" > "$work/wrk-a" &
    local wa=$!
    taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "${hb[@]}" "http://127.0.0.1:$PORT_B$path_b" > "$work/wrk-b"
    wait "$wa"
    a1=$(cpu_split "$PID_A"); b1=$(cpu_split "$PID_B")
    for f in "$work/wrk-a" "$work/wrk-b"; do
        if grep -q "Non-2xx" "$f"; then echo "$label: non-2xx answers" >&2; exit 1; fi
    done
    out_a=$(awk '/requests in/ {print $1}' "$work/wrk-a")
    out_b=$(awk '/requests in/ {print $1}' "$work/wrk-b")
    python3 -c "
def per(t0, t1, n): return [(y - x) / $HZ * 1e6 / n for x, y in zip(t0, t1)]
(au, asy), (bu, bsy) = per([$a0], [$a1], $out_a), per([$b0], [$b1], $out_b)
a, b = au + asy, bu + bsy
print(f'$label A {$out_a/$DURATION:.0f} {a:.1f} (user {au:.1f} sys {asy:.1f})')
print(f'$label B {$out_b/$DURATION:.0f} {b:.1f} (user {bu:.1f} sys {bsy:.1f})')
print(f'$label B/A {b/a:.3f} (user {bu/au:.3f} sys {bsy/asy:.3f})')"
}

AUTH="Authorization: Bearer $CPU_AB_TOKEN"
echo "case build req/s cpu_us_per_request"
both_ways() { # name_a path_a header_a name_b path_b header_b: the pair at once, then swapped
    together "$1-A/$4-B" "$2" "$3" "$5" "$6"
    together "$4-A/$1-B" "$5" "$6" "$2" "$3"
}
# OVERHEAD=1 A=<build> B=<same build>: the auth step's cost — one gateway serving cache
# hits while the other serves `auth: none`. RULES=1: a hit on the templated route with
# three rules against the same template without rules (the rules' cost alone), then
# against the plain prefix route (template and rules). LIMITS=1: a hit counted by a rate
# limit against a hit on the plain route (same scopes).
if [ -n "${OVERHEAD:-}${RULES:-}${LIMITS:-}" ]; then
    for round in $(seq 1 "$ROUNDS"); do
        if [ -n "${OVERHEAD:-}" ]; then
            both_ways hit /x "$AUTH" none /open/x ""
        fi
        if [ -n "${RULES:-}" ]; then
            both_ways templ /orgz/acme/projects/1 "$AUTH" rules /orgs/acme/projects/1 "$AUTH"
            both_ways plain /x "$AUTH" rules /orgs/acme/projects/1 "$AUTH"
        fi
        if [ -n "${LIMITS:-}" ]; then
            both_ways plain /x "$AUTH" limited /limited/x "$AUTH"
        fi
    done
    exit 0
fi
if [ -n "${TOGETHER:-}" ]; then
    for round in $(seq 1 "$ROUNDS"); do
        together hit /x "$AUTH"
        together none /open/x
    done
    exit 0
fi
for round in $(seq 1 "$ROUNDS"); do
    run "hit A" "$PID_A" "$PORT_A" /x "$AUTH"
    run "hit B" "$PID_B" "$PORT_B" /x "$AUTH"
    run "none A" "$PID_A" "$PORT_A" /open/x
    run "none B" "$PID_B" "$PORT_B" /open/x
done
