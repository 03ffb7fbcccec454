#!/usr/bin/env bash
# Decision mode's cost (issue #38): CPU per request of sessiongate and of a front nginx, for
# a cached identity, three ways —
#   proxy      wrk → sessiongate (proxy listener) → upstream
#   decision   wrk → nginx auth_request → sessiongate (decision listener); nginx → upstream
#   static     wrk → nginx auth_request → a trivial auth service (nginx `return 200`);
#              nginx → upstream: the front proxy's own share, with an auth service that
#              does no work
#   ext_authz  oha (HTTP/2, h2c) → sessiongate's decision listener: Envoy's gRPC Check
#              call for the same request, as an Envoy sidecar would send it (no Envoy
#              installs here; the front-proxy column is then 0)
#   proxy_h2   oha (HTTP/2, h2c) → sessiongate (proxy listener) → upstream: proxying the
#              same request over the protocol Envoy asks in, beside ext_authz
#
#   benches/load/decision.sh                     # target/release/sessiongate
#   BIN=… RATE=4000 DURATION=10 ROUNDS=3 benches/load/decision.sh
#
# sessiongate (one worker) on CPU 0; the front nginx (one worker), the upstream nginx, the
# trivial auth service and oha on CPU 1. Every case runs at the same fixed rate (oha -q,
# 32 connections): CPU per request falls as load rises (more work per wake-up), so cases
# are compared at one rate, below what the slowest path sustains on these 2 cores.
# Keep-alive everywhere: nginx keeps 32 connections to sessiongate's decision listener and
# to the upstream. CPU is read from /proc before and after each run (nginx: master and
# workers). Compare within a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

BIN=${BIN:-target/release/sessiongate}
DURATION=${DURATION:-10}
RATE=${RATE:-4000}
ROUNDS=${ROUNDS:-3}
require_tools decision nginx oha python3 taskset curl

read -r UP_PID UP < <(static_upstream 1)
pids+=("$UP_PID")
export DECISION_TOKEN="decision-bench-token-0123456789"

PORT=$(free_port); ADMIN=$(free_port); DEC=$(free_port)
cat > "$work/sg.yaml" <<CONF
listen: 127.0.0.1:$PORT
admin_listen: 127.0.0.1:$ADMIN
pid_file: $work/sg.pid
upgrade_sock: $work/sg.sock
threads: 1
h2c: true
log: { level: warn }
trusted_proxies: [127.0.0.1/32]
decision: { listen: "127.0.0.1:$DEC" }
providers:
  idp:
    kind: static
    tokens:
      - { token: "\${DECISION_TOKEN}", identity: { subject: bench, scopes: [read, write] } }
upstreams: { app: "http://127.0.0.1:$UP" }
routes:
  - { name: api, path_prefix: /, provider: idp, upstream: app, require_scopes: { all_of: [read] } }
CONF
taskset -c 0 "$BIN" --config "$work/sg.yaml" > "$work/sg.log" 2>&1 &
SG_PID=$!
pids+=("$SG_PID")
wait_http "http://127.0.0.1:$ADMIN/readyz" 20

FRONT=$(free_port); STATIC_FRONT=$(free_port); STATIC_AUTH=$(free_port)
{
nginx_head front front
cat <<CONF
    upstream decision { server 127.0.0.1:$DEC; keepalive 32; keepalive_requests 1000000; }
    upstream trivial { server 127.0.0.1:$STATIC_AUTH; keepalive 32; keepalive_requests 1000000; }
    upstream app { server 127.0.0.1:$UP; keepalive 32; keepalive_requests 1000000; }
    # docs/decision-mode.md's nginx, with keep-alive to the upstream.
    server {
        listen 127.0.0.1:$FRONT;
        location / {
            auth_request /_sessiongate;
            auth_request_set \$sg_subject \$upstream_http_x_auth_subject;
            auth_request_set \$sg_scopes \$upstream_http_x_auth_scopes;
            auth_request_set \$sg_uri \$upstream_http_x_sessiongate_canonical_uri;
            proxy_set_header X-Auth-Subject \$sg_subject;
            proxy_set_header X-Auth-Scopes \$sg_scopes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app\$sg_uri;
        }
        location = /_sessiongate {
            internal;
            proxy_pass http://decision;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
    # The same front proxy asking an auth service that answers 200 and does nothing else.
    server {
        listen 127.0.0.1:$STATIC_FRONT;
        location / {
            auth_request /_trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location = /_trivial {
            internal;
            proxy_pass http://trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
    server { listen 127.0.0.1:$STATIC_AUTH; location / { return 200; } }
}
CONF
} > "$work/front.conf"
taskset -c 1 nginx -c "$work/front.conf" -p "$work/front" > /dev/null 2>&1 &
FRONT_PID=$!
pids+=("$FRONT_PID")
wait_http "http://127.0.0.1:$STATIC_FRONT/" 10
AUTH="Authorization: Bearer $DECISION_TOKEN"
curl -fs -o /dev/null -H "$AUTH" "http://127.0.0.1:$FRONT/x" || {
    echo "decision: the front nginx does not get 200 through sessiongate" >&2
    cat "$work/front-error.log" >&2
    exit 1
}
HZ=$(getconf CLK_TCK)

# The CheckRequest Envoy would send for `GET /x` with the token, as one gRPC message
# (protobuf written by hand here; tests/e2e/ext_authz_calls.py checks the gateway's
# reading against Envoy's own generated classes).
python3 - "$work/check.bin" <<'PY'
import os, sys
def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80]); n >>= 7
    return out + bytes([n])
def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload
def text(number, value):
    return field(number, value.encode())
http = (text(2, "GET") + text(4, "/x") + text(5, "api.example.com") + text(6, "http")
        + text(10, "HTTP/1.1")
        + field(3, text(1, "authorization") + text(2, "Bearer " + os.environ["DECISION_TOKEN"])))
source = field(1, field(1, field(1, text(2, "127.0.0.1"))))   # Peer.address.socket_address
message = field(1, source + field(4, field(2, http)))         # attributes: source, request.http
open(sys.argv[1], "wb").write(b"\0" + len(message).to_bytes(4, "big") + message)
PY
CHECK_URL="http://127.0.0.1:$DEC/envoy.service.auth.v3.Authorization/Check"
allowed_checks() { # the decisions counted allowed on the api route, in decision mode
    curl -fs "http://127.0.0.1:$ADMIN/metrics" | python3 -c '
import sys
print(sum(float(l.split()[-1]) for l in sys.stdin if l.startswith("sessiongate_requests_total{")
          and "mode=\"decision\"" in l and "outcome=\"allowed\"" in l and "route=\"api\"" in l))'
}

nginx_pids() { echo "$FRONT_PID $(pgrep -P "$FRONT_PID" | tr '\n' ' ')"; }

run() { # label port → one line: label req/s sessiongate-µs/req front-nginx-µs/req
    local label=$1 port=$2 s0 s1 n0 n1 out reqs a0=0 a1=0
    s0=$(python3 benches/load/cpu_ticks.py "$SG_PID"); n0=$(python3 benches/load/cpu_ticks.py $(nginx_pids))
    if [ "$label" = ext_authz ]; then
        a0=$(allowed_checks)
        taskset -c 1 oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c 32 \
            --http2 -p 1 -m POST -D "$work/check.bin" -T application/grpc -H "te: trailers" \
            "$CHECK_URL" > "$work/oha.json"
        a1=$(allowed_checks)
    elif [ "$label" = proxy_h2 ]; then
        taskset -c 1 oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c 32 \
            --http2 -p 1 -H "$AUTH" "http://127.0.0.1:$port/x" > "$work/oha.json"
    else
        taskset -c 1 oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c 32 \
            -H "$AUTH" "http://127.0.0.1:$port/x" > "$work/oha.json"
    fi
    s1=$(python3 benches/load/cpu_ticks.py "$SG_PID"); n1=$(python3 benches/load/cpu_ticks.py $(nginx_pids))
    python3 - "$work/oha.json" "$label" "$s0" "$s1" "$n0" "$n1" "$HZ" "$a0" "$a1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, s0, s1, n0, n1, hz = sys.argv[2], *map(int, sys.argv[3:8])
codes = r.get("statusCodeDistribution", {})
if set(codes) != {"200"}:
    sys.exit(f"{label}: answers other than 200: {codes}")
n = sum(int(v) for v in codes.values())
if label == "ext_authz":
    # A Check call answers HTTP 200 whatever it decides: every one must be counted allowed.
    allowed = float(sys.argv[9]) - float(sys.argv[8])
    if allowed != n:
        sys.exit(f"ext_authz: {n} calls, {allowed:.0f} decisions counted allowed")
    n1 = n0
p = r["latencyPercentiles"]
print(f"{label:<9} {n / r['summary']['total']:>6.0f} {(s1 - s0) / hz * 1e6 / n:>8.1f} "
      f"{(n1 - n0) / hz * 1e6 / n:>8.1f} {p['p50'] * 1e3:>7.3f} {p['p99'] * 1e3:>7.3f}")
PY
}

echo "case      req/s  sg_us/req nginx_us/req p50_ms  p99_ms"
for round in $(seq 1 "$ROUNDS"); do
    run proxy "$PORT"
    run decision "$FRONT"
    run static "$STATIC_FRONT"
    run ext_authz "$DEC"
    run proxy_h2 "$PORT"
done
