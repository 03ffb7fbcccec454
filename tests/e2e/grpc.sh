#!/usr/bin/env bash
# gRPC with real grpcio clients (PyPI, in a venv):
# - through the gateway (tests/e2e/grpc_calls.py): a real grpcio server behind it,
#   streaming both ways, upstream statuses and trailers, refusals as gRPC status codes,
#   over h2c and over TLS;
# - Envoy ext_authz against the decision listener (tests/e2e/ext_authz_calls.py): a client
#   built from Envoy's own external_auth.proto (xds-protos: Envoy's generated classes).
# Run by .ci/run. Needs python3 (venv + pip), openssl and a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${GRPC_VENV:-target/grpc-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import grpc, envoy.service.auth.v3.external_auth_pb2' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'grpcio==1.68.1' 'xds-protos==1.68.1'
fi
[ -x "$BIN" ] || { echo "grpc: $BIN not built" >&2; exit 1; }
"$VENV/bin/python" tests/e2e/grpc_calls.py --bin "$BIN"
"$VENV/bin/python" tests/e2e/ext_authz_calls.py --bin "$BIN"
