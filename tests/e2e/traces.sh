#!/usr/bin/env bash
# OpenTelemetry traces checked by a real OTLP/HTTP receiver decoding with the
# OpenTelemetry project's own protobuf classes (PyPI opentelemetry-proto, in a venv):
# tests/e2e/traces.py. Run by .ci/run. Needs python3 (venv + pip) and a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${OTLP_VENV:-target/otlp-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'opentelemetry-proto==1.45.2'
fi
[ -x "$BIN" ] || { echo "traces: $BIN not built" >&2; exit 1; }
"$VENV/bin/python" tests/e2e/traces.py --bin "$BIN"
