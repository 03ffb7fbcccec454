#!/usr/bin/env bash
# Operations against the real binary, under load from wrk:
#   1. hot reload: SIGHUP every 0.3 s while wrk runs, alternating two valid configs (one
#      adds a route and changes the provider) with an invalid one; wrk must see zero
#      non-2xx responses and zero socket errors; the valid reloads apply, the invalid ones
#      are rejected (metric and log) and the old config keeps serving.
#   2. zero-downtime upgrade: a second process started with --upgrade takes the listening
#      sockets over when the first gets SIGQUIT; wrk, running across the hand-over, must
#      again see only 2xx responses, and the new process must serve afterwards.
# Needs: wrk, curl, python3, and a built binary (SESSIONGATE_BIN, default
# target/debug/sessiongate). DURATION (seconds, default 6) sets each wrk run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
DURATION=${DURATION:-6}
require_tools operations wrk curl python3
[ -x "$BIN" ] || { echo "operations: $BIN not built (run cargo build)" >&2; exit 1; }

LISTEN=$(free_port); ADMIN=$(free_port)
TOKEN="ops-token-$RANDOM$RANDOM"
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)

# config SUBJECT EXTRA_ROUTE: a valid config; the subject changes the provider definition.
config() {
    cat <<YAML
listen: 127.0.0.1:$LISTEN
admin_listen: 127.0.0.1:$ADMIN
shutdown_grace_period: 2s
pid_file: $work/sessiongate.pid
upgrade_sock: $work/upgrade.sock
providers:
  demo:
    kind: static
    tokens:
      - token_sha256: $DIGEST
        identity: { subject: $1, scopes: [read] }
routes:
  - { name: api, path_prefix: /api, provider: demo, upstream: echo }
$2
log: { format: json, level: info }
YAML
}
config alice "" > "$work/a.yaml"
config bob "  - { name: extra, path_prefix: /extra, provider: demo, upstream: echo }" > "$work/b.yaml"
printf 'listen: [not, an, address]\n' > "$work/bad.yaml"
cp "$work/a.yaml" "$work/sessiongate.yaml"

"$BIN" --config "$work/sessiongate.yaml" 2>"$work/first.log" &
FIRST=$!
pids+=($FIRST)
wait_http "http://127.0.0.1:$ADMIN/readyz" 30

# wrk_run NAME: DURATION seconds of keep-alive load; fails on any non-2xx or socket error.
wrk_run() {
    wrk -t1 -c8 -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$LISTEN/api/x" > "$work/$1.wrk" 2>&1
    cat "$work/$1.wrk"
    if grep -Eq 'Non-2xx|Socket errors' "$work/$1.wrk"; then
        echo "operations: $1: wrk saw failed requests" >&2
        exit 1
    fi
    grep -q 'Requests/sec' "$work/$1.wrk" || { echo "operations: $1: wrk did not run" >&2; exit 1; }
}

metric() {
    curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

echo "== reload under load (SIGHUP)"
wrk_run reload &
WRK=$!
sleep 0.5
sent=0
end=$(( SECONDS + DURATION - 1 ))
while [ $SECONDS -lt $end ]; do
    for f in b bad a; do
        cp "$work/$f.yaml" "$work/sessiongate.yaml"
        kill -HUP "$FIRST"
        sent=$((sent + 1))
        sleep 0.3
    done
done
wait "$WRK"
cp "$work/b.yaml" "$work/sessiongate.yaml"
kill -HUP "$FIRST"
sleep 0.5
applied=$(metric 'sessiongate_config_reloads_total{result="applied"}')
rejected=$(metric 'sessiongate_config_reloads_total{result="rejected"}')
echo "SIGHUPs sent: $sent (+1), applied: $applied, rejected: $rejected"
[ "${applied%.*}" -ge 2 ] && [ "${rejected%.*}" -ge 1 ] || { echo "operations: reloads not applied/rejected as sent" >&2; exit 1; }
[ "$(metric sessiongate_config_last_reload_success)" = 1 ] || { echo "operations: last reload should have applied" >&2; exit 1; }
body=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$LISTEN/extra/y")
echo "$body" | grep -q '"x-auth-subject": "bob"' || { echo "operations: reloaded config not in force: $body" >&2; exit 1; }
grep -q 'configuration reload rejected' "$work/first.log" || { echo "operations: rejected reload not logged" >&2; exit 1; }

echo "== zero-downtime upgrade (--upgrade + SIGQUIT)"
wrk_run upgrade &
WRK=$!
sleep 1
"$BIN" --config "$work/sessiongate.yaml" --upgrade 2>"$work/second.log" &
SECOND=$!
pids+=($SECOND)
# The new process waits on the upgrade socket; give it a moment to listen there.
for _ in $(seq 100); do [ -S "$work/upgrade.sock" ] && break; sleep 0.05; done
sleep 0.3
# The documented way: the pid file still names the old process until the hand-over.
[ "$(cat "$work/sessiongate.pid")" = "$FIRST" ] || { echo "operations: pid file does not name the running process" >&2; exit 1; }
kill -QUIT "$(cat "$work/sessiongate.pid")"
wait "$WRK"
# The old process finishes its in-flight requests and exits.
for _ in $(seq 100); do kill -0 "$FIRST" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$FIRST" 2>/dev/null; then echo "operations: the old process did not exit" >&2; exit 1; fi
kill -0 "$SECOND" || { echo "operations: the new process is not running" >&2; cat "$work/second.log" >&2; exit 1; }
[ "$(cat "$work/sessiongate.pid")" = "$SECOND" ] || { echo "operations: pid file not updated by the new process" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$LISTEN/api/z")
[ "$code" = 200 ] || { echo "operations: new process answered $code" >&2; exit 1; }
curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null
echo "operations: ok"
