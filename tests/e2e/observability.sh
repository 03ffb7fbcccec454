#!/usr/bin/env bash
# Observability checked by independent tools, against the real binary:
#   1. `promtool check metrics` on /metrics;
#   2. a real Prometheus server scrapes sessiongate; its HTTP API must report
#      up{job="sessiongate"} == 1 and request counters equal to the requests sent;
#   3. every query of the Grafana dashboard parses in Prometheus (`promtool query instant`).
# Needs: promtool and prometheus (Debian package `prometheus`; .ci/run installs it), curl,
# python3, and a built binary (SESSIONGATE_BIN, default target/debug/sessiongate).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
require_tools observability promtool prometheus curl python3
[ -x "$BIN" ] || { echo "observability: $BIN not built (run cargo build)" >&2; exit 1; }

LISTEN=$(free_port); ADMIN=$(free_port); PROM=$(free_port)
TOKEN="e2e-valid-token-$RANDOM$RANDOM"
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)

cat > "$work/sessiongate.yaml" <<YAML
listen: 127.0.0.1:$LISTEN
admin_listen: 127.0.0.1:$ADMIN
shutdown_grace_period: 0s
providers:
  demo:
    kind: static
    tokens:
      - token_sha256: $DIGEST
        identity: { subject: e2e, scopes: [read] }
routes:
  - { name: public, path_prefix: /public, auth: none, upstream: echo }
  - { name: api, path_prefix: /, provider: demo, upstream: echo }
log: { format: json, level: warn }
YAML
"$BIN" --config "$work/sessiongate.yaml" 2>"$work/sessiongate.log" &
pids+=($!)

wait_http "http://127.0.0.1:$ADMIN/readyz" 30

ALLOWED=7; INVALID=3; MISSING=2
for _ in $(seq $ALLOWED); do
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$LISTEN/api/x"
done
for i in $(seq $INVALID); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope-$i" "http://127.0.0.1:$LISTEN/api/x")
    [ "$code" = 401 ] || { echo "expected 401, got $code" >&2; exit 1; }
done
for _ in $(seq $MISSING); do
    curl -s -o /dev/null "http://127.0.0.1:$LISTEN/api/x"
done

echo "== promtool check metrics"
curl -fs "http://127.0.0.1:$ADMIN/metrics" > "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt"

echo "== a real Prometheus scrape"
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sessiongate
    static_configs:
      - targets: ["127.0.0.1:$ADMIN"]
YAML
prometheus --config.file="$work/prometheus.yml" --web.listen-address="127.0.0.1:$PROM" \
    --storage.tsdb.path="$work/tsdb" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$PROM/-/ready" 60

query() { # expr → the single value, or "none"
    curl -fs "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
expect() { # expr, wanted value
    local got
    for _ in $(seq 1 120); do
        got=$(query "$1")
        [ "$got" = "$2" ] && { echo "ok: $1 = $got"; return 0; }
        sleep 0.5
    done
    echo "observability: $1 = $got, wanted $2" >&2
    tail -20 "$work/prometheus.log" >&2
    return 1
}
expect 'up{job="sessiongate"}' 1
expect 'sum(sessiongate_requests_total{job="sessiongate",route="api",outcome="allowed"})' $ALLOWED
expect 'sum(sessiongate_requests_total{job="sessiongate",route="api",outcome="invalid_token"})' $INVALID
expect 'sum(sessiongate_requests_total{job="sessiongate",route="api",outcome="missing_token"})' $MISSING
expect 'sum(sessiongate_cache_lookups_total{job="sessiongate",result="hit"})' $(( ALLOWED - 1 ))
expect 'count(sessiongate_build_info{job="sessiongate"})' 1

echo "== every dashboard query parses"
python3 - "$work/queries.txt" <<'PY'
import json, sys
dash = json.load(open("deploy/grafana/sessiongate.json"))
with open(sys.argv[1], "w") as out:
    for panel in dash["panels"]:
        for t in panel["targets"]:
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$job", ".*")
            out.write(expr + "\n")
PY
while IFS= read -r expr; do
    promtool query instant "http://127.0.0.1:$PROM" "$expr" >/dev/null ||
        { echo "observability: dashboard query does not parse: $expr" >&2; exit 1; }
done < "$work/queries.txt"
echo "ok: $(wc -l < "$work/queries.txt") dashboard queries"

if grep -q "$TOKEN" "$work/sessiongate.log"; then
    echo "observability: the token appears in the logs" >&2
    exit 1
fi
echo "observability: all checks passed (promtool, Prometheus scrape, dashboard queries)"
