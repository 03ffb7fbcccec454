#!/usr/bin/env python3
"""OpenTelemetry traces (issue #39), checked by a real OTLP/HTTP receiver that decodes the
gateway's exports with the OpenTelemetry project's own protobuf classes (PyPI
opentelemetry-proto) — nothing of sessiongate's own wire code.

Gateway A (trusted_proxies: 127.0.0.1, every request sampled, a decision listener too):
1. a client's sampled `traceparent` is continued (HTTP/1.1 and HTTP/2): the server span (SERVER) has the client's
   trace id and span as parent, HTTP semantic-convention attributes and the gateway's own;
   the provider call (path-placed token) and the upstream request are CLIENT children;
   the upstream's received `traceparent` names the gateway's upstream span, the provider's
   names the provider span; a cache hit has no provider span;
2. a trusted caller's sampled=0 is followed (nothing exported), the trace still goes on;
3. the access-log line carries the server span's trace_id and span_id;
4. the decision door (forward-auth) has server spans too (`sessiongate.mode=decision`);
5. the hostile-request table, a cookie route and the path-placed provider: no token, token
   prefix, cookie or credential in any byte of any export (nor the subject: include_subject
   is off), and the export carries the configured header, in protobuf.
Gateway B (trusted_proxies elsewhere, sample_ratio 0.1): 10,000 requests whose client
   sends sampled=1: the server spans are 10 % of them within ±5 σ — the client's flag
   forced nothing.
Gateway D (cluster: a real redis-server): a cache miss has `redis shared_find` and
   `redis rate_limit` client spans (db.system.name redis) beside the provider call.
Gateway E: a collector over TLS signed by a private CA: exports arrive with `ca_file`;
   without it the export fails and is counted (never sent in clear).
Gateway C (small queue, short timeout, include_subject on): the collector healthy, then
   answering after 2 s, then gone: requests answer as fast (medians compared), spans are
   dropped and counted (queue_full, export_failed), memory stays bounded.

Usage: tests/e2e/traces.py --bin target/debug/sessiongate (in a venv with opentelemetry-proto)
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from cluster import metric, wait_port
from e2e_util import Failure, check, free_port, print_tails, rss_kib, stop, wait_ready

PATH_TOKEN = "pathtoken-e2e-0123456789abcdefXYZ"
COOKIE_TOKEN = "cookietoken-e2e-9876543210fedcbaQRS"
STATIC_TOKEN = "statictoken-e2e-5555aaaa7777bbbbCCC"
COLLECTOR_KEY = "collector-key-e2e-secret-42"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT


def sha(t):
    return hashlib.sha256(t.encode()).hexdigest()


def serve(handler, tls=None):
    """`handler` on a threaded server on a free loopback port (TLS with `tls=(cert, key)`),
    in a daemon thread: the server and its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class Collector:
    """An OTLP/HTTP receiver: each export decoded as an ExportTraceServiceRequest (over TLS
    with `tls=(cert, key)`)."""

    def __init__(self, tls=None):
        self.exports = []  # (headers, raw body, decoded)
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                msg = trace_service_pb2.ExportTraceServiceRequest()
                msg.ParseFromString(body)
                with outer.lock:
                    outer.exports.append((dict((k.lower(), v) for k, v in self.headers.items()), body, msg, self.path))
                if outer.delay:
                    time.sleep(outer.delay)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the gateway gave up waiting (its export timeout)

            def log_message(self, *a):
                pass

        self.server, self.port = serve(Handler, tls)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def spans(self):
        """(resource attributes, span) of every span received."""
        out = []
        with self.lock:
            for _, _, msg, _ in self.exports:
                for rs in msg.resource_spans:
                    res = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        check(ss.scope.name == "sessiongate", f"scope {ss.scope.name}")
                        for s in ss.spans:
                            out.append((res, s))
        return out

    def wait_spans(self, pred, n=1, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [s for _, s in self.spans() if pred(s)]
            if len(found) >= n:
                return found
            time.sleep(0.05)
        raise Failure(f"expected {n} matching span(s) within {timeout}s; have {len(self.spans())} spans")


def attrs(span):
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = getattr(v, v.WhichOneof("value"))
    return out


class Recorder:
    """An HTTP server answering 200 (JSON for the provider path), keeping request headers."""

    def __init__(self, provider=False):
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.seen.append((self.path, dict((k.lower(), v) for k, v in self.headers.items())))
                if provider:
                    ok = self.path == f"/sessions/{PATH_TOKEN}"
                    body = json.dumps({"sub": "alice", "scopes": ["read"]} if ok else {}).encode()
                    self.send_response(200 if ok else 404)
                else:
                    body = b"upstream ok"
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.server, self.port = serve(Handler)


def start(args, work, name, body, env_extra=None):
    listen, admin = free_port(), free_port()
    path = f"{work}/{name}.yaml"
    with open(path, "w") as f:
        f.write(f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 0s
pid_file: {work}/{name}.pid
upgrade_sock: {work}/{name}.sock
log: {{ level: "warn,sessiongate::access=info", format: json }}
{body}""")
    env = dict(os.environ, TRACE_TEST_KEY=COLLECTOR_KEY,
               OTEL_RESOURCE_ATTRIBUTES="k8s.pod.name=sessiongate-0,k8s.namespace.name=e2e")
    env.update(env_extra or {})
    log = open(f"{work}/{name}.log", "w")
    proc = subprocess.Popen([args.bin, "--config", path], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_ready(admin, proc)
    return proc, listen, admin


def get(port, path, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    if conn is None:
        c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


def gateway_a(args, work, results):
    col, idp, up = Collector(), Recorder(provider=True), Recorder()
    decision = free_port()
    proc, port, admin = start(args, work, "a", f"""
h2c: true
trusted_proxies: [127.0.0.1/32]
decision: {{ listen: "127.0.0.1:{decision}" }}
providers:
  idp: {{ kind: http, url: "http://127.0.0.1:{idp.port}/sessions/{{token}}", method: GET, token: {{ in: path }}, timeout: 2s, response: {{ subject: /sub, scopes: /scopes }} }}
  st:
    kind: static
    tokens:
      - {{ token_sha256: {sha(COOKIE_TOKEN)}, identity: {{ subject: carol-cookie, scopes: [read] }} }}
upstreams: {{ app: "http://127.0.0.1:{up.port}" }}
routes:
  - {{ name: api, path_prefix: /api, provider: idp, upstream: app }}
  - {{ name: web, path_prefix: /web, provider: st, upstream: app, token_sources: [{{ cookie: sid }}] }}
  - {{ name: open, path_prefix: /open, auth: none, upstream: echo }}
tracing:
  endpoint: http://127.0.0.1:{col.port}
  headers: {{ X-Collector-Key: "${{TRACE_TEST_KEY}}" }}
  export_interval: 100ms
""")
    try:
        # 1. A client's trace continued; provider and upstream as children.
        tp = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
        status, _, _ = get(port, "/api/items?page=2", {
            "Authorization": f"Bearer {PATH_TOKEN}", "traceparent": tp, "tracestate": "vendor=1"})
        check(status == 200, f"traced request: {status}")
        server = col.wait_spans(lambda s: s.kind == SERVER and s.trace_id.hex() == CLIENT_TRACE)[0]
        check(server.parent_span_id.hex() == CLIENT_SPAN, "the server span's parent is the client's span")
        a = attrs(server)
        want = {"http.request.method": "GET", "url.path": "/api/items", "url.scheme": "http",
                "http.response.status_code": 200, "network.protocol.version": "1.1",
                "http.route": "/api", "sessiongate.route": "api", "sessiongate.outcome": "allowed",
                "sessiongate.cache": "miss", "sessiongate.provider": "idp",
                "sessiongate.token_source": "authorization", "sessiongate.mode": "proxy",
                "client.address": "127.0.0.1"}
        for k, v in want.items():
            check(a.get(k) == v, f"server span {k} = {a.get(k)!r}, expected {v!r}")
        check("enduser.id" not in a, "no subject without include_subject")
        check(server.name == "GET /api", f"server span name {server.name}")
        children = col.wait_spans(lambda s: s.kind == CLIENT and s.parent_span_id == server.span_id, n=2)
        provider = [s for s in children if attrs(s).get("url.template")][0]
        upstream = [s for s in children if attrs(s).get("sessiongate.upstream")][0]
        pa = attrs(provider)
        check(provider.name == "GET /sessions/{token}", f"provider span name {provider.name}")
        check(pa.get("http.response.status_code") == 200 and pa.get("server.port") == idp.port, f"provider span {pa}")
        ua = attrs(upstream)
        check(ua.get("http.response.status_code") == 200 and ua.get("server.port") == up.port, f"upstream span {ua}")
        check(server.start_time_unix_nano <= provider.start_time_unix_nano <= provider.end_time_unix_nano
              <= upstream.start_time_unix_nano <= upstream.end_time_unix_nano <= server.end_time_unix_nano,
              "children within the server span, provider before upstream")
        got_up = up.seen[-1][1]
        check(got_up.get("traceparent") == f"00-{CLIENT_TRACE}-{upstream.span_id.hex()}-01",
              f"upstream traceparent {got_up.get('traceparent')} names the upstream span")
        check(got_up.get("tracestate") == "vendor=1", "tracestate passed on")
        got_idp = idp.seen[-1][1]
        check(got_idp.get("traceparent") == f"00-{CLIENT_TRACE}-{provider.span_id.hex()}-01",
              "the provider is told of the provider span")
        # A cache hit: no provider span.
        tp2 = "00-11111111111111111111111111111111-2222222222222222-01"
        get(port, "/api/items", {"Authorization": f"Bearer {PATH_TOKEN}", "traceparent": tp2})
        hit = col.wait_spans(lambda s: s.kind == SERVER and s.trace_id.hex() == "1" * 32)[0]
        check(attrs(hit)["sessiongate.cache"] == "hit", "second call is a hit")
        time.sleep(0.4)
        kids = [s for _, s in col.spans() if s.parent_span_id == hit.span_id]
        check(len(kids) == 1 and attrs(kids[0]).get("sessiongate.upstream"), f"a hit has only the upstream child: {kids}")
        results["continued_trace"] = True

        # 2. A trusted caller's sampled=0 is followed; the trace goes on unsampled.
        tp0 = "00-33333333333333333333333333333333-4444444444444444-00"
        get(port, "/api/items", {"Authorization": f"Bearer {PATH_TOKEN}", "traceparent": tp0})
        check(up.seen[-1][1]["traceparent"].startswith("00-" + "3" * 32 + "-")
              and up.seen[-1][1]["traceparent"].endswith("-00"), "unsampled trace propagated")
        time.sleep(0.5)
        check(not [s for _, s in col.spans() if s.trace_id.hex() == "3" * 32], "sampled=0 exported nothing")
        # A client's unreadable traceparent: a new trace, its tracestate dropped.
        get(port, "/api/items", {"Authorization": f"Bearer {PATH_TOKEN}",
                                 "traceparent": "00-XYZ-bad", "tracestate": "stale=1"})
        check("tracestate" not in up.seen[-1][1], "tracestate of an unreadable traceparent dropped")

        # Over HTTP/2 (h2c, curl): the same spans, protocol version 2.
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                              "--http2-prior-knowledge", "-H", f"Authorization: Bearer {PATH_TOKEN}",
                              "-H", "traceparent: 00-77777777777777777777777777777777-8888888888888888-01",
                              f"http://127.0.0.1:{port}/api/h2"], capture_output=True, text=True, timeout=10).stdout
        check(out == "200 2", f"h2c request: {out}")
        h2 = col.wait_spans(lambda s: s.kind == SERVER and s.trace_id.hex() == "7" * 32)[0]
        check(attrs(h2).get("network.protocol.version") == "2", f"h2 span {attrs(h2)}")
        col.wait_spans(lambda s: s.kind == CLIENT and s.parent_span_id == h2.span_id)
        check(up.seen[-1][1].get("traceparent", "").startswith("00-" + "7" * 32), "h2 request propagated")

        # 3. The access log links to the trace.
        time.sleep(0.3)
        lines = [json.loads(l) for l in open(f"{work}/a.log") if l.startswith("{") and '"request"' in l]
        linked = [l for l in lines if l.get("trace_id") == CLIENT_TRACE]
        check(linked and linked[0].get("span_id") == server.span_id.hex(), f"access log trace ids: {linked[:1]}")

        # 4. The decision door.
        c = http.client.HTTPConnection("127.0.0.1", decision, timeout=10)
        c.request("GET", "/", headers={"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x",
                                       "X-Forwarded-Host": "app.example", "X-Forwarded-Proto": "https",
                                       "X-Forwarded-For": "203.0.113.7",
                                           "Authorization": f"Bearer {PATH_TOKEN}",
                                           "traceparent": "00-55555555555555555555555555555555-6666666666666666-01"})
        r = c.getresponse()
        body = r.read()
        check(r.status == 200, f"decision: {r.status} {body[:200]}")
        d = col.wait_spans(lambda s: s.kind == SERVER and s.trace_id.hex() == "5" * 32)[0]
        da = attrs(d)
        check(da.get("sessiongate.mode") == "decision" and da.get("client.address") == "203.0.113.7",
              f"decision span {da}")
        results["decision_span"] = True

        # 5. Hostile requests, a cookie route, the path-placed provider: no secret exported.
        before = len(col.exports)
        hostile = [
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "X-Auth-Subject": "mallory", "X_Auth_Subject": "m"}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "Connection": "close, X-Auth-Subject"}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.2"}),
            (f"/api/x?access_token={PATH_TOKEN}", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/api/x", {"Authorization": f"bEaReR {PATH_TOKEN}"}),
            ("/api/x", {"Authorization": "Bearer "}),
            ("/api/x", {"Authorization": "Bearer " + PATH_TOKEN * 200}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "X-Original-URL": "/open", "X-HTTP-Method-Override": "DELETE"}),
            ("/api/..;/open", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/api/%2e%2e/open", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("//api/x", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/API/x.", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/api%2fx", {"Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN[:-1]}"}),
            ("/api/x", {"Authorization": f"Bearer {PATH_TOKEN}", "traceparent": f"00-{PATH_TOKEN[:32]}-{CLIENT_SPAN}-01"}),
            ("/web/page", {"Cookie": f"theme=dark; sid={COOKIE_TOKEN}"}),
            ("/web/page", {"Cookie": f"sid={COOKIE_TOKEN}", "Authorization": f"Bearer {PATH_TOKEN}"}),
            ("/web/page", {"Cookie": f"sid={COOKIE_TOKEN}x"}),
        ]
        statuses = []
        for path, headers in hostile:
            try:
                statuses.append(get(port, path, headers)[0])
            except (http.client.HTTPException, OSError) as e:
                statuses.append(type(e).__name__)
        col.wait_spans(lambda s: s.kind == SERVER and attrs(s).get("sessiongate.route") == "web", n=3)
        time.sleep(0.5)
        check(len(col.exports) > before, "hostile requests were traced")
        secrets = [PATH_TOKEN, PATH_TOKEN[:12], PATH_TOKEN[-12:], COOKIE_TOKEN, COOKIE_TOKEN[:12],
                   COOKIE_TOKEN[-12:], COLLECTOR_KEY, "alice", "carol-cookie"]
        for headers, body, _, _ in col.exports:
            for s in secrets:
                check(s.encode() not in body, f"an export carries {s[:6]}…")
        for headers, _, _, path in col.exports:
            check(headers.get("content-type") == "application/x-protobuf", f"content type {headers.get('content-type')}")
            check(headers.get("x-collector-key") == COLLECTOR_KEY, "the configured header on every export")
            check(path == "/v1/traces", f"export path {path}")
        res = col.spans()[0][0]
        check(res.get("service.name") == "sessiongate" and res.get("k8s.pod.name") == "sessiongate-0"
              and res.get("k8s.namespace.name") == "e2e" and res.get("service.version"), f"resource {res}")
        results["hostile_statuses"] = statuses
        results["exports_checked"] = len(col.exports)
        results["spans_checked"] = len(col.spans())
    finally:
        stop(proc)
        col.close()


def gateway_b(args, work, results):
    col = Collector()
    proc, port, admin = start(args, work, "b", f"""
trusted_proxies: [10.0.0.0/8]
routes:
  - {{ name: open, path_prefix: /open, auth: none, upstream: echo }}
tracing:
  endpoint: http://127.0.0.1:{col.port}/v1/traces
  sample_ratio: 0.1
  service_name: sessiongate-ratio
  export_interval: 200ms
  queue_size: 4096
""")
    try:
        n = 10_000
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(n):
            tid = f"{i + 1:032x}"
            get(port, "/open/x", {"traceparent": f"00-{tid}-{CLIENT_SPAN}-01"}, conn=c)
        time.sleep(1.0)
        spans = col.spans()
        check(all(r.get("service.name") == "sessiongate-ratio" for r, _ in spans), "service_name")
        sampled = len([s for _, s in spans if s.kind == SERVER])
        dropped = metric(admin, "sessiongate_trace_spans_dropped_total")
        results["ratio_sampled_of_10000"] = sampled
        # Binomial(10000, 0.1): 1000 ± 30; ±5 σ. A followed flag would give 10000.
        check(850 <= sampled <= 1150 and dropped == 0, f"sampled {sampled} of {n} at ratio 0.1 (dropped {dropped})")
    finally:
        stop(proc)
        col.close()


def gateway_c(args, work, results):
    col = Collector()
    proc, port, admin = start(args, work, "c", f"""
providers:
  st:
    kind: static
    tokens:
      - {{ token_sha256: {sha(STATIC_TOKEN)}, identity: {{ subject: bob, scopes: [read] }} }}
routes:
  - {{ name: api, path_prefix: /api, provider: st, upstream: echo }}
tracing:
  endpoint: http://127.0.0.1:{col.port}
  include_subject: true
  queue_size: 64
  batch_size: 32
  timeout: 500ms
  export_interval: 50ms
""")
    hdr = {"Authorization": f"Bearer {STATIC_TOKEN}"}

    def run(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            s, _, _ = get(port, "/api/x", hdr, conn=c)
            times.append(time.perf_counter() - t)
            check(s == 200, f"status {s}")
        return statistics.median(times) * 1e3

    try:
        run(200)
        healthy = run(1000)
        span = col.wait_spans(lambda s: s.kind == SERVER)[0]
        check(attrs(span).get("enduser.id") == "bob", "include_subject: the subject on the span")
        col.delay = 2.0
        rss_before = rss_kib(proc.pid)
        slow = run(1500)
        full = metric(admin, 'sessiongate_trace_spans_dropped_total{reason="queue_full"}')
        failed_slow = metric(admin, 'sessiongate_trace_spans_dropped_total{reason="export_failed"}')
        col.close()
        down = run(1500)
        failed = metric(admin, 'sessiongate_trace_spans_dropped_total{reason="export_failed"}')
        rss_after = rss_kib(proc.pid)
        results.update(collector_healthy_median_ms=round(healthy, 3), collector_slow_median_ms=round(slow, 3),
                       collector_down_median_ms=round(down, 3), dropped_queue_full=full,
                       dropped_export_failed=failed, rss_growth_kib=rss_after - rss_before,
                       exported=metric(admin, "sessiongate_trace_spans_exported_total"))
        check(full > 0, "a slow collector fills the queue: drops counted")
        check(failed > failed_slow, "a collector gone: failed exports counted")
        for name, m in (("slow", slow), ("down", down)):
            check(m <= max(1.5 * healthy, healthy + 1.0), f"collector {name}: median {m:.3f} ms vs {healthy:.3f} ms healthy")
        check(rss_after - rss_before < 8 * 1024, f"memory grew {rss_after - rss_before} KiB")
    finally:
        stop(proc)


def gateway_d(args, work, results):
    col, idp = Collector(), Recorder(provider=True)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    with open(f"{work}/cluster-secret", "w") as f:
        f.write("traces-e2e-cluster-secret-0123456789abcdef")
    try:
        wait_port(redis_port, "redis-server")
        proc, port, admin = start(args, work, "d", f"""
providers:
  idp: {{ kind: http, url: "http://127.0.0.1:{idp.port}/sessions/{{token}}", method: GET, token: {{ in: path }}, timeout: 2s, response: {{ subject: /sub, scopes: /scopes }} }}
rate_limits:
  per-user: {{ rate: 1000/s, burst: 100 }}
routes:
  - {{ name: api, path_prefix: /api, provider: idp, upstream: echo, rate_limits: [per-user] }}
cluster:
  redis: {{ url: "redis://127.0.0.1:{redis_port}/0" }}
  key_secret_file: {work}/cluster-secret
tracing:
  endpoint: http://127.0.0.1:{col.port}
  export_interval: 100ms
""")
        try:
            status, _, _ = get(port, "/api/x", {"Authorization": f"Bearer {PATH_TOKEN}"})
            check(status == 200, f"clustered request: {status}")
            server = col.wait_spans(lambda s: s.kind == SERVER)[0]
            kids = col.wait_spans(lambda s: s.parent_span_id == server.span_id, n=3)
            names = sorted(k.name for k in kids)
            for want in ("redis shared_find", "redis rate_limit", "GET /sessions/{token}"):
                check(want in names, f"no {want!r} child: {names}")
            for k in kids:
                if k.name.startswith("redis"):
                    check(attrs(k).get("db.system.name") == "redis" and k.kind == CLIENT, f"redis span {attrs(k)}")
            for _, body, _, _ in col.exports:
                check(PATH_TOKEN.encode() not in body and PATH_TOKEN[:12].encode() not in body, "token in an export")
            results["redis_children"] = names
        finally:
            stop(proc)
    finally:
        redis.kill()
        col.close()


def gateway_e(args, work, results):
    """A collector over TLS with a private CA: `ca_file` trusted, the system's alone not."""
    def run(*a):
        subprocess.run(a, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=traces e2e CA", "-keyout", f"{work}/ca.key", "-out", f"{work}/ca.crt")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=collector", "-keyout", f"{work}/col.key", "-out", f"{work}/col.csr")
    with open(f"{work}/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", f"{work}/col.csr", "-CA", f"{work}/ca.crt", "-CAkey", f"{work}/ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{work}/ext", "-out", f"{work}/col.crt")
    col = Collector(tls=(f"{work}/col.crt", f"{work}/col.key"))
    try:
        for name, ca in (("e", f"\n  ca_file: {work}/ca.crt"), ("e-untrusted", "")):
            proc, port, admin = start(args, work, name, f"""
routes:
  - {{ name: open, path_prefix: /open, auth: none, upstream: echo }}
tracing:
  endpoint: https://127.0.0.1:{col.port}
  export_interval: 100ms{ca}
""")
            try:
                get(port, "/open/x")
                if ca:
                    col.wait_spans(lambda s: s.kind == SERVER)
                else:
                    deadline = time.time() + 10
                    while time.time() < deadline and metric(admin, 'sessiongate_trace_spans_dropped_total{reason="export_failed"}') == 0:
                        time.sleep(0.1)
                    check(metric(admin, 'sessiongate_trace_spans_dropped_total{reason="export_failed"}') >= 1,
                          "a collector whose CA is not trusted: the export fails and is counted")
            finally:
                stop(proc)
        check(len(col.spans()) >= 1, "spans over TLS")
        results["tls_collector"] = "ca_file trusted; without it the export fails, counted"
    finally:
        col.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/sessiongate")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-traces-")
    results = {}
    try:
        gateway_a(args, work, results)
        gateway_d(args, work, results)
        gateway_e(args, work, results)
        gateway_b(args, work, results)
        gateway_c(args, work, results)
    except Failure as e:
        print(json.dumps(results, indent=1))
        print(f"traces: FAILED: {e}", file=sys.stderr)
        print_tails(work, ["a.log", "b.log", "c.log", "d.log", "e.log", "e-untrusted.log"])
        sys.exit(1)
    print(json.dumps(results, indent=1))
    print("traces: ok")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
