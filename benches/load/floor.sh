#!/usr/bin/env bash
# How far the gateway is from the least Pingora can do, and how far that is from nginx:
# CPU per request (user + system of all threads, and each apart) of, interleaved per round,
#   nginx-plain   nginx proxy_pass to the upstream (keepalive 64), no auth
#   floor         benches/load/floor.rs: Pingora's HTTP/1 codec and pool, a clone of the
#                 request head forwarded, the response streamed back, nothing else
#   sg-none       sessiongate, an `auth: none` route (what the gateway adds to the floor
#                 before any auth)
# each pinned to CPU 0 with one worker, wrk -t1 -c64 and the static upstream on CPU 1
# (as benches/load/run.sh).
#
#   cargo build --release && cargo build --release --example pingora_floor
#   ROUNDS=3 DURATION=8 bash benches/load/floor.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BIN=${SESSIONGATE_BIN:-target/release/sessiongate}
FLOOR=${FLOOR_BIN:-target/release/examples/pingora_floor}
require_tools floor nginx wrk python3 taskset curl
for b in "$BIN" "$FLOOR"; do
    [ -x "$b" ] || { echo "floor: $b missing (see the header of this script)" >&2; exit 1; }
done

UP=$(free_port); PROV=$(free_port); NGP=$(free_port); FL=$(free_port)
SG=$(free_port); SGADMIN=$(free_port)
. benches/load/nginx.sh
write_helpers_conf "$work/helpers.conf"
taskset -c 1 nginx -p "$work/nginx" -c "$work/helpers.conf" &
pids+=($!)
cat > "$work/plain.conf" <<CONF
$NGINX_COMMON
pid $work/plain.pid;
error_log $work/plain-error.log warn;
http {
    $NGINX_HTTP_COMMON
    upstream app { server 127.0.0.1:$UP; keepalive 64; }
    server {
        listen 127.0.0.1:$NGP;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
taskset -c 0 nginx -p "$work/nginx" -c "$work/plain.conf" &
pids+=($!)
taskset -c 0 "$FLOOR" "127.0.0.1:$FL" "127.0.0.1:$UP" > "$work/floor.log" 2>&1 &
FLOOR_PID=$!
pids+=($FLOOR_PID)
cat > "$work/sg.yaml" <<YAML
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SGADMIN
threads: 1
shutdown_grace_period: 0s
upstreams: { app: "http://127.0.0.1:$UP" }
routes:
  - { name: none, path_prefix: /, auth: none, upstream: app }
log: { level: warn }
YAML
taskset -c 0 "$BIN" --config "$work/sg.yaml" 2> "$work/sg.log" &
SG_PID=$!
pids+=($SG_PID)
for port in $UP $NGP $FL $SG; do
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/x" && break; sleep 0.05; done
    curl -fs -o /dev/null "http://127.0.0.1:$port/x" || { echo "floor: port $port does not answer" >&2; exit 1; }
done
nginx_pids() { local master; master=$(cat "$1"); echo "$master $(pgrep -P "$master" | tr '\n' ' ')"; }
PLAIN=$(nginx_pids "$work/plain.pid")
HZ=$(getconf CLK_TCK)

: > "$work/results.tsv"
run() { # name round port "pids"
    local before after out reqs
    local stat_pid= syscalls=-
    before=$(python3 benches/load/cpu_ticks.py --split $4)
    if [ -n "${SYSCALLS:-}" ]; then
        # SYSCALLS=1: system calls and context switches of the proxy, counted by perf.
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$(tr ' ' ',' <<<"$4" | sed 's/,*$//')" \
            -o "$work/stat-$1-$2.csv" -- sleep "$DURATION" &
        stat_pid=$!
    fi
    out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$3/api/x")
    after=$(python3 benches/load/cpu_ticks.py --split $4)
    if [ -n "$stat_pid" ]; then
        wait "$stat_pid" || true
        syscalls=$(awk -F, '/sys_enter/ {s=$1} /context-switches/ {c=$1} END {print s "/" c}' "$work/stat-$1-$2.csv")
    fi
    grep -q "Non-2xx" <<<"$out" && { echo "floor: $1 answered non-2xx" >&2; exit 1; }
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    python3 -c "
u0, s0, u1, s1 = map(int, '$before $after'.split())
f = 1e6 / $HZ / max($reqs, 1)
sc = '$syscalls'
per = '-' if sc == '-' else '/'.join(f'{int(x) / max($reqs, 1):.2f}' for x in sc.split('/'))
print(f'$1\t$2\t{$reqs / $DURATION:.0f}\t{(u1 - u0) * f:.2f}\t{(s1 - s0) * f:.2f}\t{per}')" >> "$work/results.tsv"
}
for round in $(seq "$ROUNDS"); do
    run nginx-plain "$round" "$NGP" "$PLAIN"
    run floor "$round" "$FL" "$FLOOR_PID"
    run sg-none "$round" "$SG" "$SG_PID"
done
python3 - "$work/results.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1])]
by = {}
calls = {}
for name, rnd, rps, user, system, per in rows:
    by.setdefault(name, []).append((float(rps), float(user), float(system)))
    calls.setdefault(name, []).append(per.strip())
print("| case | req/s (median) | CPU µs/request: user + kernel = total (median of rounds) | system calls / context switches per request (SYSCALLS=1) |")
print("|---|---|---|---|")
med = {}
for name in ["nginx-plain", "floor", "sg-none"]:
    rps = statistics.median(r for r, _, _ in by[name])
    u = statistics.median(x for _, x, _ in by[name])
    k = statistics.median(x for _, _, x in by[name])
    t = statistics.median(a + b for _, a, b in by[name])
    med[name] = t
    print(f"| {name} | {rps:,.0f} | {u:.1f} + {k:.1f} = {t:.1f} | {', '.join(calls[name])} |")
print()
print(f"- floor ÷ nginx-plain, CPU per request: {med['floor'] / med['nginx-plain']:.2f}")
print(f"- sg-none ÷ floor: {med['sg-none'] / med['floor']:.2f}")
print(f"- sg-none ÷ nginx-plain: {med['sg-none'] / med['nginx-plain']:.2f}")
PY
