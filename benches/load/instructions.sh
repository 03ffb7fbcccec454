#!/usr/bin/env bash
# Instructions per request of sessiongate builds, counted by valgrind (cachegrind, no
# cache simulation): user-space instructions the gateway process executes for one
# cache hit and one `auth: none` request. Unlike CPU time (benches/load/cpu_ab.sh), the
# count does not drift with the shared machine — two runs of one build agree within
# ≈ 0.02 % — so a difference of a few hundred instructions between two builds is a fact,
# not noise. What it does not see: the kernel's share (≈ half of a request's CPU here:
# sockets, wake-ups) and the cost of a cache miss or a mispredicted branch. Read it beside
# cpu_ab.sh, not instead of it.
#
#   benches/load/instructions.sh OLD_BUILD NEW_BUILD …   # one line per build and path
#   N=20000 …                                              # requests per count (default 10000)
#   LIMITS=1 …                                             # also hits on a route with a local
#                                                          # rate limit no request reaches
#                                                          # (builds with `rate_limits:` only)
#   TRACING=1 …                                            # also hits with `tracing:` on at
#                                                          # sample_ratio 0 (hit+ratio0) and 1
#                                                          # (hit+ratio1: spans exported to the
#                                                          # static nginx, which answers 200)
#                                                          # (builds with `tracing:` only)
#
# Each build serves N requests and then 2·N requests through a static provider and an
# nginx upstream, in two processes started the same way; the difference ÷ N leaves the
# start-up and shutdown out. Needs valgrind (apt install valgrind), nginx and oha.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

[ $# -ge 1 ] || { echo "usage: $0 BUILD [BUILD …]" >&2; exit 2; }
N=${N:-10000}
require_tools instructions valgrind nginx oha python3 curl

read -r UP_PID UP < <(static_upstream)
pids+=("$UP_PID")

export INSTR_TOKEN="instructions-token-0123456789abcdef"
LIMITS_SECTION= LIMITS_ROUTE=
if [ -n "${LIMITS:-}" ]; then
    LIMITS_SECTION='rate_limits:
  roomy: { rate: 1000000000/s, burst: 1000000 }'
    LIMITS_ROUTE='  - { name: limited, path_prefix: /limited, provider: idp, upstream: app, require_scopes: { all_of: [read] }, rate_limits: [roomy] }'
fi

count() { # build requests path [header] [extra YAML] → instructions the gateway ran, start to exit
    local bin=$1 n=$2 path=$3 header=${4:-} extra=${5:-} port admin dir pid
    port=$(free_port); admin=$(free_port)
    dir=$(mktemp -d "$work/gw.XXXX")
    cat > "$dir/config.yaml" <<CONF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
pid_file: $dir/pid
upgrade_sock: $dir/sock
shutdown_grace_period: 0s
log: { level: warn }
$extra
providers:
  idp:
    kind: static
    tokens:
      - { token: "\${INSTR_TOKEN}", identity: { subject: bench, scopes: [read, write], ip_restrict: [127.0.0.0/8] } }
upstreams: { app: "http://127.0.0.1:$UP" }
$LIMITS_SECTION
routes:
$LIMITS_ROUTE
  - { name: open, path_prefix: /open, auth: none, upstream: app }
  - { name: api, path_prefix: /, provider: idp, upstream: app, require_scopes: { all_of: [read] } }
CONF
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$dir/out" \
        "$bin" --config "$dir/config.yaml" > "$dir/log" 2>&1 &
    pid=$!
    wait_http "http://127.0.0.1:$admin/readyz" 120
    local -a h=()
    [ -n "$header" ] && h=(-H "$header")
    oha --no-tui -n "$n" -c 8 "${h[@]}" "http://127.0.0.1:$port$path" > "$dir/oha"
    grep -q "\[200\] $n responses" "$dir/oha" || {
        echo "instructions: not every answer was 200 ($bin $path):" >&2
        grep '\[' "$dir/oha" >&2
        exit 1
    }
    kill -TERM "$pid"
    wait "$pid" || true
    # The summary line: "summary: <Ir>".
    awk '/^summary:/ {print $2}' "$dir/out"
}

AUTH="Authorization: Bearer $INSTR_TOKEN"
CASES=("hit /x" "none /open/x")
if [ -n "${LIMITS:-}" ]; then
    CASES+=("limited /limited/x")
fi
if [ -n "${TRACING:-}" ]; then
    CASES+=("hit+ratio0 /x" "hit+ratio1 /x")
fi
echo "build path instructions_per_request"
for bin in "$@"; do
    for case in "${CASES[@]}"; do
        read -r label path <<<"$case"
        header= extra=
        [ "$label" != none ] && header=$AUTH
        case $label in
            hit+ratio*) extra="tracing: { endpoint: \"http://127.0.0.1:$UP\", sample_ratio: ${label#hit+ratio}, export_interval: 100ms }" ;;
        esac
        one=$(count "$bin" "$N" "$path" "$header" "$extra")
        two=$(count "$bin" $((2 * N)) "$path" "$header" "$extra")
        python3 -c "print(f'$bin $label {($two - $one) / $N:.0f}')"
    done
done
