#!/usr/bin/env bash
# Side-by-side load harness: sessiongate vs nginx auth_request + proxy_cache, on loopback.
#
#   benches/load/run.sh                      # full run: 3 interleaved rounds x 10 s per case
#   ROUNDS=1 DURATION=2 benches/load/run.sh  # smoke run (what .ci/run does)
#   PROFILE=/tmp/sg.perf benches/load/run.sh # also: perf profile of the first cache-hit run
#   PROFILE_FIXED=/tmp/f.txt benches/load/run.sh  # … and of the first fixed-rate hit run
#                                            # (PERF_CALLGRAPH=dwarf for whole call stacks)
#                                            # (summary in the file, raw data in FILE.data)
#
# Starts, each as its own process with one worker: a static upstream (nginx), a fake
# BitGo provider (nginx serving one session document, counting calls in its access log),
# sessiongate (release build), and nginx with auth_request + proxy_cache keyed on
# $http_authorization against the same provider and upstream. Then runs wrk -t1 -c64
# against, interleaved A B A B … per round:
#   1 upstream       the upstream directly (the ceiling)
#   2 sg-none        sessiongate, auth: none route (our own proxy cost)
#   3 sg-hit         sessiongate, cache hits, with scope and IP checks
#   4 nginx-hit      nginx auth_request, cache hits
#   4b nginx-id      nginx auth_request, cache hits, also sending the upstream what
#                    sessiongate sends (the identity as six X-Auth-* headers via
#                    auth_request_set, X-Forwarded-*, X-Real-IP, a request id; the same
#                    543-byte upstream request and 208-byte response): like for like on
#                    the wire, though nginx checks no scope or IP restriction
#   5 sg-miss        sessiongate, 10,000 distinct valid tokens (cache misses), counting
#                    provider calls
#   6 caddy-auth     Caddy forward_auth (Debian's caddy, GOMAXPROCS=1): it has no auth
#                    cache, so every request calls the auth service (a static 200 on the
#                    provider nginx); skipped when caddy is not installed
#   pair             sg-hit and nginx-hit loaded at the same time (a wrk each, the two
#                    proxies sharing CPU 0): their CPU per request measured under the same
#                    conditions, the ratio a slow spell of the shared machine cannot skew
# then, when oha is installed (`cargo install oha --locked`), a fixed-rate run of nginx
# auth_request and sessiongate cache hits (FIXED_RATE req/s, default 5000: a rate all of
# them sustain on this machine; latency corrected for coordinated omission), reporting
# p50/p99/p99.9 and CPU per request at that rate;
# and prints one table (req/s, p50, p99 and CPU µs per request of the proxy process —
# user + system time of all its threads — per case and round; ratios per round with their
# median). CPU per request is the figure to compare: it survives this machine's ±15%
# throughput drift. With OUT=FILE the table is also written there (BENCHMARKS.md uses
# it). The proxies under test run on CPU 0, wrk and the helper servers on CPU 1.
# sessiongate runs as recommended for one thread (`work_stealing: false`);
# SG_WORK_STEALING=true measures the shared runtime instead.
# Access logs are off on both sides; ACCESS_LOG=1 turns them on, as each ships: nginx's
# default `combined` line per request to a file, sessiongate's `level: info` (its default)
# with stderr to a file.
# Needs: nginx, wrk (Debian packages), python3, a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
FIXED_RATE=${FIXED_RATE:-5000}
BIN=${SESSIONGATE_BIN:-target/release/sessiongate}
OUT=${OUT:-}
ACCESS_LOG=${ACCESS_LOG:-}
SG_LOG_LEVEL=warn
[ -n "$ACCESS_LOG" ] && SG_LOG_LEVEL=info
require_tools load nginx wrk python3 taskset curl
[ -x "$BIN" ] || { echo "load: $BIN missing: cargo build --release" >&2; exit 1; }

UP=$(free_port); PROV=$(free_port); SG=$(free_port); SGADMIN=$(free_port); NGX=$(free_port)
NGXID=$(free_port)
CADDY=$(free_port)
# nginx workers run as the invoking user, with their temp files in the work dir.
. benches/load/nginx.sh
TOKEN="bench-token-0123456789abcdef"

# --- the static upstream and the fake provider: one nginx, two servers, CPU 1 ---
write_helpers_conf "$work/helpers.conf"
taskset -c 1 nginx -p "$work/nginx" -c "$work/helpers.conf" &
pids+=($!)

# --- nginx auth_request + proxy_cache, the usual alternative, CPU 0 ---
if [ -n "$ACCESS_LOG" ]; then
    write_authreq_conf "$work/authreq.conf" "listen 127.0.0.1:$NGX; access_log $work/authreq-access.log;" \
        "listen 127.0.0.1:$NGXID; access_log $work/authreq-access.log;"
else
    write_authreq_conf "$work/authreq.conf" "listen 127.0.0.1:$NGX;" "listen 127.0.0.1:$NGXID;"
fi
taskset -c 0 nginx -p "$work/nginx" -c "$work/authreq.conf" &
pids+=($!)

# --- Caddy forward_auth, the other common front (no auth cache), CPU 0 ---
CADDY_PID=
if command -v caddy >/dev/null; then
    mkdir -p "$work/caddy"
    cat > "$work/Caddyfile" <<CADDYFILE
{
    admin off
    auto_https off
    log {
        level ERROR
    }
}
http://127.0.0.1:$CADDY {
    forward_auth 127.0.0.1:$PROV {
        uri /auth
    }
    reverse_proxy 127.0.0.1:$UP
}
CADDYFILE
    XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" GOMAXPROCS=1 \
        taskset -c 0 caddy run --config "$work/Caddyfile" --adapter caddyfile \
        > "$work/caddy.log" 2>&1 &
    CADDY_PID=$!
    pids+=($CADDY_PID)
fi

# --- sessiongate, CPU 0 ---
cat > "$work/sessiongate.yaml" <<YAML
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SGADMIN
threads: 1
work_stealing: ${SG_WORK_STEALING:-false}
shutdown_grace_period: 0s
providers:
  bitgo:
    kind: bitgo
    url: http://127.0.0.1:$PROV/api/v2/user/session
cache: { ttl: 600s, max_entries: 100000 }
upstreams:
  app: http://127.0.0.1:$UP
routes:
  - { name: none, path_prefix: /none, auth: none, upstream: app }
  - name: api
    path_prefix: /
    provider: bitgo
    upstream: app
    require_scopes: { any_of: [wallet_view_*] }
    method_scopes: [{ methods: [POST], all_of: [wallet_spend_all] }]
log: { level: ${SG_LOG_LEVEL} }
YAML
start_sessiongate() {
    taskset -c 0 "$BIN" --config "$work/sessiongate.yaml" 2>>"$work/sessiongate.log" &
    SG_PID=$!
    pids+=($SG_PID)
    for _ in $(seq 200); do
        curl -fs -o /dev/null "http://127.0.0.1:$SGADMIN/readyz" && return 0
        sleep 0.05
    done
    echo "load: sessiongate did not start" >&2; cat "$work/sessiongate.log" >&2; exit 1
}
start_sessiongate
for port in $UP $PROV $NGX; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done

# Warm both caches with the hot token, and check every path answers 200.
if [ -n "$CADDY_PID" ]; then
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$CADDY/" && break; sleep 0.05; done
fi
for url in "http://127.0.0.1:$SG/api/x" "http://127.0.0.1:$NGX/api/x" "http://127.0.0.1:$NGXID/api/x" \
    ${CADDY_PID:+"http://127.0.0.1:$CADDY/api/x"}; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")
    [ "$code" = 200 ] || { echo "load: $url answered $code" >&2; exit 1; }
done
curl -fs -o /dev/null "http://127.0.0.1:$SG/none/x"

cat > "$work/hot.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat > "$work/miss.lua" <<'LUA'
-- Tokens miss-token-1 .. miss-token-10000, then again from 1. `issued` counts requests
-- sent (completed or still in flight when wrk stops): those are the ones that can reach
-- the provider, so distinct tokens = min(issued, 10000).
local threads = {}
function setup(thread) table.insert(threads, thread) end
n = 0
issued = 0
request = function()
    n = n + 1
    issued = issued + 1
    if n > 10000 then n = 1 end
    return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer miss-token-" .. n })
end
done = function(summary, latency, requests)
    local sent = 0
    for _, t in ipairs(threads) do sent = sent + t:get("issued") end
    io.write(string.format("REQUESTS %d\nISSUED %d\n", summary.requests, sent))
end
LUA

results="$work/results.tsv"
: > "$results"
HZ=$(getconf CLK_TCK)
# The processes whose CPU a case is charged: the proxy under test (every nginx process
# of an nginx instance: master and worker).
nginx_pids() { local master; master=$(cat "$1"); echo "$master $(pgrep -P "$master" | tr '\n' ' ')"; }
run_wrk() { # case round url script "pids"
    local name=$1 round=$2 url=$3 script=$4 cpu_pids=$5
    local out before after
    before=$(python3 benches/load/cpu_ticks.py --split $cpu_pids)
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url")
    after=$(python3 benches/load/cpu_ticks.py --split $cpu_pids)
    local rps p50 p99 errors reqs cpu_us split
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    # CPU µs per request: user + system, then user and system apart.
    split=$(python3 -c "
u0, s0, u1, s1 = map(int, '$before $after'.split())
f = 1e6 / $HZ / max($reqs, 1)
print(f'{(u1 - u0 + s1 - s0) * f:.2f}\t{(u1 - u0) * f:.2f}\t{(s1 - s0) * f:.2f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p50" "$p99" "${errors:-0}" "$split" >> "$results"
    echo "$out" > "$work/wrk-$name-$round.txt"
}

pairs="$work/pairs.tsv"
: > "$pairs"
run_pair() { # round: sessiongate hits and nginx auth_request hits loaded at the same time
    # (a wrk each on CPU 1, both proxies sharing CPU 0), so that a slow spell of the shared
    # machine hits both alike; CPU per request of each, and their ratio.
    local round=$1 sg0 ng0 sg1 ng1 w sg_reqs ng_reqs
    sg0=$(python3 benches/load/cpu_ticks.py $SG_PID)
    ng0=$(python3 benches/load/cpu_ticks.py $AUTHREQ)
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/hot.lua" \
        "http://127.0.0.1:$SG/api/x" > "$work/pair-sg-$round.txt" &
    w=$!
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/hot.lua" \
        "http://127.0.0.1:$NGX/api/x" > "$work/pair-nginx-$round.txt"
    wait "$w"
    sg1=$(python3 benches/load/cpu_ticks.py $SG_PID)
    ng1=$(python3 benches/load/cpu_ticks.py $AUTHREQ)
    if grep -q "Non-2xx" "$work/pair-sg-$round.txt" "$work/pair-nginx-$round.txt"; then
        echo "load: non-2xx answers in the paired run of round $round" >&2
        exit 1
    fi
    sg_reqs=$(awk '/requests in/ {print $1}' "$work/pair-sg-$round.txt")
    ng_reqs=$(awk '/requests in/ {print $1}' "$work/pair-nginx-$round.txt")
    python3 -c "print(f'pair\t$round\t{($sg1-$sg0)/$HZ*1e6/max($sg_reqs,1):.2f}\t{($ng1-$ng0)/$HZ*1e6/max($ng_reqs,1):.2f}')" >> "$pairs"
}

fixed="$work/fixed.tsv"
: > "$fixed"
run_oha() { # case round url "pids": FIXED_RATE req/s for DURATION, Authorization: the hot token
    local name=$1 round=$2 url=$3 cpu_pids=$4
    local before after
    before=$(python3 benches/load/cpu_ticks.py $cpu_pids)
    local perf_pid=
    if [ -n "${PROFILE_FIXED:-}" ] && [ "$name" = fixed-sg-hit ] && [ "$round" = 1 ]; then
        # PROFILE_FIXED=FILE: perf profile of sessiongate at the fixed rate (top symbols).
        perf record -F 1999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$SG_PID" -o "$work/perf-fixed.data" -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    # Requests still in flight at the end are waited for, not counted as aborted.
    taskset -c 1 oha -z "${DURATION}s" -q "$FIXED_RATE" -c "$CONNS" --latency-correction \
        --wait-ongoing-requests-after-deadline \
        --no-tui --output-format json -H "Authorization: Bearer $TOKEN" "$url" \
        > "$work/oha-$name-$round.json"
    after=$(python3 benches/load/cpu_ticks.py $cpu_pids)
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        cp "$work/perf-fixed.data" "$PROFILE_FIXED.data" 2>/dev/null || true   # for perf report -i
        perf report -i "$work/perf-fixed.data" --stdio --no-children -g none --percent-limit 0.3 \
            --sort dso,symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 > "$PROFILE_FIXED" || true
    fi
    python3 - "$work/oha-$name-$round.json" "$name" "$round" "$before" "$after" "$(getconf CLK_TCK)" >> "$fixed" <<'PY'
import json, sys
path, name, rnd, before, after, hz = sys.argv[1:7]
r = json.load(open(path))
codes = r.get("statusCodeDistribution", {})
ok = sum(n for c, n in codes.items() if c.startswith("2"))
total = sum(codes.values())
errors = sum(r.get("errorDistribution", {}).values())
for kind, n in r.get("errorDistribution", {}).items():
    print(f"load: {name} round {rnd}: {n} x {kind}", file=sys.stderr)
pct = r["latencyPercentiles"]
cpu_us = (int(after) - int(before)) / int(hz) * 1e6 / max(total, 1)
print("\t".join([name, rnd, f"{r['summary']['requestsPerSec']:.0f}",
                 *(f"{pct[k] * 1000:.3f}" for k in ("p50", "p99", "p99.9")),
                 str(total - ok + errors), f"{cpu_us:.2f}"]))
PY
}

for round in $(seq "$ROUNDS"); do
    HELPERS=$(nginx_pids "$work/helpers.pid")
    AUTHREQ=$(nginx_pids "$work/authreq.pid")
    run_wrk upstream "$round" "http://127.0.0.1:$UP/api/x" "$work/hot.lua" "$HELPERS"
    run_wrk sg-none "$round" "http://127.0.0.1:$SG/none/x" "$work/hot.lua" "$SG_PID"
    if [ -n "${PROFILE:-}" ] && [ "$round" = 1 ]; then
        # PROFILE=FILE: a perf profile of sessiongate during the first cache-hit run.
        # PERF_CALLGRAPH=dwarf: whole call stacks (the release build has no frame pointers).
        perf record -F 1999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$SG_PID" -o "$work/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
        run_wrk sg-hit "$round" "http://127.0.0.1:$SG/api/x" "$work/hot.lua" "$SG_PID"
        wait "$perf_pid" || true
        cp "$work/perf.data" "$PROFILE.data" 2>/dev/null || true   # for perf report -i
        perf report -i "$work/perf.data" --stdio --no-children -g none --percent-limit 0.05 \
            --sort symbol 2>/dev/null > "$work/perf.txt" || true
        python3 - "$work/perf.txt" > "$PROFILE" <<'PY'
import re, sys, collections
groups = collections.Counter()
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, kind, sym = float(m.group(1)), m.group(2), m.group(3).strip()
    rows.append((pct, kind, sym))
    if kind == "k":
        g = "kernel (TCP, syscalls, scheduling)"
    elif "sessiongate" in sym:
        g = "sessiongate (our request path)"
    elif "pingora" in sym:
        g = "pingora"
    elif re.search(r"\bmi_|_mi_|malloc|free\b", sym):
        g = "allocator (mimalloc)"
    elif "tokio" in sym:
        g = "tokio"
    elif re.search(r"\bhttp::|\bbytes::|httparse", sym):
        g = "http / bytes / httparse"
    elif "memmove" in sym or "memcpy" in sym or "memset" in sym or "memcmp" in sym:
        g = "libc mem*"
    else:
        g = "other"
    groups[g] += pct
print("share of sessiongate CPU samples by component (perf, cache-hit load):")
for g, pct in groups.most_common():
    print(f"  {pct:5.1f}%  {g}")
print("\ntop symbols:")
for pct, kind, sym in sorted(rows, reverse=True)[:25]:
    print(f"  {pct:5.2f}%  [{kind}] {sym[:110]}")
PY
    else
        run_wrk sg-hit "$round" "http://127.0.0.1:$SG/api/x" "$work/hot.lua" "$SG_PID"
    fi
    run_wrk nginx-hit "$round" "http://127.0.0.1:$NGX/api/x" "$work/hot.lua" "$AUTHREQ"
    run_wrk nginx-id "$round" "http://127.0.0.1:$NGXID/api/x" "$work/hot.lua" "$AUTHREQ"
    run_pair "$round"
    if [ -n "$CADDY_PID" ]; then
        run_wrk caddy-auth "$round" "http://127.0.0.1:$CADDY/api/x" "$work/hot.lua" "$CADDY_PID"
    fi
    if command -v oha >/dev/null; then
        # Fixed rate, order alternating per round.
        if [ $((round % 2)) = 1 ]; then
            run_oha fixed-nginx-hit "$round" "http://127.0.0.1:$NGX/api/x" "$AUTHREQ"
            run_oha fixed-sg-hit "$round" "http://127.0.0.1:$SG/api/x" "$SG_PID"
        else
            run_oha fixed-sg-hit "$round" "http://127.0.0.1:$SG/api/x" "$SG_PID"
            run_oha fixed-nginx-hit "$round" "http://127.0.0.1:$NGX/api/x" "$AUTHREQ"
        fi
    fi
    # Cache misses: a fresh gateway, 10,000 distinct tokens; count provider calls.
    kill "$SG_PID"; wait "$SG_PID" 2>/dev/null || true
    : > "$work/provider-access.log"
    kill -USR1 "$(cat "$work/helpers.pid")"   # reopen the access log
    sleep 0.2
    start_sessiongate
    : > "$work/provider-access.log"
    run_wrk sg-miss "$round" "http://127.0.0.1:$SG/api/x" "$work/miss.lua" "$SG_PID"
    sent=$(awk '/^ISSUED/ {print $2}' "$work/wrk-sg-miss-$round.txt")
    distinct=$(( sent < 10000 ? sent : 10000 ))
    sleep 0.3
    calls=$(grep -c 'user/session' "$work/provider-access.log" || true)
    printf 'miss\t%s\t%s\t%s\t%s\n' "$round" "$sent" "$distinct" "$calls" >> "$work/misses.tsv"
done

if [ -n "$ACCESS_LOG" ]; then
    # The logs were really written: one line per request on each side.
    ngx_lines=$(wc -l < "$work/authreq-access.log")
    sg_lines=$(grep -c 'sessiongate::access' "$work/sessiongate.log" || true)
    echo "load: access lines written: nginx $ngx_lines, sessiongate $sg_lines" >&2
    [ "$ngx_lines" -gt 0 ] && [ "$sg_lines" -gt 0 ] || { echo "load: ACCESS_LOG=1 but no access lines" >&2; exit 1; }
fi
SG_WORK_STEALING=${SG_WORK_STEALING:-false} \
FIXED_RATE=$FIXED_RATE \
python3 - "$results" "$work/misses.tsv" "$ROUNDS" "$DURATION" "$CONNS" "$OUT" "$fixed" "$pairs" <<'PY'
import statistics, sys, platform, os, datetime, subprocess
results, misses, rounds, duration, conns, out, fixed, pairs = sys.argv[1:9]
rows = [l.rstrip("\n").split("\t") for l in open(results)]
def ms(v):
    if v.endswith("us"): return float(v[:-2]) / 1000
    if v.endswith("ms"): return float(v[:-2])
    if v.endswith("s"): return float(v[:-1]) * 1000
    return float(v)
data = {}
split = {}
for name, rnd, rps, p50, p99, errors, cpu, user, system in rows:
    data.setdefault(name, {})[int(rnd)] = (float(rps), ms(p50), ms(p99), int(errors), float(cpu))
    split.setdefault(name, []).append((float(user), float(system)))
lines = []
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines.append(f"Date: {datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')}  ")
lines.append(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}  ")
lines.append(f"Load: wrk -t1 -c{conns} -d{duration}s on loopback, {rounds} interleaved round(s); "
             f"one worker each (sessiongate threads: 1, work_stealing: {os.environ.get('SG_WORK_STEALING', 'false')}; nginx worker_processes 1); proxies under test "
             "pinned to CPU 0, wrk + upstream + provider to CPU 1. Access logs: "
             + ("on (nginx `combined` to a file; sessiongate `level: info`, stderr to a file)." if os.environ.get("ACCESS_LOG") else "off."))
lines.append("")
lines.append("| case | round | req/s | p50 ms | p99 ms | non-2xx | CPU µs/request |")
lines.append("|---|---|---|---|---|---|---|")
names = ["upstream", "sg-none", "sg-hit", "nginx-hit", "nginx-id", "caddy-auth", "sg-miss"]
for name in names:
    for rnd in sorted(data.get(name, {})):
        rps, p50, p99, err, cpu = data[name][rnd]
        lines.append(f"| {name} | {rnd} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {err} | {cpu:.1f} |")
lines.append("")
r34 = [data["sg-hit"][r][0] / data["nginx-hit"][r][0] for r in sorted(data["sg-hit"])]
r32 = [data["sg-hit"][r][0] / data["sg-none"][r][0] for r in sorted(data["sg-hit"])]
p99_34 = [data["sg-hit"][r][2] / data["nginx-hit"][r][2] for r in sorted(data["sg-hit"])]
fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
cpu34 = [data["sg-hit"][r][4] / data["nginx-hit"][r][4] for r in sorted(data["sg-hit"])]
over = [data["sg-hit"][r][4] - data["sg-none"][r][4] for r in sorted(data["sg-hit"])]
lines.append(f"- CPU per request, sessiongate cache hit ÷ nginx auth_request hit: {fmt(cpu34)}; median **{statistics.median(cpu34):.2f}** (target ≤ 1.2, goal ≤ 1.0)")
pair_rows = [l.split() for l in open(pairs)]
if pair_rows:
    at_once = [float(sg) / float(ng) for _, _, sg, ng in pair_rows]
    lines.append(f"- CPU per request, both loaded at once (a wrk each; the two proxies share CPU 0, so a slow spell hits both): sessiongate hit ÷ nginx auth_request hit: {fmt(at_once)}; median **{statistics.median(at_once):.2f}** (µs: " + "; ".join(f"{float(sg):.1f} ÷ {float(ng):.1f}" for _, _, sg, ng in pair_rows) + ")")
if "nginx-id" in data:
    cpu3i = [data["sg-hit"][r][4] / data["nginx-id"][r][4] for r in sorted(data["sg-hit"])]
    r3i = [data["sg-hit"][r][0] / data["nginx-id"][r][0] for r in sorted(data["sg-hit"])]
    ngx_id_cost = [data["nginx-id"][r][4] - data["nginx-hit"][r][4] for r in sorted(data["sg-hit"])]
    lines.append(f"- like for like on the wire (nginx-id: nginx auth_request also sending the identity and forwarding headers sessiongate sends): CPU per request sessiongate hit ÷ nginx-id {fmt(cpu3i)}, median **{statistics.median(cpu3i):.2f}**; req/s {fmt(r3i)}, median **{statistics.median(r3i):.2f}**; what sending them costs nginx (nginx-id − nginx-hit, CPU µs per request): {fmt(ngx_id_cost)}, median **{statistics.median(ngx_id_cost):.1f} µs**")
lines.append("- CPU µs per request in user space + in the kernel (median of the rounds): "
             + "; ".join(f"{n} {statistics.median(u for u, _ in split[n]):.1f} + {statistics.median(k for _, k in split[n]):.1f}"
                         for n in ["upstream", "sg-none", "sg-hit", "nginx-hit", "nginx-id"] if n in split))
lines.append(f"- auth overhead, CPU µs per request (sessiongate hit − auth: none): {fmt(over)}; median **{statistics.median(over):.1f} µs** (target ≤ 3)")
lines.append(f"- ratio 3/4 (sessiongate cache hit ÷ nginx auth_request hit, req/s): {fmt(r34)}; median **{statistics.median(r34):.2f}** (target ≥ 0.9, goal ≥ 1.1)")
lines.append(f"- ratio 3/2 (sessiongate cache hit ÷ sessiongate auth: none, req/s): {fmt(r32)}; median **{statistics.median(r32):.2f}** (target ≥ 0.95)")
lines.append(f"- p99 sessiongate hit ÷ nginx hit: {fmt(p99_34)}; median **{statistics.median(p99_34):.2f}** (target ≤ 1.00)")
if "caddy-auth" in data:
    r36 = [data["sg-hit"][r][0] / data["caddy-auth"][r][0] for r in sorted(data["sg-hit"])]
    cpu36 = [data["sg-hit"][r][4] / data["caddy-auth"][r][4] for r in sorted(data["sg-hit"])]
    lines.append(f"- sessiongate cache hit ÷ Caddy forward_auth, req/s: {fmt(r36)}; median **{statistics.median(r36):.2f}** (target ≥ 5)")
    lines.append(f"- CPU per request, sessiongate cache hit ÷ Caddy forward_auth: {fmt(cpu36)}; median **{statistics.median(cpu36):.2f}**")
else:
    lines.append("- Caddy forward_auth: not measured (caddy is not installed)")
miss_problems = []
for l in open(misses):
    _, rnd, sent, distinct, calls = l.split()
    sent, distinct, calls = int(sent), int(distinct), int(calls)
    if sent >= 10000 + int(conns):
        # Every token was requested and answered: the count must be exact.
        ok = calls == distinct
        verdict = "exactly one per token" if ok else "MISMATCH"
    else:
        # wrk stopped part-way: requests cut off in flight may never reach the provider,
        # so only "no duplicate call" can be checked.
        ok = calls <= distinct
        verdict = ("no duplicates; run too short to cover all 10,000 tokens" if ok
                   else "DUPLICATE CALLS")
    if not ok:
        miss_problems.append(f"round {rnd}: {calls} provider calls for {distinct} tokens")
    lines.append(f"- cache misses, round {rnd}: {sent} requests sent, {distinct} distinct tokens, {calls} provider calls ({verdict})")
fixed_rows = [l.rstrip("\n").split("\t") for l in open(fixed)]
fx = {}
for name, rnd, rps, p50, p99, p999, errors, cpu in fixed_rows:
    fx.setdefault(name, {})[int(rnd)] = (float(rps), float(p50), float(p99), float(p999), int(errors), float(cpu))
lines.append("")
if fx:
    lines.append(f"Fixed rate: oha -q {os.environ['FIXED_RATE']} -c {conns} -z {duration}s --latency-correction (open loop, corrected for coordinated omission), same pinning, order alternating per round.")
    lines.append("")
    lines.append("| case | round | req/s | p50 ms | p99 ms | p99.9 ms | failed | CPU µs/request |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name in ["fixed-nginx-hit", "fixed-sg-hit"]:
        for rnd in sorted(fx.get(name, {})):
            rps, p50, p99, p999, err, cpu = fx[name][rnd]
            lines.append(f"| {name} | {rnd} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {p999:.3f} | {err} | {cpu:.1f} |")
    lines.append("")
    both = sorted(set(fx.get("fixed-sg-hit", {})) & set(fx.get("fixed-nginx-hit", {})))
    if both:
        p99r = [fx["fixed-sg-hit"][r][2] / fx["fixed-nginx-hit"][r][2] for r in both]
        p999r = [fx["fixed-sg-hit"][r][3] / fx["fixed-nginx-hit"][r][3] for r in both]
        cpur = [fx["fixed-sg-hit"][r][5] / fx["fixed-nginx-hit"][r][5] for r in both]
        lines.append(f"- fixed rate, p99 sessiongate hit ÷ nginx auth_request hit: {fmt(p99r)}; median **{statistics.median(p99r):.2f}** (target ≤ 1.0)")
        lines.append(f"- fixed rate, p99.9 sessiongate hit ÷ nginx auth_request hit: {fmt(p999r)}; median **{statistics.median(p999r):.2f}**")
        lines.append(f"- fixed rate, CPU per request sessiongate hit ÷ nginx auth_request hit: {fmt(cpur)}; median **{statistics.median(cpur):.2f}**")
else:
    lines.append("- fixed-rate run: not measured (oha is not installed: cargo install oha --locked)")
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
# Correctness, not speed, fails the run: every response 2xx, one provider call per token.
bad = [f"{n} round {r}: {v[3]} non-2xx" for n in data for r, v in data[n].items() if v[3]]
bad += miss_problems
bad += [f"{n} round {r}: {v[4]} failed at a fixed rate" for n in fx for r, v in fx[n].items() if v[4]]
if bad:
    sys.exit("load: " + "; ".join(bad))
PY
echo "load: done, $(wc -l < "$results") runs"
