#!/usr/bin/env bash
# Rate limits as a client sees them (tests/e2e/rate_limits.py): the RateLimit fields
# parsed by an independent Structured Field parser (http_sfv, from PyPI, in a venv) and
# Retry-After honoured. Run by .ci/run. Needs python3 (venv + pip) and a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${SFV_VENV:-target/sfv-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import http_sfv' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'http-sfv==0.9.9'
fi
[ -x "$BIN" ] || { echo "rate_limits: $BIN not built" >&2; exit 1; }
exec "$VENV/bin/python" tests/e2e/rate_limits.py --bin "$BIN"
