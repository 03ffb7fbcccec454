#!/usr/bin/env bash
# The differential suite (issue #13): real backends behind sessiongate, hostile request
# variants, and one invariant — every request a backend handler runs is one the gateway
# authorized for that handler's route, method and host. See diff.py for the cases and
# the README ("Canonical requests") for how to add a backend.
#
# Backends: nginx (Debian), Flask/Werkzeug and Starlette/uvicorn (PyPI, in a venv), Go
# net/http (Debian golang-go), Node http. Plus one deliberately mismatched pair (a
# case-insensitive backend behind a case-sensitive gateway) that must show violations,
# so the checker is known to catch them, and the same backend behind a gateway with
# `requests.case_insensitive_paths: true`, which must show none. Then decision mode
# (issue #38): the same backends behind a front nginx, then a front Caddy, that ask the
# gateway's decision listener (tests/differential/front-nginx.conf,
# front-caddy.Caddyfile, as docs/decision-mode.md configures them), and the mismatched
# pair again behind each.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/lib.sh

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${DIFF_VENV:-target/differential-venv}
MIN_CASES=${DIFF_MIN_CASES:-500}
[ -x "$BIN" ] || { echo "differential: $BIN not built" >&2; exit 1; }
if [ ! -x "$VENV/bin/flask" ] || [ ! -x "$VENV/bin/uvicorn" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'flask==3.1.*' 'starlette==0.*' 'uvicorn==0.*'
fi
require_tools differential nginx caddy go node python3 curl

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT (20 s).
wait_port() {
    local i
    for i in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

export DIFF_TOKEN_READER=reader-$RANDOM$RANDOM DIFF_TOKEN_WRITER=writer-$RANDOM$RANDOM \
    DIFF_TOKEN_ADMIN=admin-$RANDOM$RANDOM

(cd tests/differential/backends/go && GO111MODULE=off GOCACHE="$work/gocache" go build -o "$work/go-backend" main.go)

start_backend() { # name port → starts it in the background
    local name=$1 port=$2
    case "$name" in
        nginx)
            mkdir -p "$work/nginx/tmp"
            sed -e "s#PORT#$port#g" -e "s#PREFIX#$work/nginx#g" \
                tests/differential/backends/nginx.conf > "$work/nginx/nginx.conf"
            nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
            ;;
        flask) "$VENV/bin/python" tests/differential/backends/flask_app.py "$port" 2>"$work/flask.log" & ;;
        starlette) "$VENV/bin/python" tests/differential/backends/starlette_app.py "$port" & ;;
        go) "$work/go-backend" "$port" & ;;
        node) node tests/differential/backends/node.js "$port" & ;;
        node-ci) CASE_INSENSITIVE=1 node tests/differential/backends/node.js "$port" & ;;
    esac
    pids+=($!)
}

run_pair() { # backend, gateway `requests:` line, extra diff.py flags
    # FRONT=nginx or FRONT=caddy: the requests go to a front proxy that asks the gateway's
    # decision listener (decision mode, issue #38) and forwards to the backend itself.
    local name=$1 requests=$2; shift 2
    local bport gport aport dport decision="" target
    bport=$(free_port); gport=$(free_port); aport=$(free_port); dport=$(free_port)
    start_backend "$name" "$bport"
    wait_port "$bport"
    local dir="$work/gw-$name-$gport"
    mkdir -p "$dir/tmp"
    if [ -n "${FRONT:-}" ]; then
        decision="decision: { listen: 127.0.0.1:$dport }\ntrusted_proxies: [127.0.0.1/32]"
    fi
    sed -e "s#{listen}#$gport#" -e "s#{admin}#$aport#" -e "s#{backend}#$bport#" \
        -e "s#{dir}#$dir#g" -e "s#{requests}#$requests#" -e "s#{decision}#$decision#" \
        tests/differential/gateway.yaml > "$dir/config.yaml"
    "$BIN" --config "$dir/config.yaml" > "$dir/log" 2>&1 &
    local gw=$! front=""
    pids+=($gw)
    wait_http "http://127.0.0.1:$aport/readyz" 20
    target=$gport
    if [ -n "${FRONT:-}" ]; then
        target=$(free_port)
        local template=tests/differential/front-nginx.conf
        [ "$FRONT" = caddy ] && template=tests/differential/front-caddy.Caddyfile
        # FRONT=nginx-raw: the configuration docs/decision-mode.md marks unsafe — nginx
        # forwards the client's target as sent instead of the one judged.
        local raw=""
        [ "$FRONT" = nginx-raw ] && raw='s#BACKEND\$sg_uri;#BACKEND;#'
        sed -e "${raw:-s#^##}" -e "s#FRONT#$target#" -e "s#DECISION#$dport#" \
            -e "s#BACKEND#$bport#" -e "s#PREFIX#$dir#g" "$template" > "$dir/front.conf"
        if [ "$FRONT" = caddy ]; then
            HOME=$dir XDG_DATA_HOME=$dir XDG_CONFIG_HOME=$dir \
                caddy run --config "$dir/front.conf" --adapter caddyfile > "$dir/front.log" 2>&1 &
        else
            nginx -c "$dir/front.conf" -p "$dir" &
        fi
        front=$!
        pids+=($front)
        wait_port "$target"
    fi
    local ok=0
    python3 tests/differential/diff.py "$target" "$name" --min-cases "$MIN_CASES" "$@" || ok=$?
    kill "$gw" $front
    if [ "$ok" -ne 0 ]; then
        failed+=("$name")
        # DIFF_KEEP_GOING=1 runs every pair before failing (to compare two builds).
        [ -n "${DIFF_KEEP_GOING:-}" ] || exit "$ok"
    fi
}

failed=()
for backend in nginx flask starlette go node; do
    run_pair "$backend" ""
done
echo "== mismatched on purpose: a case-insensitive backend behind a case-sensitive gateway"
run_pair node-ci "" --expect-violations
echo "== the same backend with requests.case_insensitive_paths: true"
run_pair node-ci "requests: { case_insensitive_paths: true }"
echo "== decision mode: a front nginx (auth_request) asks the gateway, the backends behind it"
for backend in nginx flask starlette go node; do
    FRONT=nginx run_pair "$backend" ""
done
echo "== decision mode, mismatched on purpose: the case-insensitive backend behind the front nginx"
FRONT=nginx run_pair node-ci "" --expect-violations
echo "== decision mode, unsafe on purpose: nginx forwarding the client's target (not the judged one) to Node"
FRONT=nginx-raw run_pair node "" --expect-violations
echo "== decision mode: a front Caddy (forward_auth) asks the gateway, the backends behind it"
for backend in nginx flask starlette go node; do
    FRONT=caddy run_pair "$backend" ""
done
echo "== decision mode, mismatched on purpose: the case-insensitive backend behind the front Caddy"
FRONT=caddy run_pair node-ci "" --expect-violations
if [ ${#failed[@]} -gt 0 ]; then
    echo "differential: FAILED for ${failed[*]}" >&2
    exit 1
fi
echo "differential: all backends agree with the gateway"
