#!/usr/bin/env bash
# Identity assertions verified by an independent JWT implementation (PyJWT, from PyPI)
# against the JWKS the admin listener serves: ES256, EdDSA and RS256 keys, generated here
# with openssl. Run by .ci/run. Needs python3 (venv + pip), openssl, curl, a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh
BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${PYJWT_VENV:-target/pyjwt-venv}
if ! "$VENV/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'pyjwt[crypto]>=2.10'
fi
[ -x "$BIN" ] || { echo "assertion: $BIN not built" >&2; exit 1; }
require_tools assertion python3 openssl curl

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/es.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/ed.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
LISTEN=$(free_port); ADMIN=$(free_port)
TOKEN="assertion-e2e-token"
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
cat > "$work/gw.yaml" <<YAML
listen: 127.0.0.1:$LISTEN
admin_listen: 127.0.0.1:$ADMIN
shutdown_grace_period: 0s
assertion_keys:
  - { kid: es-1, algorithm: ES256, key_file: es.pem }
  - { kid: ed-1, algorithm: EdDSA, key_file: ed.pem }
  - { kid: rsa-1, algorithm: RS256, key_file: rsa.pem }
providers:
  s:
    kind: static
    tokens:
      - token_sha256: $DIGEST
        identity: { subject: alice, session_id: s-1, scopes: [read], expires_at: "2099-01-01T00:00:00Z" }
routes:
  - { path_prefix: /es, provider: s, upstream: echo, assertion: { audience: app-es, key: es-1 } }
  - { path_prefix: /ed, provider: s, upstream: echo, assertion: { audience: app-ed, key: ed-1 } }
  - { path_prefix: /rsa, provider: s, upstream: echo, assertion: { audience: app-rsa, key: rsa-1 } }
log: { level: warn }
YAML
"$BIN" --config "$work/gw.yaml" 2>"$work/gw.log" &
pids+=($!)
wait_http "http://127.0.0.1:$ADMIN/readyz" 10
curl -fs "http://127.0.0.1:$ADMIN/.well-known/jwks.json" > "$work/jwks.json"
for kind in es ed rsa; do
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$LISTEN/$kind/x" > "$work/echo-$kind.json"
done
"$VENV/bin/python" - "$work" <<'PY'
import json, sys, jwt
work = sys.argv[1]
jwks = jwt.PyJWKSet.from_dict(json.load(open(f"{work}/jwks.json")))
keys = {k.key_id: k for k in jwks.keys}
for kind, alg in (("es", "ES256"), ("ed", "EdDSA"), ("rsa", "RS256")):
    echo = json.load(open(f"{work}/echo-{kind}.json"))
    token = echo["headers"]["x-auth-assertion"]
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, keys[kid].key, algorithms=[alg], audience=f"app-{kind}",
                        issuer="sessiongate", options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    assert claims["sub"] == "alice" and claims["sid"] == "s-1", claims
    # A tampered assertion must not verify.
    head, body, sig = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps(dict(claims, sub="admin")).encode()).decode()
    try:
        jwt.decode(f"{head}.{forged}.{sig}", keys[kid].key, algorithms=[alg], audience=f"app-{kind}")
        raise SystemExit(f"{alg}: a tampered assertion verified")
    except jwt.InvalidSignatureError:
        pass
    print(f"ok: PyJWT {jwt.__version__} verified the {alg} assertion (kid {kid})")
PY
echo "assertion: all checks passed (PyJWT verified ES256, EdDSA, RS256 assertions)"
