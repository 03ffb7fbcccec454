#!/usr/bin/env bash
# gRPC through the gateway with a real grpcio server and client (tests/e2e/grpc_calls.py):
# streaming both ways, upstream statuses and trailers, refusals as gRPC status codes, over
# h2c and over TLS. grpcio from PyPI, in a venv. Run by .ci/run. Needs python3 (venv +
# pip), openssl and a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${GRPC_VENV:-target/grpc-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import grpc' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'grpcio==1.68.1'
fi
[ -x "$BIN" ] || { echo "grpc: $BIN not built" >&2; exit 1; }
exec "$VENV/bin/python" tests/e2e/grpc_calls.py --bin "$BIN"
