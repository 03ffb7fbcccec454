#!/usr/bin/env bash
# WebSocket through the gateway with a real client and a real server (Python `websockets`,
# from PyPI, in a venv): the identity is checked at the upgrade, then the connection is a
# tunnel. Run by .ci/run. Needs python3 (venv + pip) and a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${WS_VENV:-target/websocket-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'websockets==13.1'
fi
[ -x "$BIN" ] || { echo "websocket: $BIN not built" >&2; exit 1; }
exec "$VENV/bin/python" tests/e2e/websocket.py --bin "$BIN"
