#!/usr/bin/env bash
# Soak: the release binary at a fixed request rate with mixed tokens (valid, revoked,
# random, missing, malformed) while the fake provider flaps (normal, down, slow,
# garbage). Fails on any request allowed without a valid identity, on transport errors,
# and (runs of 5 min or more) on RSS growth over 5 % after warm-up. Prints a JSON report
# (OUT=file also keeps it).
#   SOAK_SECONDS (default 600), SOAK_RATE requests/s (default 200),
#   SOAK_FLAP_CYCLE seconds (default min(60, SOAK_SECONDS/2)).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked --release --bin sessiongate --example soak
export SESSIONGATE_BIN=${SESSIONGATE_BIN:-target/release/sessiongate}
if [ -n "${OUT:-}" ]; then
    target/release/examples/soak | tee "$OUT"
else
    target/release/examples/soak
fi
