#!/usr/bin/env python3
"""Three gateway processes sharing revocations and identities through a real redis-server.

Started here, each on a free 127.0.0.1 port: redis-server (append-only file, written on shutdown,
so a restart keeps the stream), a fake BitGo provider that counts calls and can revoke tokens, a
static upstream, and gateways A, B and C with the same `cluster:` section. B reaches
Redis through a TCP relay this script can cut, to disconnect B alone.

Checked (each failure names itself; exit 1):
1. propagation: 100 purges on A (by token, subject and session id, in turn) of tokens
   cached on B and C; each is refused on B and C once the provider has revoked it; time
   from A's answer to both refusals, p50/p99 (target p99 < 250 ms);
2. the stream holds no token, subject or session id in clear;
3. Redis down: cache hits keep being served on B (no 5xx); a purge on A answers
   `pending`; after Redis returns (same data), it reaches B, and D — a gateway started
   during the outage that cached the token before it could read the stream;
4. B cut off while A publishes more than the stream keeps: B flushes its cache when it
   reconnects (sessiongate_cluster_flushes_total{reason="trimmed"}) and refuses the
   purged token.

The shared identity cache (L2), between 2 and 3:
5. one new token asked 64-way concurrently on each of A, B and C at once: exactly one
   provider call; a refused token likewise;
6. Redis holds no subject, scope, session id or token in clear, and no value outlives
   min(cache.ttl, the identity's expiry) (PTTL checked, a token expiring in 30 s); a
   purge by subject removes its value;
7. a value tampered with in Redis is not used (counted `unreadable`, the provider is
   asked) and is replaced by a good one;
8. C restarted: its first request for a token it had cached makes no provider call;
9. latency of a provider miss, an L2 hit and an L1 hit (p50 over 200 tokens) and Redis
   bytes per identity (MEMORY USAGE of values and name sets);
10. Redis hung (SIGSTOP) and Redis full (maxmemory): new tokens still served, the
    breaker opens and closes again;
and in 3, tokens never seen before are served on B while Redis is down;
11. Redis killed and restarted empty while B is cut off, A publishing first (re-creating
    the stream): B refuses the token purged before the restart, and A, B and C each flush
    exactly once (`stream_lost`);
12. C stalled (SIGSTOP, 1.05 s) while a purge is published and the stream trimmed past
    it (XTRIM MAXLEN 0): C flushes (`trimmed`) and refuses the token;
13. an entry published and trimmed in one transaction (never handed to any read), B
    neither stalled nor disconnected: B notices on its next read, flushes, refuses.

Usage: tests/e2e/cluster.py [--bin target/debug/sessiongate] [--json out.json]
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from e2e_util import Failure, check, free_port

ADMIN_TOKEN = "cluster-admin-token-0123456789"


class Provider(http.server.ThreadingHTTPServer):
    """BitGo's GET /api/v2/user/session: every `tok-*` token is a session of user
    `user-<n>` with session id `sess-<n>`, until revoked."""

    daemon_threads = True
    request_queue_size = 512

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.revoked = set()
        self.calls = {}
        self.lock = threading.Lock()
        self.delay = 0.0


class NoDelay:
    """Headers and body go out in separate writes: without TCP_NODELAY the second waits
    for the gateway's delayed ACK (40 ms per request)."""

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProviderHandler(NoDelay, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        srv = self.server
        with srv.lock:
            srv.calls[token] = srv.calls.get(token, 0) + 1
            revoked = token in srv.revoked
        # A slow provider, so that concurrent misses overlap.
        time.sleep(srv.delay)
        if not token.startswith("tok-") or revoked:
            body = b'{"error":"unauthorized"}'
            self.send_response(401)
        else:
            n = token[4:]
            expires = "2099-01-01T00:00:00.000Z"
            if n.startswith("exp"):
                # tok-exp<seconds>-...: expires that many seconds from now.
                secs = int(n[3:].split("-")[0])
                expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + secs))
            body = json.dumps({"session": {
                "id": f"sess-{n}", "user": f"user-{n}", "client": "bitgo",
                "created": "2026-11-01T10:00:00.000Z", "expires": expires,
                "scope": ["wallet_view_all"], "ipRestrict": [],
            }}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Relay:
    """A TCP relay to Redis that can be cut (all connections closed, new ones refused)
    and restored."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns = []

    def restore(self):
        self.open = True


def request(port, method, path, token=None, body=None, headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload


def metric(port, name):
    status, body = request(port, "GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SESSIONGATE_BIN", "target/debug/sessiongate"))
    ap.add_argument("--json")
    ap.add_argument("--purges", type=int, default=100)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-cluster-")
    procs = []
    gateways = {}

    def spawn(cmd, log, env=None):
        p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})})
        procs.append(p)
        return p

    try:
        # --- Redis, with an append-only file so a restart keeps the stream ---
        redis_port = free_port()
        redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                     "--dir", work, "--daemonize", "no"]
        redis = spawn(redis_cmd, f"{work}/redis.log")
        wait_port(redis_port, "redis-server")

        provider = Provider()
        threading.Thread(target=provider.serve_forever, daemon=True).start()
        upstream = Upstream(("127.0.0.1", 0), UpstreamHandler)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()

        relay = Relay(redis_port)
        with open(f"{work}/cluster-secret", "w") as f:
            f.write("an-e2e-cluster-secret-of-forty-characters!")
        with open(f"{work}/admin-token", "w") as f:
            f.write(ADMIN_TOKEN)

        def start_gateway(name, rport):
            port, admin = free_port(), free_port()
            cfg = f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
threads: 1
pid_file: {work}/{name}.pid
upgrade_sock: {work}/{name}.sock
providers:
  bitgo:
    kind: bitgo
    url: http://127.0.0.1:{provider.server_address[1]}/api/v2/user/session
cache: {{ ttl: 600s }}
upstreams:
  app: http://127.0.0.1:{upstream.server_address[1]}
routes:
  - {{ name: api, path_prefix: /, provider: bitgo, upstream: app }}
admin:
  token_file: {work}/admin-token
cluster:
  redis:
    url: redis://127.0.0.1:{rport}/0
    command_timeout: 200ms
  key_secret_file: {work}/cluster-secret
  revocations:
    stream: e2e:revocations
    max_entries: 1000
  shared_cache:
    key_prefix: e2e:identities
    lock_wait: 2s
    timeout: 250ms   # a debug build under 192 concurrent requests on 2 cores
log: {{ level: info, format: json }}
"""
            path = f"{work}/{name}.yaml"
            with open(path, "w") as f:
                f.write(cfg)
            spawn([args.bin, "--config", path], f"{work}/{name}.log")
            gateways[name] = (port, admin)
            return port, admin

        for name in "ABC":
            start_gateway(name, relay.port if name == "B" else redis_port)
        for name, (port, admin) in gateways.items():
            wait_connected(admin, f"gateway {name}")
        A, B, C = (gateways[n] for n in "ABC")

        # --- 1. propagation ---
        kinds = ["token", "subject", "session_id"]
        times = []
        for i in range(args.purges):
            token = f"tok-{i}"
            for port, _ in (A, B, C):
                status, _ = request(port, "GET", "/x", token)
                check(status == 200, f"{token} not allowed before the purge: {status}")
            before = provider.calls.get(token, 0)
            with provider.lock:
                provider.revoked.add(token)
            kind = kinds[i % 3]
            value = {"token": token, "subject": f"user-{i}", "session_id": f"sess-{i}"}[kind]
            if kind == "subject":
                # What an operator runs inside a pod (`kubectl exec … sessiongate admin
                # purge`): the CLI reads A's config for the admin address and token.
                done = subprocess.run([args.bin, "--config", f"{work}/A.yaml", "admin", "purge",
                                       "--subject", value], capture_output=True, text=True,
                                      timeout=15)
                check(done.returncode == 0, f"admin purge CLI: {done.returncode} {done.stderr}")
                status, reply = 200, json.loads(done.stdout)
            else:
                status, body = request(A[1], "POST", "/admin/purge", body={kind: value},
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                reply = json.loads(body)
            check(status == 200 and reply["removed"] == 1 and reply["fan_out"] == "published",
                  f"purge {i} on A: {status} {reply}")
            t0 = time.monotonic()
            refused = {}
            while len(refused) < 2:
                for name, (port, _) in (("B", B), ("C", C)):
                    if name in refused:
                        continue
                    status, _ = request(port, "GET", "/x", token)
                    if status == 401:
                        refused[name] = time.monotonic() - t0
                check(time.monotonic() - t0 < 5, f"purge {i} ({kind}) did not reach {set('BC') - set(refused)} in 5 s")
                time.sleep(0.001)
            times.append(max(refused.values()))
            # Each replica asked the provider again only after its own purge.
            # B and C asked the provider again once each (then remembered the refusal).
            extra = provider.calls.get(token, 0) - before
            check(extra <= 2, f"{token}: {extra} provider calls after the purge, expected <= 2")
        times.sort()
        p50 = statistics.median(times) * 1000
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
        print(f"cluster: propagation over {len(times)} purges (A's answer -> refused on B and C): "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {times[-1] * 1000:.1f} ms")
        check(p99 < 250, f"propagation p99 {p99:.1f} ms >= 250 ms")
        applied = metric(B[1], "sessiongate_cluster_purges_applied_total")
        check(applied >= args.purges, f"B applied {applied} purges, expected >= {args.purges}")

        # --- 2. nothing in clear in the stream ---
        dump = subprocess.run(["redis-cli", "-p", str(redis_port), "XRANGE", "e2e:revocations", "-", "+"],
                              capture_output=True, text=True, check=True).stdout
        for i in range(args.purges):
            for secret in (f"tok-{i}\n", f"user-{i}\n", f"sess-{i}\n"):
                check(secret not in dump + "\n", f"the stream holds {secret.strip()!r} in clear")
        print(f"cluster: stream has {dump.count(chr(10) + 'o' + chr(10))} entries, no token, subject or session id in clear")

        # --- 5-9. the shared identity cache ---
        l2 = shared_cache_checks(provider, gateways, redis_port, start_gateway, procs, work)
        A, B, C = (gateways[n] for n in "ABC")  # C was restarted on new ports
        replayed_values(provider, redis_port, gateways, start_gateway, procs)
        redis_slow_and_full(redis, redis_port, A, C)

        # --- 3. Redis down ---
        hot = "tok-hot"
        for port, _ in (A, B, C):
            check(request(port, "GET", "/x", hot)[0] == 200, "hot token before the outage")
        victim = "tok-victim"
        for port, _ in (A, B, C):
            check(request(port, "GET", "/x", victim)[0] == 200, "victim before the outage")
        before_outage = []
        t_end = time.time() + 1
        while time.time() < t_end:
            t0 = time.perf_counter()
            check(request(B[0], "GET", "/x", hot)[0] == 200, "hot token on B")
            before_outage.append(time.perf_counter() - t0)
        redis.send_signal(signal.SIGTERM)
        redis.wait(timeout=10)
        deadline = time.time() + 10
        while metric(B[1], "sessiongate_cluster_redis_up") != 0:
            check(time.time() < deadline, "B still reports Redis up after it stopped")
            time.sleep(0.05)
        status, body = request(B[1], "GET", "/readyz")
        check(status == 200 and b"cluster: redis down" in body,
              f"B's /readyz while Redis is down: {status} {body!r}")
        served, errors, during = 0, 0, []
        t_end = time.time() + 2
        while time.time() < t_end:
            t0 = time.perf_counter()
            status, _ = request(B[0], "GET", "/x", hot)
            during.append(time.perf_counter() - t0)
            served += 1
            errors += status >= 500
        check(errors == 0, f"{errors} of {served} hits on B failed while Redis was down")
        p50_before, p50_during = statistics.median(before_outage) * 1000, statistics.median(during) * 1000
        print(f"cluster: hit latency on B, p50: {p50_before:.2f} ms with Redis up, "
              f"{p50_during:.2f} ms while it is down")
        # A sentinel against hits waiting for Redis (timeouts are tens of ms), not a
        # performance target.
        check(p50_during < p50_before * 2 + 1, "hits got slower while Redis was down")
        # D starts while Redis is down and caches the victim before it ever reads the
        # stream: the purge below must still reach it.
        D = start_gateway("D", redis_port)
        wait_http(D[1], "/readyz", "gateway D (started while Redis is down)")
        check(request(D[0], "GET", "/x", victim)[0] == 200, "victim on D before the purge")
        with provider.lock:
            provider.revoked.add(victim)
        status, body = request(A[1], "POST", "/admin/purge", body={"token": victim},
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        reply = json.loads(body)
        check(status == 200 and reply["fan_out"] == "pending" and reply["removed"] == 1,
              f"purge while Redis is down: {status} {reply}")
        check(request(A[0], "GET", "/x", victim)[0] == 401, "A applies its own purge at once")
        check(request(B[0], "GET", "/x", victim)[0] == 200, "B cannot know yet (test premise)")
        slowest = 0.0
        for i in range(20):
            t0 = time.monotonic()
            status, _ = request(B[0], "GET", "/x", f"tok-outage-{i}")
            slowest = max(slowest, time.monotonic() - t0)
            check(status == 200, f"a new token on B while Redis is down: {status}")
        check(slowest < 0.5, f"a new token on B took {slowest * 1000:.0f} ms while Redis was down")
        print(f"cluster: Redis down: {served} hits on B, 0 failed; 20 new tokens served "
              f"(slowest {slowest * 1000:.0f} ms); purge on A answered 'pending'")
        redis = spawn(redis_cmd, f"{work}/redis-2.log")
        wait_port(redis_port, "redis-server (restarted)")
        t0 = time.monotonic()
        while request(B[0], "GET", "/x", victim)[0] != 401:
            check(time.monotonic() - t0 < 15, "the purge made during the outage never reached B")
            time.sleep(0.02)
        print(f"cluster: the purge made during the outage reached B {time.monotonic() - t0:.2f} s after Redis returned")
        while request(D[0], "GET", "/x", victim)[0] != 401:
            check(time.monotonic() - t0 < 15, "the purge made during the outage never reached D (started during it)")
            time.sleep(0.02)
        print(f"cluster: ... and D, started during the outage, {time.monotonic() - t0:.2f} s after")
        check(metric(B[1], 'sessiongate_cluster_flushes_total') == 0, "B flushed although nothing was lost")

        # --- 4. B cut off while entries are trimmed ---
        kept = "tok-kept-on-b"
        check(request(B[0], "GET", "/x", kept)[0] == 200, "kept token on B")
        cut_off(relay, B)
        with provider.lock:
            provider.revoked.add(kept)
        for i in range(1500):
            status, body = request(A[1], "POST", "/admin/purge", body={"subject": f"nobody-{i}"},
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            check(status == 200, f"filler purge {i}: {status}")
        status, body = request(A[1], "POST", "/admin/purge", body={"token": kept},
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        # Published, or queued behind filler purges still being published: either way
        # it is in A's hands; what matters is that B, which misses it, flushes.
        check(json.loads(body)["fan_out"] in ("published", "pending"), f"purge of {kept}: {body!r}")
        relay.restore()
        t0 = time.monotonic()
        while metric(B[1], 'sessiongate_cluster_flushes_total{reason="trimmed"}') < 1:
            check(time.monotonic() - t0 < 20, "B never flushed after missing trimmed entries")
            time.sleep(0.05)
        check(request(B[0], "GET", "/x", kept)[0] == 401, "B serves a purged token after the flush")
        print("cluster: B, cut off while 1,501 purges went by (stream keeps ~1,000), flushed on reconnect")
        # --- 11. Redis restarted empty while B is cut off ---
        stream_gaps(provider, redis, redis_cmd, redis_port, relay, gateways, spawn, work)

        if args.json:
            with open(args.json, "w") as f:
                json.dump({"purges": len(times), "p50_ms": p50, "p99_ms": p99,
                           "max_ms": times[-1] * 1000, "shared_cache": l2}, f)
        print("cluster: ok")
        return 0
    except Failure as e:
        print(f"cluster: FAILED: {e}", file=sys.stderr)
        for name, (_, admin) in gateways.items():
            try:
                _, body = request(admin, "GET", "/metrics")
                lines = [l for l in body.decode().splitlines() if l.startswith("sessiongate_cluster")]
                print(f"--- {name} metrics", *lines, sep="\n", file=sys.stderr)
            except OSError:
                pass
        for name in ("A", "B", "C", "D"):
            log = f"{work}/{name}.log"
            if os.path.exists(log):
                lines = [l for l in open(log) if "sessiongate::access" not in l and "admin purge" not in l]
                print(f"--- {name}.log (tail, without access lines)", file=sys.stderr)
                print("".join(lines[-15:]), file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # 192 concurrent requests open as many upstream connections at once.
    request_queue_size = 512


class UpstreamHandler(NoDelay, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b"upstream ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def cut_off(relay, B):
    """Cuts B's relay to Redis and waits until B knows it."""
    relay.cut()
    deadline = time.time() + 10
    while metric(B[1], "sessiongate_cluster_redis_up") != 0:
        check(time.time() < deadline, "B still reports Redis up after the cut")
        time.sleep(0.05)


def flushes(admin, reason):
    return metric(admin, f'sessiongate_cluster_flushes_total{{reason="{reason}"}}')


def purge(admin, body):
    status, reply = request(admin, "POST", "/admin/purge", body=body,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    check(status == 200, f"purge {body}: {status} {reply!r}")
    return json.loads(reply)


def wait_refused(port, token, within, what):
    t0 = time.monotonic()
    while request(port, "GET", "/x", token)[0] != 401:
        check(time.monotonic() - t0 < within, what)
        time.sleep(0.02)
    return time.monotonic() - t0


def stream_gaps(provider, redis, redis_cmd, redis_port, relay, gateways, spawn, work):
    """11. Redis restarted empty while B is cut off: a purge published before the restart
    is lost with the stream; A publishes again (re-creating it) before B reconnects. B must
    notice that the stream is not the one it was reading, flush, and refuse the token —
    and every replica flushes exactly once, whatever the order they reconnect in.
    12. C stalls (SIGSTOP) while the stream is trimmed past its position (XTRIM MAXLEN 0
    after a purge it has not read): on waking it notices the gap on its next read (no
    reconnect needed), flushes, and refuses the token."""
    A, B, C = (gateways[n] for n in "ABC")
    lost = "tok-lost-in-restart"
    for port, _ in (A, B, C):
        check(request(port, "GET", "/x", lost)[0] == 200, f"{lost} before the restart")
    before = {n: flushes(gateways[n][1], "stream_lost") for n in "ABC"}
    cut_off(relay, B)
    with provider.lock:
        provider.revoked.add(lost)
    check(purge(A[1], {"token": lost})["fan_out"] == "published", "purge before the restart")
    redis.kill()
    redis.wait(timeout=10)
    for leftover in ("appendonlydir", "appendonly.aof", "dump.rdb"):
        path = os.path.join(work, leftover)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    redis = spawn(redis_cmd, f"{work}/redis-3.log")
    wait_port(redis_port, "redis-server (restarted empty)")
    # A publishes first (re-creating the stream), while B is still cut off.
    t0 = time.monotonic()
    while purge(A[1], {"subject": "nobody-after-restart"})["fan_out"] != "published":
        check(time.monotonic() - t0 < 15, "A never published after the empty restart")
        time.sleep(0.1)
    relay.restore()
    took = wait_refused(B[0], lost, 15, "B serves a token purged before the empty restart")
    time.sleep(2.5)  # every replica has read and checked the new stream by now
    after = {n: flushes(gateways[n][1], "stream_lost") for n in "ABC"}
    for n in "ABC":
        check(after[n] - before[n] == 1,
              f"{n} flushed {after[n] - before[n]} times after the empty restart, expected once")
    print(f"cluster: Redis restarted empty while B was cut off: B refused the purged token "
          f"{took:.2f} s after reconnecting; A, B and C flushed once each (stream_lost)")

    # --- 12. trimmed while C stalls ---
    stalled = "tok-trimmed-during-stall"
    check(request(C[0], "GET", "/x", stalled)[0] == 200, f"{stalled} before the stall")
    trimmed_before = flushes(C[1], "trimmed")
    errors_before = metric(C[1], 'sessiongate_cluster_redis_errors_total{op="read"}')
    with open(f"{work}/C.pid") as f:
        c_pid = int(f.read().strip())
    os.kill(c_pid, signal.SIGSTOP)
    try:
        # Long enough for C's blocking read to end at Redis, so the purge is not handed
        # to a read already waiting; short of C's own read timeout (no reconnect).
        time.sleep(1.05)
        with provider.lock:
            provider.revoked.add(stalled)
        check(purge(A[1], {"token": stalled})["fan_out"] == "published", "purge during the stall")
        redis_cli(redis_port, "XTRIM", "e2e:revocations", "MAXLEN", "0")
    finally:
        os.kill(c_pid, signal.SIGCONT)
    took = wait_refused(C[0], stalled, 5, "C serves a token whose purge was trimmed during its stall")
    check(flushes(C[1], "trimmed") == trimmed_before + 1, "C's flush after the trim was not counted")
    reconnected = metric(C[1], 'sessiongate_cluster_redis_errors_total{op="read"}') > errors_before
    print(f"cluster: C stalled 1.05 s while the stream was trimmed past it: flushed (trimmed) and "
          f"refused the token {took:.2f} s after waking"
          f"{' (after a read timeout)' if reconnected else ', on its next read'}")

    # --- 13. an entry trimmed before anyone could read it, no stall, no reconnect ---
    # What a burst of more than max_entries purges does to a replica that is merely
    # slow: one publication (the publish script's two writes) and a trim in one
    # transaction, so no blocked read is ever handed the entry.
    unread = "tok-trimmed-unread"
    check(request(B[0], "GET", "/x", unread)[0] == 200, f"{unread} before the trim")
    trimmed_before = flushes(B[1], "trimmed")
    reads_before = metric(B[1], 'sessiongate_cluster_redis_errors_total{op="read"}')
    with provider.lock:
        provider.revoked.add(unread)
    # A purge removes the shared (L2) value it concerns before publishing: so here.
    for kind in ("v", "n"):
        for key in l2_keys(redis_port, kind):
            redis_cli(redis_port, "DEL", key)
    epoch = redis_cli(redis_port, "HGET", "e2e:revocations:epoch", "e").decode().strip()
    n = int(redis_cli(redis_port, "HGET", "e2e:revocations:epoch", "n")) + 1
    script = (f"MULTI\nHINCRBY e2e:revocations:epoch n 1\n"
              f"XADD e2e:revocations * o e2e-test e {epoch} n {n} t subject v {'0' * 32}\n"
              f"XTRIM e2e:revocations MAXLEN 0\nEXEC\n")
    subprocess.run(["redis-cli", "-p", str(redis_port)], input=script.encode(),
                   capture_output=True, check=True)
    took = wait_refused(B[0], unread, 5, "B serves a token after an entry it never read was trimmed")
    check(flushes(B[1], "trimmed") == trimmed_before + 1, "B's flush after the trim was not counted")
    check(metric(B[1], 'sessiongate_cluster_redis_errors_total{op="read"}') == reads_before,
          "B reconnected (the gap must be noticed on a read, not on a reconnect)")
    print(f"cluster: an entry trimmed before B read it (no stall, no reconnect): B flushed "
          f"(trimmed) {took:.2f} s later")


def replayed_values(provider, redis_port, gateways, start_gateway, procs):
    """14. Someone who can write to Redis saves a token's sealed identity, the token is
    revoked and purged (by token, then by subject), and the saved value is written back.
    Neither a replica that never cached the token (C) nor one started after the purge (E)
    may serve it: each asks the provider, which refuses; the refusal is counted."""
    A, C = gateways["A"], gateways["C"]
    purged = lambda admin: metric(admin, 'sessiongate_cluster_shared_cache_lookups_total{result="purged"}')
    for kind in ("token", "subject"):
        token = f"tok-replay-{kind}"
        before = l2_keys(redis_port)
        check(request(A[0], "GET", "/x", token)[0] == 200, f"{token} on A")
        deadline = time.time() + 5
        while not (l2_keys(redis_port) - before):
            check(time.time() < deadline, f"A never shared {token}")
            time.sleep(0.02)
        key = (l2_keys(redis_port) - before).pop()
        saved = f"e2e:saved:{kind}"
        redis_cli(redis_port, "COPY", key, saved, "REPLACE")
        with provider.lock:
            provider.revoked.add(token)
        name = {"token": token, "subject": f"user-replay-{kind}"}[kind]
        check(purge(A[1], {kind: name})["fan_out"] == "published", f"purge by {kind}")
        check(int(redis_cli(redis_port, "EXISTS", key)) == 0, f"the purge by {kind} left the value")
        redis_cli(redis_port, "COPY", saved, key, "REPLACE")
        calls, counted = provider.calls.get(token, 0), purged(C[1])
        status = request(C[0], "GET", "/x", token)[0]
        check(status == 401, f"C answered {status} for a token purged by {kind} whose sealed "
                             f"value was written back to Redis")
        check(provider.calls.get(token, 0) == calls + 1, "C did not ask the provider")
        check(purged(C[1]) == counted + 1, "C's refusal of the written-back value was not counted")
        # C shared the provider's refusal, replacing the value: write it back again for E.
        redis_cli(redis_port, "COPY", saved, key, "REPLACE")
    E = start_gateway("E", redis_port)
    wait_connected(E[1], "gateway E")
    # E trusts the shared cache (a token nobody purged is an L2 hit) ...
    calls = provider.calls.get("tok-restart")
    check(request(E[0], "GET", "/x", "tok-restart")[0] == 200, "tok-restart on E")
    check(provider.calls.get("tok-restart") == calls, "E called the provider for a token in L2")
    # ... but not a value sealed before a purge it read back from the stream.
    for kind in ("token", "subject"):
        token = f"tok-replay-{kind}"
        calls = provider.calls.get(token, 0)
        status = request(E[0], "GET", "/x", token)[0]
        check(status == 401, f"E (started after the purge by {kind}) answered {status} for "
                             f"a written-back sealed value")
        check(provider.calls.get(token, 0) == calls + 1, "E did not ask the provider")
    check(purged(E[1]) == 2, f"E counted {purged(E[1])} written-back values, expected 2")
    stop_gateway(procs, "E")
    del gateways["E"]
    print("cluster: sealed values written back to Redis after a purge (by token, by subject) "
          "are not served: C (never cached them) and E (started after the purge) asked the "
          "provider and refused")


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          check=True).stdout


def l2_keys(port, kind="v"):
    return set(redis_cli(port, "--scan", "--pattern", f"e2e:identities:{kind}:*").decode().split())


def shared_cache_checks(provider, gateways, redis_port, start_gateway, procs, work):
    A, B, C = (gateways[n] for n in "ABC")
    # 5. 3 x 64 concurrent requests for one new token -> one provider call.
    provider.delay = 0.05
    answered = lambda: sum(metric(admin, 'sessiongate_cluster_claim_waits_total{outcome="answered"}')
                           for _, admin in (A, B, C))
    waits_before = answered()
    for token, want in (("tok-herd", 200), ("bad-herd", 401)):
        barrier = threading.Barrier(192)
        results = []

        def one(port):
            barrier.wait()
            results.append(request(port, "GET", "/x", token, timeout=10)[0])

        threads = [threading.Thread(target=one, args=(port,))
                   for port, _ in (A, B, C) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(results.count(want) == 192,
              f"{token}: answers {sorted(set(results))}, expected all {want}")
        calls = provider.calls.get(token, 0)
        if calls != 1:
            for name, (_, admin) in (("A", A), ("B", B), ("C", C)):
                _, body = request(admin, "GET", "/metrics")
                print(name, [l for l in body.decode().splitlines()
                             if ("shared_cache_lookups" in l or "claim_waits" in l or "cache_lookups_total" in l) and not l.startswith("#") and not l.endswith(" 0")])
        check(calls == 1, f"{token}: {calls} provider calls for 3 x 64 concurrent requests, expected 1")
    provider.delay = 0.0
    waits = answered() - waits_before
    print(f"cluster: 3 x 64 concurrent requests for a new token: 1 provider call "
          f"({waits:.0f} waits for another replica's call answered); for a refused token: 1 call")

    # 6. nothing in clear; TTLs within min(ttl, expiry).
    before = l2_keys(redis_port)
    check(request(A[0], "GET", "/x", "tok-exp30-short")[0] == 200, "short-lived token")
    time.sleep(0.2)
    new = l2_keys(redis_port) - before
    check(len(new) == 1, f"one L2 value for a new token, found {len(new)}")
    short_key = new.pop()
    short_ttl = int(redis_cli(redis_port, "PTTL", short_key))
    check(0 < short_ttl <= 30_000, f"L2 TTL {short_ttl} ms for an identity expiring in 30 s")
    longest = 0
    for key in l2_keys(redis_port):
        pttl = int(redis_cli(redis_port, "PTTL", key))
        if pttl == -2:
            continue  # expired since the scan (a refusal is kept 5 s)
        longest = max(longest, pttl)
        check(0 < pttl <= 600_000, f"L2 value {key} has PTTL {pttl} (cache.ttl is 600 s)")
        value = redis_cli(redis_port, "GET", key)
        for clear in (b"user-", b"sess-", b"tok-", b"wallet_view_all", b"bitgo"):
            check(clear not in value, f"L2 value holds {clear!r} in clear")
    names = redis_cli(redis_port, "--scan", "--pattern", "e2e:identities:*").decode()
    check("tok-" not in names and "user-" not in names and "sess-" not in names,
          "an L2 key name holds a token, subject or session id")
    print(f"cluster: L2 values sealed (no token, subject, session or scope in clear); "
          f"longest PTTL {longest} ms <= 600 s; {short_ttl} ms for an identity expiring in 30 s")

    # Purges reach Redis: by subject, the value and the subject's key set are gone.
    status, body = request(A[1], "POST", "/admin/purge", body={"subject": "user-exp30-short"},
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    check(status == 200, f"purge by subject: {status} {body!r}")
    check(int(redis_cli(redis_port, "EXISTS", short_key)) == 0,
          "a purge by subject left the identity's L2 value in Redis")
    print("cluster: a purge by subject removed the identity's L2 value")

    # 7. tampering: flip one byte of the ciphertext.
    before = l2_keys(redis_port)
    check(request(A[0], "GET", "/x", "tok-tamper")[0] == 200, "tamper token on A")
    time.sleep(0.2)
    key = (l2_keys(redis_port) - before).pop()
    raw = redis_cli(redis_port, "GET", key)[:-1]  # redis-cli adds a newline
    pos = len(raw) // 2
    redis_cli(redis_port, "SETRANGE", key, str(pos), chr(raw[pos] ^ 1) if raw[pos] < 128 and raw[pos] ^ 1 not in (0, 10) else "A")
    check(redis_cli(redis_port, "GET", key)[:-1] != raw, "the test failed to change the stored value")
    unreadable = metric(B[1], 'sessiongate_cluster_shared_cache_lookups_total{result="unreadable"}')
    check(request(B[0], "GET", "/x", "tok-tamper")[0] == 200, "tamper token on B")
    check(provider.calls.get("tok-tamper") == 2,
          "a tampered L2 value was used instead of asking the provider")
    check(metric(B[1], 'sessiongate_cluster_shared_cache_lookups_total{result="unreadable"}')
          == unreadable + 1, "the tampered value was not counted")
    time.sleep(0.2)
    check(request(C[0], "GET", "/x", "tok-tamper")[0] == 200, "tamper token on C")
    check(provider.calls.get("tok-tamper") == 2, "B's answer did not replace the tampered value")
    print("cluster: a tampered L2 value is refused (counted unreadable), the provider asked, "
          "the value replaced")

    # 8. C restarted: its first request for a known token is an L2 hit.
    written = metric(C[1], 'sessiongate_cluster_shared_cache_writes_total{result="ok"}')
    check(request(C[0], "GET", "/x", "tok-restart")[0] == 200, "restart token on C")
    calls = provider.calls.get("tok-restart")
    # The write to Redis happens after the answer, in the background: let it land.
    deadline = time.time() + 5
    while metric(C[1], 'sessiongate_cluster_shared_cache_writes_total{result="ok"}') <= written:
        check(time.time() < deadline, "C never shared the restart token")
        time.sleep(0.02)
    stop_gateway(procs, "C")
    C = start_gateway("C", redis_port)
    wait_connected(C[1], "gateway C (restarted)")
    check(request(C[0], "GET", "/x", "tok-restart")[0] == 200, "restart token on restarted C")
    check(provider.calls.get("tok-restart") == calls,
          "restarted C called the provider for a token in L2")
    print("cluster: C restarted: its first request for a known token made 0 provider calls (L2 hit)")

    # 9. cost: provider miss (A), L2 hit (B), L1 hit (B again); Redis bytes per identity.
    lat = {"miss": [], "l2": [], "l1": []}
    before, names_before = l2_keys(redis_port), l2_keys(redis_port, "n")
    for i in range(200):
        token = f"tok-cost-{i}"
        for what, port in (("miss", A[0]), ("l2", B[0]), ("l1", B[0])):
            t0 = time.perf_counter()
            status, _ = request(port, "GET", f"/cost-{what}", token)
            lat[what].append((time.perf_counter() - t0) * 1000)
            check(status == 200, f"{token} ({what}): {status}")
        check(provider.calls.get(token) == 1, f"{token}: {provider.calls.get(token)} provider calls")
    time.sleep(0.2)
    values = l2_keys(redis_port) - before
    names = l2_keys(redis_port, "n") - names_before
    usage = lambda keys: sum(int(redis_cli(redis_port, "MEMORY", "USAGE", k)) for k in keys)
    per_identity = usage(values | names) / max(1, len(values))
    value_only = usage(values) / max(1, len(values))
    out = {f"{k}_p50_ms": statistics.median(v) for k, v in lat.items()}
    # The gateway's own measure: auth_ms in the access log (token, cache, provider or
    # Redis, decision), without the client's overhead.
    auth = {"miss": [], "l2": [], "l1": []}
    expect = {"miss": "miss", "l2": "shared", "l1": "hit"}
    for name in ("A", "B"):
        for line in open(f"{work}/{name}.log"):
            if '"path":"/cost-' not in line:
                continue
            entry = json.loads(line)
            fields = entry.get("fields", entry)
            what = fields["path"][len("/cost-"):]
            check(fields.get("cache") == expect[what],
                  f"/cost-{what} answered with cache={fields.get('cache')}, expected {expect[what]}")
            auth[what].append(float(fields["auth_ms"]))
    for k, v in auth.items():
        check(len(v) == 200, f"{len(v)} access lines for /cost-{k}")
        out[f"{k}_auth_p50_ms"] = statistics.median(v)
    out.update({"redis_bytes_per_identity": per_identity, "redis_value_bytes": value_only})
    print(f"cluster: request latency p50 over 200 tokens (Python client, one connection per request): "
          f"provider miss {out['miss_p50_ms']:.2f} ms, L2 hit {out['l2_p50_ms']:.2f} ms, "
          f"L1 hit {out['l1_p50_ms']:.2f} ms")
    print(f"cluster: auth time p50 (access log auth_ms): provider miss {out['miss_auth_p50_ms']:.3f} ms, "
          f"L2 hit {out['l2_auth_p50_ms']:.3f} ms, L1 hit {out['l1_auth_p50_ms']:.3f} ms")
    print(f"cluster: Redis bytes per identity {per_identity:.0f} (value {value_only:.0f}, "
          f"the rest its subject and session sets; {len(values)} values, {len(names)} sets)")
    gateways["C"] = C
    return out


def redis_slow_and_full(redis, redis_port, A, C):
    """10. Redis hung (SIGSTOP) and Redis full (maxmemory reached, noeviction): new tokens
    are still served from the provider, without waiting longer than the shared cache's
    timeout for each of the breaker's first failures; the breaker opens, and closes
    again once Redis answers."""
    redis.send_signal(signal.SIGSTOP)
    try:
        slowest = 0.0
        for i in range(10):
            t0 = time.monotonic()
            status, _ = request(A[0], "GET", "/x", f"tok-hung-{i}")
            slowest = max(slowest, time.monotonic() - t0)
            check(status == 200, f"a new token on A while Redis is hung: {status}")
        # timeout: 250ms here; three failures open the breaker, the rest skip Redis.
        check(slowest < 1.0, f"a new token took {slowest * 1000:.0f} ms while Redis was hung")
        check(metric(A[1], "sessiongate_cluster_redis_breaker_open") == 1,
              "the breaker did not open while Redis was hung")
    finally:
        redis.send_signal(signal.SIGCONT)
    print(f"cluster: Redis hung (SIGSTOP): 10 new tokens served (slowest {slowest * 1000:.0f} ms), "
          f"breaker open")
    deadline = time.time() + 15
    i = 0
    while metric(A[1], "sessiongate_cluster_redis_breaker_open") != 0:
        check(time.time() < deadline, "the breaker never closed after Redis answered again")
        request(A[0], "GET", "/x", f"tok-after-hang-{i}")
        i += 1
        time.sleep(0.2)
    print("cluster: ... the breaker closed once Redis answered again")

    errors = lambda: metric(C[1], "sessiongate_cluster_redis_errors_total")
    before = errors()
    redis_cli(redis_port, "CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_cli(redis_port, "CONFIG", "SET", "maxmemory", "1")
    try:
        for i in range(10):
            status, _ = request(C[0], "GET", "/x", f"tok-full-{i}")
            check(status == 200, f"a new token on C while Redis is full: {status}")
        check(errors() > before, "Redis refused writes, but C counted no error")
    finally:
        redis_cli(redis_port, "CONFIG", "SET", "maxmemory", "0")
    print(f"cluster: Redis full (maxmemory, noeviction): 10 new tokens served on C; "
          f"{errors() - before:.0f} Redis errors counted")


def wait_connected(admin, what):
    """Waits until a gateway is ready and reads the revocation stream."""
    wait_http(admin, "/readyz", what)
    deadline = time.time() + 10
    while metric(admin, "sessiongate_cluster_redis_up") != 1:
        check(time.time() < deadline, f"{what} never connected to Redis")
        time.sleep(0.05)


def stop_gateway(procs, name):
    """Stops gateway `name` at once (SIGINT: SIGTERM would drain for the grace period)."""
    for p in procs:
        if p.args[-1].endswith(f"/{name}.yaml") and p.poll() is None:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)


def wait_port(port, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"{what} did not listen on {port}")


def wait_http(port, path, what):
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if request(port, "GET", path, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise Failure(f"{what} did not answer {path}")


if __name__ == "__main__":
    sys.exit(main())
