"""gRPC through the gateway with a real grpcio server and client (issue #17).

The server (grpcio, cleartext HTTP/2) is the gateway's `h2c://` upstream; the client
calls through the gateway's h2c listener and its TLS listener (ALPN h2). Generic
handlers on raw bytes: no generated code. Checked:
- unary, server streaming, client streaming and a 1,000-message bidirectional stream;
- identity headers arrive as metadata, a client-sent copy does not;
- the upstream's own status and trailing metadata reach the client;
- refusals the gRPC way: no token -> UNAUTHENTICATED, missing scope -> PERMISSION_DENIED
  (per service, by the route on the method path), provider down -> UNAVAILABLE, no route
  -> UNIMPLEMENTED, over a rate limit -> RESOURCE_EXHAUSTED (issue #37, with the
  `retry-after` and RateLimit fields in the trailers-only metadata); none of them reaches
  the server.

Usage: python tests/e2e/grpc_calls.py (not grpc.py: it would shadow the grpc package) --bin target/debug/sessiongate
"""

import argparse
import hashlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

from e2e_util import Failure, check, free_port, wait_ready

TOKEN = "grpc-e2e-token-0123456789abcdef"
READER = "grpc-e2e-reader-0123456789abcdef"
# --- the upstream -----------------------------------------------------------------------

calls = {"n": 0}
lock = threading.Lock()


def seen(context):
    with lock:
        calls["n"] += 1
    md = dict(context.invocation_metadata())
    return f"subject={md.get('x-auth-subject', '-')};spoofed={md.get('x-auth-spoofed', '-')}".encode()


def unary(request, context):
    if request == b"fail":
        context.set_trailing_metadata((("x-upstream-detail", "on purpose"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
    return seen(context) + b"|" + request


def server_stream(request, context):
    head = seen(context)
    for i in range(int(request)):
        yield head + b"|" + str(i).encode()


def client_stream(request_iterator, context):
    head = seen(context)
    n = sum(1 for _ in request_iterator)
    return head + b"|" + str(n).encode()


def bidi(request_iterator, context):
    seen(context)
    for message in request_iterator:
        yield message


def start_upstream(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("orders.v1.Orders", handlers),
            grpc.method_handlers_generic_handler("admin.v1.Admin", handlers),
            grpc.method_handlers_generic_handler("limited.v1.Limited", handlers),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


# --- the gateway ------------------------------------------------------------------------


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def make_pki(work):
    def run(*args):
        subprocess.run(args, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=grpc e2e CA", "-keyout", f"{work}/ca.key",
        "-out", f"{work}/ca.crt")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=grpc.test", "-keyout", f"{work}/tls.key", "-out", f"{work}/tls.csr")
    with open(f"{work}/ext", "w") as f:
        f.write("subjectAltName=DNS:grpc.test\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", f"{work}/tls.csr", "-CA", f"{work}/ca.crt",
        "-CAkey", f"{work}/ca.key", "-CAcreateserial", "-days", "2", "-extfile",
        f"{work}/ext", "-out", f"{work}/tls.crt")


def start_gateway(binary, work, upstream_port):
    listen, admin, tls = free_port(), free_port(), free_port()
    dead = free_port()  # nothing listens here: the provider that is down
    config = f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 1s
h2c: true
tls:
  listen: 127.0.0.1:{tls}
  certificates: [{{ chain: {work}/tls.crt, key: {work}/tls.key }}]
providers:
  s:
    kind: static
    tokens:
      - {{ token_sha256: {sha(TOKEN)}, identity: {{ subject: alice, scopes: [orders, admin] }} }}
      - {{ token_sha256: {sha(READER)}, identity: {{ subject: bob, scopes: [orders] }} }}
  down:
    kind: http
    url: http://127.0.0.1:{dead}/session
    timeout: 500ms
    response: {{ subject: /sub }}
    protection: {{ failures: 0 }}
upstreams:
  orders: "h2c://127.0.0.1:{upstream_port}"
rate_limits:
  # Two calls a minute per subject and channel (the x-lane metadata: each channel of the
  # test has its own count).
  two-a-minute: {{ key: "header:x-lane", rate: 2/min, burst: 2 }}
routes:
  - {{ name: limited, path_prefix: /limited.v1.Limited/, provider: s, upstream: orders, rate_limits: [two-a-minute] }}
  - {{ name: orders, path_prefix: /orders.v1.Orders/, provider: s, upstream: orders, require_scopes: {{ all_of: [orders] }} }}
  - {{ name: admin, path_prefix: /admin.v1.Admin/, provider: s, upstream: orders, require_scopes: {{ all_of: [admin] }} }}
  - {{ name: down, path_prefix: /down.v1.Down/, provider: down, upstream: orders }}
"""
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config)
    log = open(os.path.join(work, "gateway.log"), "w")
    proc = subprocess.Popen([binary, "--config", path], stdout=log, stderr=subprocess.STDOUT)
    wait_ready(admin, proc)
    return proc, listen, tls


# --- the client -------------------------------------------------------------------------


def stubs(channel):
    def m(kind, service, method):
        return getattr(channel, kind)(f"/{service}/{method}")

    return {
        "unary": m("unary_unary", "orders.v1.Orders", "Unary"),
        "server": m("unary_stream", "orders.v1.Orders", "ServerStream"),
        "client": m("stream_unary", "orders.v1.Orders", "ClientStream"),
        "bidi": m("stream_stream", "orders.v1.Orders", "Bidi"),
        "admin": m("unary_unary", "admin.v1.Admin", "Unary"),
        "down": m("unary_unary", "down.v1.Down", "Unary"),
        "none": m("unary_unary", "nothing.v1.Nothing", "Unary"),
        "limited": m("unary_unary", "limited.v1.Limited", "Unary"),
    }


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, None


def exercise(name, channel):
    s = stubs(channel)
    auth = (("authorization", f"Bearer {TOKEN}"), ("x-auth-subject", "mallory"))
    reader = (("authorization", f"Bearer {READER}"),)

    out = s["unary"](b"ping", metadata=auth, timeout=10)
    check(out == b"subject=alice;spoofed=-|ping", f"{name}: unary answered {out!r}")

    msgs = list(s["server"](b"100", metadata=auth, timeout=10))
    check(len(msgs) == 100 and msgs[-1].endswith(b"|99"), f"{name}: server stream {len(msgs)}")

    out = s["client"](iter([b"x"] * 100), metadata=auth, timeout=10)
    check(out == b"subject=alice;spoofed=-|100", f"{name}: client stream {out!r}")

    # Ping-pong: each message is sent only after the previous one came back, so a gateway
    # that buffered either direction would stall here (streamed, not buffered).
    sent = [f"message {i}".encode() * (1 + i % 7) for i in range(1000)]
    echoed = queue.Queue()

    def one_at_a_time():
        for m in sent:
            yield m
            echoed.get(timeout=10)

    got = []
    for message in s["bidi"](one_at_a_time(), metadata=auth, timeout=60):
        got.append(message)
        echoed.put(None)
    check(got == sent, f"{name}: bidi echoed {len(got)} of 1000 (or altered)")

    # The upstream's own status, message and trailing metadata come through.
    try:
        s["unary"](b"fail", metadata=auth, timeout=10)
        raise Failure(f"{name}: the upstream's NOT_FOUND was lost")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "no such order",
              f"{name}: upstream status {e.code()} {e.details()!r}")
        trailing = dict(e.trailing_metadata() or ())
        check(trailing.get("x-upstream-detail") == "on purpose", f"{name}: trailers {trailing}")

    before = calls["n"]
    for what, call, want in [
        ("no token", lambda: s["unary"](b"x", timeout=10), grpc.StatusCode.UNAUTHENTICATED),
        ("a bad token", lambda: s["unary"](b"x", metadata=(("authorization", "Bearer nope-0123456789abcdef"),), timeout=10),
         grpc.StatusCode.UNAUTHENTICATED),
        ("a missing scope", lambda: s["admin"](b"x", metadata=reader, timeout=10), grpc.StatusCode.PERMISSION_DENIED),
        ("a provider down", lambda: s["down"](b"x", metadata=auth, timeout=10), grpc.StatusCode.UNAVAILABLE),
        ("no route", lambda: s["none"](b"x", metadata=auth, timeout=10), grpc.StatusCode.UNIMPLEMENTED),
        ("a stream with no token", lambda: list(s["bidi"](iter([b"a"]), timeout=10)), grpc.StatusCode.UNAUTHENTICATED),
    ]:
        code, details = code_of(call)
        check(code == want, f"{name}: {what}: {code} ({details}), expected {want}")
    check(calls["n"] == before, f"{name}: a refused call reached the upstream")
    # A rate limit: two calls admitted, the third RESOURCE_EXHAUSTED with when to retry,
    # and it never reaches the server.
    lane = auth + (("x-lane", name),)
    for i in range(2):
        out = s["limited"](b"l", metadata=lane, timeout=10)
        check(out == b"subject=alice;spoofed=-|l", f"{name}: limited call {i + 1}: {out!r}")
    before = calls["n"]
    try:
        s["limited"](b"l", metadata=lane, timeout=10)
        raise Failure(f"{name}: the third call within a minute was admitted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"{name}: over the limit: {e.code()} ({e.details()})")
        md = dict(e.trailing_metadata() or ()) | dict(e.initial_metadata() or ())
        retry = int(md.get("retry-after", "0"))
        check(25 <= retry <= 31, f"{name}: retry-after {md.get('retry-after')!r}")
        check(md.get("ratelimit") == f'"two-a-minute";r=0;t={retry}', f"{name}: ratelimit {md.get('ratelimit')!r}")
        check("two-a-minute" in (e.details() or ""), f"{name}: details {e.details()!r}")
    check(calls["n"] == before, f"{name}: a rate-limited call reached the upstream")
    # The reader may call the orders service (route by service path).
    out = s["unary"](b"r", metadata=reader, timeout=10)
    check(out == b"subject=bob;spoofed=-|r", f"{name}: reader {out!r}")
    print(f"grpc: {name}: unary, server/client streaming, 1,000-message ping-pong bidi (streamed both ways), upstream status + "
          "trailers, refusals as UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE / UNIMPLEMENTED / RESOURCE_EXHAUSTED")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/debug/sessiongate")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sg-grpc-")
    make_pki(work)
    upstream_port = free_port()
    server = start_upstream(upstream_port)
    proc, listen, tls = start_gateway(os.path.abspath(args.bin), work, upstream_port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{listen}") as channel:
            exercise("h2c", channel)
        with open(f"{work}/ca.crt", "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options = (("grpc.ssl_target_name_override", "grpc.test"),)
        with grpc.secure_channel(f"127.0.0.1:{tls}", creds, options=options) as channel:
            exercise("TLS", channel)
    except Failure as e:
        print(f"grpc: FAIL: {e}", file=sys.stderr)
        with open(os.path.join(work, "gateway.log")) as f:
            sys.stderr.write(f.read()[-3000:])
        sys.exit(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.stop(0)
    print("grpc: ok")


if __name__ == "__main__":
    main()
