"""Rate limits (issue #37) as a client sees them, checked with tools that are not ours:

- the RateLimit-Policy and RateLimit fields parse as Structured Field Lists with the
  `http_sfv` package (RFC 8941/9651), with the parameters the draft names (q, w; r, t) as
  integers, one member per policy, on 429s and (with `headers: always`) on admitted
  responses;
- a client that waits exactly `Retry-After` seconds is admitted, for a limit keyed by the
  subject and for one keyed by a header (`X-Api-Key`, falling back to the client address
  when absent);
- nothing from the token or the key's value appears in a 429.

Usage: python tests/e2e/rate_limits.py --bin target/debug/sessiongate (http_sfv from PyPI,
in the venv tests/e2e/rate_limits.sh makes)
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_sfv

from e2e_util import Failure, check, free_port, stop, wait_ready

TOKEN = "ratelimit-e2e-token-0123456789abcdef"


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start(binary, work, upstream):
    listen, admin = free_port(), free_port()
    config = f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 0s
providers:
  s:
    kind: static
    tokens:
      - {{ token_sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, identity: {{ subject: alice, scopes: [read] }} }}
upstreams: {{ app: "http://127.0.0.1:{upstream}" }}
rate_limits:
  every-3s: {{ rate: 1/3s, burst: 1, headers: always }}
  hourly: {{ rate: 100/hour, burst: 50, headers: always }}
  per-key: {{ key: "header:x-api-key", rate: 1/2s, burst: 1 }}
routes:
  - {{ name: slow, path_prefix: /slow, provider: s, upstream: app, rate_limits: [hourly, every-3s] }}
  - {{ name: keyed, path_prefix: /keyed, auth: none, upstream: app, rate_limits: [per-key] }}
"""
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config)
    log = open(os.path.join(work, "gateway.log"), "w")
    proc = subprocess.Popen([binary, "--config", path], stdout=log, stderr=subprocess.STDOUT)
    wait_ready(admin, proc)
    return proc, listen


def get(port, path, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sf_list(value, what):
    """The field as a Structured Field List: [(string, {param: value})]."""
    parsed = http_sfv.List()
    try:
        parsed.parse(value.encode())
    except Exception as e:
        raise Failure(f"{what}: {value!r} is not a Structured Field List: {e}")
    out = []
    for member in parsed:
        check(isinstance(member.value, str), f"{what}: {member.value!r} is not a String")
        params = dict(member.params)
        for k, v in params.items():
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                  f"{what}: parameter {k}={v!r} is not a non-negative Integer")
        out.append((member.value, params))
    return out


def fields(headers, what):
    lower = {k.lower(): v for k, v in headers.items()}
    check("ratelimit-policy" in lower and "ratelimit" in lower, f"{what}: no RateLimit fields in {lower}")
    return sf_list(lower["ratelimit-policy"], what), sf_list(lower["ratelimit"], what), lower


def run(port):
    auth = {"authorization": f"Bearer {TOKEN}"}
    # Admitted: both policies advertised (headers: always), the stricter one at r=0.
    status, headers, _ = get(port, "/slow/x", auth)
    check(status == 200, f"first request: {status}")
    policy, now, _ = fields(headers, "admitted")
    check(policy == [("hourly", {"q": 100, "w": 3600}), ("every-3s", {"q": 1, "w": 3})],
          f"admitted RateLimit-Policy {policy}")
    check(now[0][0] == "hourly" and now[0][1]["r"] == 49 and now[1] == ("every-3s", {"r": 0, "t": 3}),
          f"admitted RateLimit {now}")
    # Refused: Retry-After, and the fields of the policy that refused.
    status, headers, body = get(port, "/slow/x", auth)
    check(status == 429, f"second request: {status}")
    policy, now, lower = fields(headers, "429")
    retry = int(lower["retry-after"])
    check(1 <= retry <= 3, f"Retry-After {retry}")
    check(policy == [("every-3s", {"q": 1, "w": 3})], f"429 RateLimit-Policy {policy}")
    check(now == [("every-3s", {"r": 0, "t": retry})], f"429 RateLimit {now}")
    doc = json.loads(body)
    check(doc["error"] == "rate_limited" and doc["policy"] == "every-3s", f"429 body {doc}")
    check(TOKEN not in body.decode() and "alice" not in body.decode(), f"429 body leaks: {doc}")
    # A client that waits exactly Retry-After is admitted.
    time.sleep(retry)
    status, headers, _ = get(port, "/slow/x", auth)
    check(status == 200, f"after waiting Retry-After ({retry} s): {status}")

    # Keyed by a header: each key its own count; without the header, the client address.
    for key in ("k1", "k2"):
        status, _, _ = get(port, "/keyed/x", {"x-api-key": key})
        check(status == 200, f"first request with key {key}: {status}")
    status, headers, body = get(port, "/keyed/x", {"x-api-key": "k1"})
    check(status == 429, f"second request with key k1: {status}")
    check(b"k1" not in body, f"the key's value is in the 429: {body!r}")
    retry = int({k.lower(): v for k, v in headers.items()}["retry-after"])
    status, _, _ = get(port, "/keyed/x", {})
    check(status == 200, f"no key (counted by address): {status}")
    time.sleep(retry)
    status, _, _ = get(port, "/keyed/x", {"x-api-key": "k1"})
    check(status == 200, f"key k1 after waiting Retry-After ({retry} s): {status}")
    print("rate_limits: RateLimit-Policy / RateLimit parse as Structured Field Lists (http_sfv), "
          "Retry-After honoured (subject and header keys), no token or key value in a 429")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/debug/sessiongate")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sg-ratelimit-")
    upstream_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", upstream_port), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc, port = start(os.path.abspath(args.bin), work, upstream_port)
    try:
        run(port)
    except Failure as e:
        print(f"rate_limits: FAIL: {e}", file=sys.stderr)
        with open(os.path.join(work, "gateway.log")) as f:
            sys.stderr.write(f.read()[-3000:])
        sys.exit(1)
    finally:
        stop(proc)
        server.shutdown()
    print("rate_limits: ok")


if __name__ == "__main__":
    main()
