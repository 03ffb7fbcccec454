#!/usr/bin/env bash
# TLS and HTTP/2 side by side: sessiongate's TLS listener vs nginx terminating TLS with
# auth_request + proxy_cache, the same certificate (ECDSA P-256), TLS 1.3, one worker
# each on CPU 0; the load generator (h2load), a static upstream and a fake BitGo provider
# (nginx) on CPU 1. Cases, interleaved per round:
#   ngx-h2   nginx,       HTTP/2 over TLS, cache hits   (h2load -c 16 -m 10)
#   sg-h2    sessiongate, HTTP/2 over TLS, cache hits
#   ngx-h1s  nginx,       HTTP/1.1 over TLS, cache hits (h2load --h1 -c 64)
#   sg-h1s   sessiongate, HTTP/1.1 over TLS, cache hits
# Upstreams are HTTP/1.1 for both. Reports req/s and CPU µs per request of the proxy
# process (user + system time of all its threads, as benches/load/run.sh). Connections
# are kept alive: this measures requests over TLS, not handshakes.
#
#   benches/load/tls.sh                       # 3 rounds x 8 s per case
#   ROUNDS=1 DURATION=2 benches/load/tls.sh   # smoke
# Needs: nginx, h2load (nghttp2-client), openssl, python3, a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BIN=${SESSIONGATE_BIN:-target/release/sessiongate}
OUT=${OUT:-}
require_tools tls-load nginx h2load openssl python3 taskset curl
[ -x "$BIN" ] || { echo "tls-load: $BIN missing: cargo build --release" >&2; exit 1; }

UP=$(free_port); PROV=$(free_port); NGX=$(free_port)
SG=$(free_port); SGTLS=$(free_port); SGADMIN=$(free_port)
TOKEN="bench-token-0123456789abcdef"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

. benches/load/nginx.sh
write_helpers_conf "$work/helpers.conf"
taskset -c 1 nginx -p "$work/nginx" -c "$work/helpers.conf" &
pids+=($!)

write_authreq_conf "$work/authreq.conf" "listen 127.0.0.1:$NGX ssl http2;
        ssl_certificate $work/tls.crt;
        ssl_certificate_key $work/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;"
taskset -c 0 nginx -p "$work/nginx" -c "$work/authreq.conf" &
pids+=($!)

cat > "$work/sessiongate.yaml" <<YAML
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SGADMIN
threads: 1
work_stealing: false
shutdown_grace_period: 0s
tls:
  listen: 127.0.0.1:$SGTLS
  certificates: [{ chain: $work/tls.crt, key: $work/tls.key }]
providers:
  bitgo:
    kind: bitgo
    url: http://127.0.0.1:$PROV/api/v2/user/session
cache: { ttl: 600s, max_entries: 100000 }
upstreams:
  app: http://127.0.0.1:$UP
routes:
  - name: api
    path_prefix: /
    provider: bitgo
    upstream: app
    require_scopes: { any_of: [wallet_view_*] }
log: { level: warn }
YAML
taskset -c 0 "$BIN" --config "$work/sessiongate.yaml" 2>>"$work/sessiongate.log" &
SG_PID=$!
pids+=($SG_PID)
wait_http "http://127.0.0.1:$SGADMIN/readyz" 20
for url in "https://127.0.0.1:$SGTLS/api/x" "https://127.0.0.1:$NGX/api/x"; do
    for _ in $(seq 100); do
        code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url" || true)
        [ "$code" = 200 ] && break
        sleep 0.05
    done
    [ "$code" = 200 ] || { echo "tls-load: $url answered $code" >&2; exit 1; }
done

nginx_pids() { local master; master=$(cat "$1"); echo "$master $(pgrep -P "$master" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)
results="$work/results.tsv"
: > "$results"
run_case() { # case round url "pids" h2load-args...
    local name=$1 round=$2 url=$3 cpu_pids=$4
    shift 4
    local before after out
    before=$(python3 benches/load/cpu_ticks.py $cpu_pids)
    out=$(taskset -c 1 h2load "$@" -D "$DURATION" --warm-up-time=1 \
        -H "authorization: Bearer $TOKEN" "$url" 2>&1)
    after=$(python3 benches/load/cpu_ticks.py $cpu_pids)
    python3 - "$name" "$round" "$before" "$after" "$HZ" <<PY >> "$results"
import re, sys
name, rnd, before, after, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = """$out"""
m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
if not (m and done and codes):
    sys.exit(f"tls-load: cannot read h2load's output for {name}:\n{out}")
ok, failed = int(done.group(2)), int(done.group(3))
non2xx = sum(int(codes.group(i)) for i in (2, 3, 4)) + failed
# --warm-up-time: requests during the warm-up are not in 'done', their CPU is; charge
# CPU over everything the proxy served in the window.
served = int(done.group(1))
cpu_us = (after - before) * 1e6 / hz / max(served, 1)
print(f"{name}\t{rnd}\t{float(m.group(2)):.0f}\t{non2xx}\t{cpu_us:.1f}")
PY
}

for round in $(seq 1 "$ROUNDS"); do
    run_case ngx-h2 "$round" "https://127.0.0.1:$NGX/api/x" "$(nginx_pids "$work/authreq.pid")" -c 16 -m 10
    run_case sg-h2 "$round" "https://127.0.0.1:$SGTLS/api/x" "$SG_PID" -c 16 -m 10
    run_case ngx-h1s "$round" "https://127.0.0.1:$NGX/api/x" "$(nginx_pids "$work/authreq.pid")" --h1 -c 64
    run_case sg-h1s "$round" "https://127.0.0.1:$SGTLS/api/x" "$SG_PID" --h1 -c 64
done

python3 - "$results" "$ROUNDS" "$DURATION" <<'PY' | tee "${OUT:-/dev/null}"
import statistics, sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(dict)
lines = [f"TLS load: h2load -D {sys.argv[3]}s (HTTP/2: -c 16 -m 10; HTTP/1.1 over TLS: --h1 -c 64), "
         f"{sys.argv[2]} interleaved round(s); TLS 1.3, ECDSA P-256; one worker each on CPU 0 "
         "(sessiongate threads: 1, work_stealing: false), h2load + upstream + provider on CPU 1.", "",
         "| case | round | req/s | non-2xx | CPU µs/request |", "|---|---|---|---|---|"]
for name, rnd, rps, bad, cpu in rows:
    lines.append(f"| {name} | {rnd} | {rps} | {bad} | {cpu} |")
    by[name][rnd] = (float(rps), float(cpu))
lines.append("")
for proto, sg, ngx in (("HTTP/2", "sg-h2", "ngx-h2"), ("HTTP/1.1 over TLS", "sg-h1s", "ngx-h1s")):
    rounds = sorted(set(by[sg]) & set(by[ngx]))
    rps = [by[sg][r][0] / by[ngx][r][0] for r in rounds]
    cpu = [by[sg][r][1] / by[ngx][r][1] for r in rounds]
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    lines.append(f"- {proto}, sessiongate ÷ nginx: req/s {fmt(rps)} (median **{statistics.median(rps):.2f}**); "
                 f"CPU per request {fmt(cpu)} (median **{statistics.median(cpu):.2f}**)")
print("\n".join(lines))
PY
bad=$(awk -F'\t' '$4 != 0' "$results" | wc -l)
[ "$bad" -eq 0 ] || { echo "tls-load: $bad case(s) had non-2xx answers or failures" >&2; exit 1; }
