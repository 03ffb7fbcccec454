#!/usr/bin/env bash
# HTTP/2 clients that stop reading (zero flow-control window, 100 streams each), with the
# Python `h2` library (from PyPI, in a venv) against the real gateway. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${H2_VENV:-target/http2-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import h2' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'h2==4.1.0'
fi
[ -x "$BIN" ] || { echo "http2: $BIN not built" >&2; exit 1; }
exec "$VENV/bin/python" tests/e2e/http2_stall.py --bin "$BIN"
