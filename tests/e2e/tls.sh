#!/usr/bin/env bash
# The TLS listener and HTTP/2 with real clients (issue #17): curl (HTTP/1.1 and HTTP/2,
# TLS 1.2 and 1.3, SNI), openssl s_client (versions refused, ALPN, certificate per name),
# testssl.sh (no HIGH or CRITICAL finding), certificate rotation under load (new
# connections and HTTP/2 streams) with no failed request, h2load over TLS and over h2c. Certificates come
# from `openssl req` (a test CA, an RSA and an ECDSA leaf). Run by .ci/run.
#   SESSIONGATE_BIN  the binary (default target/debug/sessiongate)
#   SKIP_TESTSSL=1   skip testssl.sh (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/lib.sh

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
[ -x "$BIN" ] || { echo "tls: $BIN not built" >&2; exit 1; }
require_tools tls curl openssl python3 h2load
[ -n "${SKIP_TESTSSL:-}" ] || require_tools tls testssl

fail() { echo "tls: FAIL: $*" >&2; exit 1; }
pass() { echo "tls: $*"; }

# --- certificates: a CA, api.test (RSA 2048) and *.svc.test (ECDSA P-256)
pki=$work/pki
mkdir -p "$pki"
clients=()
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=sessiongate e2e CA" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
# leaf NAME FILE KEYTYPE...: a certificate for NAME signed by the CA.
leaf() {
    local name=$1 file=$2
    shift 2
    openssl req -newkey "$@" -nodes -subj "/CN=$name" -keyout "$file.key.new" \
        -out "$file.csr" 2>/dev/null
    # (a CRL location as a public CA gives: testssl.sh rates a certificate without one HIGH)
    printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\ncrlDistributionPoints=URI:http://crl.example.test/ca.crl\n' "$name" > "$file.ext"
    openssl x509 -req -in "$file.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 90 -extfile "$file.ext" -out "$file.crt.new" 2>/dev/null
    # The chain file: leaf, then the CA (as a Kubernetes tls.crt from cert-manager).
    cat "$file.crt.new" "$pki/ca.crt" > "$file.chain.new"
}
# install FILE: the new pair replaces the served one, key first (a watcher between the
# two moves sees a pair that does not match, and must keep the old one).
install() {
    mv "$1.key.new" "$1.key"
    mv "$1.chain.new" "$1.crt"
}
leaf api.test "$pki/api" rsa:2048 && install "$pki/api"
leaf '*.svc.test' "$pki/svc" ec -pkeyopt ec_paramgen_curve:prime256v1 && install "$pki/svc"
leaf upstream.test "$pki/up" ec -pkeyopt ec_paramgen_curve:prime256v1 && install "$pki/up"

# --- an HTTPS upstream (nginx; stub_status counts the connections it accepted)
ups_port=$(free_port)
ups_status=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/upstream-tls.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/upstream-tls.pid;
error_log $work/upstream-tls-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$ups_port ssl;
        ssl_certificate $pki/up.crt;
        ssl_certificate_key $pki/up.key;
        location / { return 200 "secure upstream\n"; }
    }
    server {
        listen 127.0.0.1:$ups_status;
        location / { stub_status; }
    }
}
CONF
nginx -p "$work/nginx" -c "$work/upstream-tls.conf" -e "$work/upstream-tls-error.log" &
pids+=($!)

# --- upstream (Python, HTTP/1.1, answers with what it received) and the gateway
up_port=$(free_port)
cat > "$work/upstream.py" <<'PY'
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        # A kept-alive connection the gateway's pool closes is not an error of the test.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)
Server(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/upstream.py" "$up_port" &
pids+=($!)

listen=$(free_port)
admin=$(free_port)
tls=$(free_port)
token=e2e-tls-token-0123456789abcdef
sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat > "$work/config.yaml" <<YAML
listen: 127.0.0.1:$listen
admin_listen: 127.0.0.1:$admin
shutdown_grace_period: 1s
h2c: true
tls:
  listen: 127.0.0.1:$tls
  certificates:
    - { chain: pki/api.crt, key: pki/api.key }
    - { chain: pki/svc.crt, key: pki/svc.key }
  watch: 1s
providers:
  s:
    kind: static
    tokens:
      - { token_sha256: $sha, identity: { subject: alice, scopes: [read] } }
upstreams:
  app: "http://127.0.0.1:$up_port"
  secure: { url: "https://127.0.0.1:$ups_port", ca_file: pki/ca.crt, server_name: upstream.test }
routes:
  - { name: secure, path_prefix: /secure, provider: s, upstream: secure }
  - { name: app, path_prefix: /, provider: s, upstream: app, require_scopes: { all_of: [read] } }
YAML
"$BIN" --config "$work/config.yaml" --check > /dev/null || fail "config check"
"$BIN" --config "$work/config.yaml" > "$work/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$admin/readyz" 20

url="https://api.test:$tls/orders"
b=(curl -sS --cacert "$pki/ca.crt" --resolve "api.test:$tls:127.0.0.1"
   --resolve "orders.svc.test:$tls:127.0.0.1")
c=("${b[@]}" -H "authorization: Bearer $token")

# --- curl: HTTP/1.1 and HTTP/2, TLS 1.2 and 1.3, identity at the upstream
for proto in --http1.1 --http2; do
    for v in "--tlsv1.2 --tls-max 1.2" "--tlsv1.3"; do
        # shellcheck disable=SC2086
        out=$("${c[@]}" $proto $v -o "$work/body" -w '%{http_code} %{http_version} %{ssl_verify_result}' "$url") \
            || fail "curl $proto $v"
        want=$([ "$proto" = --http2 ] && echo 2 || echo 1.1)
        [ "$out" = "200 $want 0" ] || fail "curl $proto $v: $out"
        python3 - "$work/body" <<'PY' || fail "upstream headers ($proto $v)"
import json, sys
h = json.load(open(sys.argv[1]))["headers"]
assert h["x-auth-subject"] == "alice", h
assert h["x-forwarded-proto"] == "https", h
assert h["host"].startswith("api.test:"), h
PY
    done
done
pass "curl: HTTP/1.1 and HTTP/2 over TLS 1.2 and 1.3, verified, identity and x-forwarded-proto: https upstream"

out=$("${b[@]}" --http2 -o /dev/null -w '%{http_code} %{http_version}' "https://orders.svc.test:$tls/x" -H 'authorization: Bearer wrong') \
    || fail "curl SNI"
[ "$out" = "401 2" ] || fail "SNI svc.test / bad token: $out"
out=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' \
    -H "authorization: Bearer $token" "http://127.0.0.1:$listen/orders") || fail "h2c"
[ "$out" = "200 2" ] || fail "h2c: $out"
out=$(curl -sS --http1.1 -o /dev/null -w '%{http_code}' -H 'Connection: Upgrade, HTTP2-Settings' \
    -H 'Upgrade: h2c' -H 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA' \
    -H "authorization: Bearer $token" "http://127.0.0.1:$listen/orders") || fail "upgrade h2c"
[ "$out" != "101" ] || fail "Upgrade: h2c was switched"
pass "curl: SNI wildcard certificate, 401 over HTTP/2, h2c with prior knowledge on the plain listener, no Upgrade: h2c"

# --- openssl s_client: certificate per name, ALPN, old versions refused
# (exit status ignored: a refused handshake is what some checks want; the text decides)
s_client() { openssl s_client -connect "127.0.0.1:$tls" -CAfile "$pki/ca.crt" "$@" < /dev/null 2>&1 || true; }
subject() { s_client "$@" | openssl x509 -noout -subject 2>/dev/null; }
[[ $(subject -servername api.test) == *"CN = api.test"* ]] || fail "SNI api.test"
[[ $(subject -servername orders.svc.test) == *"CN = *.svc.test"* ]] || fail "SNI orders.svc.test"
[[ $(subject -noservername) == *"CN = api.test"* ]] || fail "no SNI: the first certificate"
s_client -servername api.test -alpn h2,http/1.1 | grep -q "ALPN protocol: h2" || fail "ALPN h2"
s_client -servername api.test -tls1_2 | grep -q "Verify return code: 0 (ok)" || fail "TLS 1.2"
for old in -tls1 -tls1_1; do
    s_client -servername api.test "$old" -cipher 'DEFAULT:@SECLEVEL=0' | grep -q "Cipher is (NONE)" \
        || fail "$old accepted"
done
s_client -servername api.test -tls1_2 -cipher 'AES128-SHA:AES256-SHA:DES-CBC3-SHA' | grep -q "Cipher is (NONE)" \
    || fail "a CBC / RSA-key-exchange cipher was accepted"
pass "openssl s_client: the certificate chosen by SNI (default without), ALPN h2, TLS 1.0/1.1 and CBC ciphers refused"

# --- rotation under load: two rotations while six clients open a new TLS connection per
# request and h2load keeps 8 HTTP/2 connections busy; no request may fail
before=$(openssl x509 -noout -fingerprint -in "$pki/api.crt")
(
    sleep 1.5
    leaf api.test "$pki/api" rsa:2048 && install "$pki/api"
    sleep 1.5
    leaf api.test "$pki/api" ec -pkeyopt ec_paramgen_curve:prime256v1 && install "$pki/api"
) &
rotator=$!
h2load -D 5 -c 8 -m 10 -H "authorization: Bearer $token" "https://127.0.0.1:$tls/orders" \
    > "$work/rotation-h2load.txt" 2>&1 &
loader=$!
end=$(( $(date +%s) + 5 ))
for n in 1 2 3 4 5 6; do
    (
        while [ "$(date +%s)" -lt "$end" ]; do
            "${c[@]}" --http1.1 -o /dev/null -w '%{http_code}\n' "$url" 2>/dev/null || echo 000
        done > "$work/rotation-$n.txt"
    ) &
    clients+=($!)
done
wait "${clients[@]}" "$rotator" "$loader"
served=$(cat "$work"/rotation-[1-6].txt | wc -l)
failed=$(cat "$work"/rotation-[1-6].txt | awk '$0 != "200" {n++} END {print n + 0}')
[ "$failed" -eq 0 ] || fail "$failed of $served new-connection requests failed during the rotations"
grep -q " 0 failed, 0 errored, 0 timeout" "$work/rotation-h2load.txt" \
    && grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$work/rotation-h2load.txt" \
    || fail "h2load during the rotations: $(cat "$work/rotation-h2load.txt")"
h2done=$(grep -o "[0-9]* succeeded" "$work/rotation-h2load.txt" | cut -d' ' -f1)
# The watcher loads new files once they stay the same for one more check: one to two
# `watch` intervals (1 s) after the last write, which may be near the end of the load.
want=$(openssl x509 -noout -fingerprint -in "$pki/api.crt")
for _ in $(seq 40); do
    after=$(s_client -servername api.test | openssl x509 -noout -fingerprint)
    [ "$after" = "$want" ] && break
    sleep 0.1
done
[ "$after" = "$want" ] && [ "$after" != "$before" ] \
    || fail "the rotated certificate is not served within 4 s of the last rotation"
# A broken pair (a key that is not the certificate's) keeps the rotated one.
leaf api.test "$pki/api" rsa:2048
mv "$pki/api.chain.new" "$pki/api.crt"
sleep 2.5
[ "$(s_client -servername api.test | openssl x509 -noout -fingerprint)" = "$after" ] \
    || fail "a broken pair replaced the certificate"
grep -q 'previous certificates stay in use' "$work/gateway.log" || fail "the rejected pair was not logged"
metrics=$(curl -s "http://127.0.0.1:$admin/metrics")
grep -q 'sessiongate_tls_certificate_reloads_total{result="loaded"} [12]$' <<<"$metrics" || fail "loaded count"  # two rotations; one load if a slow watcher saw only the second
grep -q 'sessiongate_tls_certificate_reloads_total{result="rejected"} [1-9]' <<<"$metrics" || fail "rejected count"
mv "$pki/api.key.new" "$pki/api.key"
pass "rotation under load: two rotations during $served requests on new connections (6 clients) and $h2done HTTP/2 requests (8 connections), 0 failed; the new certificate served; a broken pair rejected, logged, counted, the old one kept"

# --- h2load over TLS (ALPN h2) and h2c
h2() { h2load "$@" -H "authorization: Bearer $token" 2>&1; }
out=$(h2 -n 2000 -c 4 -m 10 "https://127.0.0.1:$tls/orders")
grep -q "2000 succeeded, 0 failed" <<<"$out" && grep -q "status codes: 2000 2xx" <<<"$out" \
    && grep -q "Application protocol: h2" <<<"$out" || fail "h2load over TLS: $out"
out=$(h2 -n 2000 -c 4 -m 10 "http://127.0.0.1:$listen/orders")
grep -q "2000 succeeded, 0 failed" <<<"$out" && grep -q "status codes: 2000 2xx" <<<"$out" \
    || fail "h2load h2c: $out"
pass "h2load: 2,000 requests over TLS+h2 and 2,000 over h2c, 10 streams per connection, all 200"

# --- the HTTPS upstream: verified with its private CA and name, connections reused
accepted() { curl -s "http://127.0.0.1:$ups_status/" | awk 'NR==3 {print $1}'; }
for _ in $(seq 100); do [ -n "$(accepted)" ] && break; sleep 0.05; done
out=$("${c[@]}" -o /dev/null -w '%{http_code}' "https://api.test:$tls/secure/x") || fail "https upstream"
[ "$out" = 200 ] || fail "https upstream: $out"
before=$(accepted)
out=$(h2 -n 4000 -c 8 -m 10 "https://127.0.0.1:$tls/secure/x")
grep -q "4000 succeeded, 0 failed" <<<"$out" && grep -q "status codes: 4000 2xx" <<<"$out" \
    || fail "h2load to the https upstream: $out"
opened=$(( $(accepted) - before ))
# 80 concurrent streams need up to 80 HTTP/1.1 upstream connections at once; each is
# then reused (without reuse: 4,000; the bound leaves room for the pool replacing some).
[ "$opened" -le 400 ] || fail "4,000 requests opened $opened TLS connections to the upstream"
before=$(accepted)
out=$(h2 --h1 -n 2000 -c 4 "https://127.0.0.1:$tls/secure/x")
grep -q "2000 succeeded, 0 failed" <<<"$out" || fail "h2load --h1 to the https upstream: $out"
serial=$(( $(accepted) - before ))
[ "$serial" -le 8 ] || fail "2,000 requests on 4 client connections opened $serial upstream connections"
pass "https upstream (private CA, server_name): connections reused — 4,000 requests over 80 concurrent streams opened $opened, 2,000 over 4 HTTP/1.1 connections opened $serial"

# --- testssl.sh: no HIGH or CRITICAL finding
if [ -z "${SKIP_TESTSSL:-}" ]; then
    cat "$pki/ca.crt" > "$work/ca-bundle.pem"
    testssl --quiet --color 0 --warnings batch --add-ca "$work/ca-bundle.pem" \
        --ip 127.0.0.1 --jsonfile "$work/testssl.json" --severity LOW \
        "api.test:$tls" > "$work/testssl.txt" 2>&1 || true
    [ -s "$work/testssl.json" ] || { cat "$work/testssl.txt" >&2; fail "testssl.sh produced no result"; }
    python3 - "$work/testssl.json" <<'PY' || fail "testssl.sh found HIGH or CRITICAL issues"
import json, sys
found = json.load(open(sys.argv[1]))
bad = [f for f in found if f.get("severity") in ("HIGH", "CRITICAL")]
for f in bad:
    print(f"  {f['severity']}: {f['id']}: {f['finding']}", file=sys.stderr)
if bad:
    sys.exit(1)
low = sorted({f"{f['severity']} {f['id']}" for f in found if f.get("severity") in ("LOW", "MEDIUM")})
print(f"tls: testssl.sh: {len(found)} findings at LOW or above, none HIGH/CRITICAL; LOW/MEDIUM: {', '.join(low) or 'none'}")
PY
fi
pass "ok"
