#!/usr/bin/env python3
"""Decision mode (issue #38) behind real front proxies: nginx `auth_request` and Caddy
`forward_auth` ask sessiongate's decision listener, and forward to a real upstream (a Python
server that answers with the request it received, as JSON).

Each front proxy is configured as docs/decision-mode.md says. Checked through each (each
failure names itself; exit 1; a peer outside `trusted_proxies` is tests/it/decision.rs's):
1. a token's identity reaches the upstream in the identity headers, and the upstream gets
   the target the decision judged (X-Sessiongate-Canonical-Uri);
2. identity headers the client sends itself never reach the upstream, also for a header
   the identity lacks (bob has no session id);
3. no token: 401 with the Bearer challenge (also with gRPC's content type); a scope the
   identity lacks: 403; a path that climbs out of its prefix is judged, and forwarded,
   where it lands;
4. rate limits: Caddy passes the 429 and its Retry-After through; nginx turns any answer
   but 2xx, 401 and 403 into 500 (documented), and the upstream is not reached.
And the checks can fail: an nginx configured without the identity headers'
proxy_set_header lines (what the docs warn against) lets a client's forged X-Auth-Subject
through, and the same comparison sees it.

Usage: tests/e2e/decision.py [--bin target/debug/sessiongate]
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from e2e_util import Failure, check, free_port, print_tails, stop, wait_ready

ALICE = "decision-e2e-alice-0123456789"
BOB = "decision-e2e-bob-0123456789"


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *args):
        pass

    def _answer(self):
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        Echo.seen.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer


def request(port, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers={"Host": "api.example.com", **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


AUTH_LOCATION = """
        location = /_sessiongate {{
            internal;
            proxy_pass http://sessiongate_decision;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}"""


def nginx_conf(work, port, unsafe_port, decision, upstream):
    # docs/decision-mode.md, "nginx"; and on `unsafe_port` the same without setting the
    # identity headers from the answer (what the docs warn against).
    return f"""
user {os.environ.get('USER', 'root')};
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/ngx-body;
    proxy_temp_path {work}/ngx-proxy;
    fastcgi_temp_path {work}/ngx-fastcgi;
    uwsgi_temp_path {work}/ngx-uwsgi;
    scgi_temp_path {work}/ngx-scgi;
    upstream sessiongate_decision {{ server 127.0.0.1:{decision}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_sessiongate;
            auth_request_set $sg_subject $upstream_http_x_auth_subject;
            auth_request_set $sg_session $upstream_http_x_auth_session_id;
            auth_request_set $sg_scopes $upstream_http_x_auth_scopes;
            auth_request_set $sg_uri $upstream_http_x_sessiongate_canonical_uri;
            proxy_set_header X-Auth-Subject $sg_subject;
            proxy_set_header X-Auth-Session-Id $sg_session;
            proxy_set_header X-Auth-Scopes $sg_scopes;
            proxy_pass http://127.0.0.1:{upstream}$sg_uri;
        }}
{AUTH_LOCATION.format()}
    }}
    server {{
        listen 127.0.0.1:{unsafe_port};
        location / {{
            auth_request /_sessiongate;
            proxy_pass http://127.0.0.1:{upstream};
        }}
{AUTH_LOCATION.format()}
    }}
}}
"""


def caddyfile(port, decision, upstream):
    # docs/decision-mode.md, "Caddy".
    return f"""{{
    admin off
    auto_https off
}}
http://:{port} {{
    bind 127.0.0.1
    route {{
        forward_auth 127.0.0.1:{decision} {{
            uri /
            copy_headers X-Auth-Subject X-Auth-Session-Id X-Auth-Scopes X-Sessiongate-Canonical-Uri
        }}
        rewrite * {{http.request.header.X-Sessiongate-Canonical-Uri}}
        request_header -X-Sessiongate-Canonical-Uri
        reverse_proxy 127.0.0.1:{upstream}
    }}
}}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SESSIONGATE_BIN", "target/debug/sessiongate"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-decision-")
    procs = []
    try:
        upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        up = upstream.server_address[1]
        listen, admin, decision = free_port(), free_port(), free_port()
        config = f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 0s
pid_file: {work}/sg.pid
upgrade_sock: {work}/sg.sock
trusted_proxies: [127.0.0.1/32]
decision: {{ listen: "127.0.0.1:{decision}" }}
providers:
  p:
    kind: static
    tokens:
      - {{ token_sha256: {hashlib.sha256(ALICE.encode()).hexdigest()}, identity: {{ subject: alice, session_id: s-1, scopes: [read, write] }} }}
      - {{ token_sha256: {hashlib.sha256(BOB.encode()).hexdigest()}, identity: {{ subject: bob, scopes: [read] }} }}
upstreams: {{ app: "http://127.0.0.1:{up}" }}
rate_limits:
  tight: {{ rate: 2/min, burst: 2 }}
routes:
  - {{ name: limited, path_prefix: /limited, provider: p, upstream: app, rate_limits: [tight] }}
  - {{ name: admin, path_prefix: /admin, provider: p, upstream: app, require_scopes: {{ all_of: [admin] }} }}
  - {{ name: items, path_prefix: /items, provider: p, upstream: app, methods: [GET, POST], method_scopes: [ {{ methods: [POST], all_of: [write] }} ] }}
log: {{ level: "warn,sessiongate::access=info", format: json }}
"""
        with open(f"{work}/sg.yaml", "w") as f:
            f.write(config)
        sg = subprocess.Popen([args.bin, "--config", f"{work}/sg.yaml"],
                              stdout=open(f"{work}/sg.log", "w"), stderr=subprocess.STDOUT)
        procs.append(sg)
        wait_ready(admin, sg)

        ngx_port, caddy_port, unsafe_port = free_port(), free_port(), free_port()
        for d in ("ngx-body", "ngx-proxy", "ngx-fastcgi", "ngx-uwsgi", "ngx-scgi"):
            os.makedirs(f"{work}/{d}", exist_ok=True)
        with open(f"{work}/nginx.conf", "w") as f:
            f.write(nginx_conf(work, ngx_port, unsafe_port, decision, up))
        procs.append(subprocess.Popen(["nginx", "-c", f"{work}/nginx.conf", "-p", work],
                                      stdout=open(f"{work}/nginx.out", "w"), stderr=subprocess.STDOUT))
        with open(f"{work}/Caddyfile", "w") as f:
            f.write(caddyfile(caddy_port, decision, up))
        procs.append(subprocess.Popen(["caddy", "run", "--config", f"{work}/Caddyfile",
                                       "--adapter", "caddyfile"],
                                      stdout=open(f"{work}/caddy.out", "w"), stderr=subprocess.STDOUT,
                                      env={**os.environ, "HOME": work, "XDG_DATA_HOME": work,
                                           "XDG_CONFIG_HOME": work}))
        for port, name in ((ngx_port, "nginx"), (caddy_port, "caddy")):
            deadline = time.time() + 15
            while True:
                try:
                    request(port, "GET", "/items/1")
                    break
                except OSError:
                    check(time.time() < deadline, f"{name} did not start")
                    time.sleep(0.1)

        results = {}
        for name, port in (("nginx", ngx_port), ("caddy", caddy_port)):
            bearer = lambda t: {"Authorization": f"Bearer {t}"}
            # 1. identity and canonical target reach the upstream.
            status, _, body = request(port, "GET", "/items/./1?x=1", bearer(ALICE))
            check(status == 200 and body.startswith(b"{"),
                  f"{name}: alice GET /items/./1: {status} {body[:300]!r}")
            seen = json.loads(body)
            check(seen["headers"].get("x-auth-subject") == "alice", f"{name}: upstream saw {seen['headers']}")
            check(seen["headers"].get("x-auth-session-id") == "s-1", f"{name}: session id {seen['headers']}")
            check(seen["path"] == "/items/1?x=1", f"{name}: upstream got {seen['path']!r}, judged /items/1?x=1")
            # 2. client-sent identity headers never reach the upstream.
            status, _, body = request(port, "GET", "/items/2", {
                **bearer(BOB), "X-Auth-Subject": "root", "X-Auth-Session-Id": "forged",
                "X-Auth-Scopes": "admin"})
            check(status == 200, f"{name}: bob: {status}")
            h = json.loads(body)["headers"]
            check(h.get("x-auth-subject") == "bob" and h.get("x-auth-scopes") == "read",
                  f"{name}: forged identity reached the upstream: {h}")
            check(h.get("x-auth-session-id", "") == "",
                  f"{name}: a forged session id reached the upstream: {h.get('x-auth-session-id')!r}")
            # 3. refusals.
            status, hdrs, _ = request(port, "GET", "/items/1")
            check(status == 401, f"{name}: no token: {status}")
            check(hdrs.get("www-authenticate", "").startswith("Bearer"),
                  f"{name}: no Bearer challenge on 401: {hdrs}")
            status, _, _ = request(port, "POST", "/items/1", bearer(BOB))
            check(status == 403, f"{name}: bob POST (no write scope): {status}")
            # gRPC's content type does not turn a refusal into a yes (the gRPC form of a
            # refusal is an HTTP 200, which a front proxy reads as allowed).
            before = len(Echo.seen)
            status, _, _ = request(port, "POST", "/items/1", {"Content-Type": "application/grpc"})
            check(status == 401, f"{name}: no token, gRPC content type: {status}")
            check(len(Echo.seen) == before, f"{name}: an unauthenticated gRPC-typed request reached the upstream")
            before = len(Echo.seen)
            status, _, _ = request(port, "GET", "/items/../admin/users", bearer(ALICE))
            check(status in (403, 400), f"{name}: /items/../admin/users: {status}")
            check(len(Echo.seen) == before, f"{name}: a refused request reached the upstream")
            # 5. rate limits (per subject: each front proxy spends another identity's).
            statuses = []
            for _ in range(3):
                status, hdrs, _ = request(port, "GET", f"/limited/{name}",
                                          bearer(BOB if name == "nginx" else ALICE))
                statuses.append(status)
            check(statuses[:2] == [200, 200], f"{name}: limited: {statuses}")
            want = 500 if name == "nginx" else 429
            check(statuses[2] == want, f"{name}: over the limit: {statuses[2]}, want {want}")
            if name == "caddy":
                check("retry-after" in hdrs, f"caddy: no Retry-After on the 429: {hdrs}")
            results[name] = statuses
        # The access log names decision mode and the request described, not the question.
        with open(f"{work}/sg.log") as f:
            lines = [json.loads(l) for l in f if l.startswith("{") and '"request"' in l]
        described = [l for l in lines if l.get("mode") == "decision"]
        check(described and all(l.get("path", "").startswith(("/items", "/limited", "/admin"))
                                for l in described),
              f"access log: {lines[:2]}")
        # The checks can fail: an nginx that does not set the identity headers from the
        # answer lets a client's own through, and check 2 sees it.
        status, _, body = request(unsafe_port, "GET", "/items/2", {
            "Authorization": f"Bearer {BOB}", "X-Auth-Subject": "root"})
        check(status == 200 and json.loads(body)["headers"].get("x-auth-subject") == "root",
              f"the unsafe nginx configuration was expected to let a forged header through: {status} {body[:200]!r}")
        results["unsafe_nginx_forged_subject_reaches_upstream"] = True
        print(json.dumps(results))
        print("decision mode behind nginx and Caddy: all checks passed")
        shutil.rmtree(work, ignore_errors=True)
        return 0
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print_tails(work, ("sg.log", "nginx-error.log", "caddy.out"))
        return 1
    finally:
        for p in procs:
            stop(p)


if __name__ == "__main__":
    sys.exit(main())
