#!/usr/bin/env python3
"""HTTP/2 clients that stop reading, against the real gateway, with the `h2` library.

Started here on free 127.0.0.1 ports: an HTTP/1.1 upstream answering every GET with
1 MiB, and the gateway (h2c, `body_idle_timeout: 4s`, `http2_max_concurrent_streams:
100`). Each stalled client sets SETTINGS_INITIAL_WINDOW_SIZE=0, opens 100 streams for
1 MiB answers and never grants a byte of window, while it keeps answering PINGs and
SETTINGS (a live peer, not a dead one). Checked (each failure names itself; exit 1):
1. while they stall, other clients are served (HTTP/1.1 and a fresh HTTP/2 connection);
2. the gateway's memory growth per stalled connection stays under the documented
   bound (docs/operations.md, "Connection lifecycle", HTTP/2 bounds: 100 streams x 0.75 MiB), measured from /proc;
3. every stalled stream is reset within body_idle_timeout (+ slack), counted as
   sessiongate_connections_closed_total{reason="send_timeout"}, and the upstream
   connections they held are closed (the gateway's open file descriptors go back down);
4. the stream limit reaches the client: the gateway's SETTINGS advertise 100;
5. 2 connections x 50 streams that announce a body and never send it (Pingora reads
   HTTP/2 request bodies with no timeout of its own): reset after body_idle_timeout,
   counted body_timeout, their upstream connections released.

Usage: tests/e2e/http2_stall.py --bin target/debug/sessiongate [--connections 4]
"""

import argparse
import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from e2e_util import Failure, check, free_port, rss_kib, stop

BODY = os.urandom(1 << 20)
STREAMS = 100
BODY_IDLE = 4.0
# docs/operations.md, "Connection lifecycle": what one stalled connection may pin until its streams are reset.
BOUND_PER_CONNECTION = STREAMS * 0.75 * (1 << 20)


class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # The gateway closing an upstream connection of a reset stream: expected.
        pass


class Big(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        try:
            self.wfile.write(BODY)
        except OSError:
            pass


class Stalled:
    """One HTTP/2 connection that never grants flow-control window but stays alive."""

    def __init__(self, port, streams, method="GET"):
        self.sock = socket.create_connection(("127.0.0.1", port))
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0,
                                         h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.lock = threading.Lock()
        self.reset, self.ended, self.headers, self.refused = set(), set(), set(), set()
        self.closed = False
        self.ids = []
        for i in range(streams):
            sid = self.conn.get_next_available_stream_id()
            headers = [(":method", method), (":scheme", "http"), (":authority", "gw.test"),
                       (":path", f"/big/{i}")]
            if method == "POST":
                # A body announced and never sent.
                headers.append(("content-length", "100"))
            self.conn.send_headers(sid, headers, end_stream=method != "POST")
            self.ids.append(sid)
        self.sock.sendall(self.conn.data_to_send())
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            with self.lock:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    # Frames after the connection ended (the gateway closed it).
                    self.closed = True
                    return
                for ev in events:
                    if isinstance(ev, h2.events.StreamReset):
                        (self.refused if ev.error_code == 7 else self.reset).add(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.ended.add(ev.stream_id)
                    elif isinstance(ev, h2.events.ResponseReceived):
                        self.headers.add(ev.stream_id)
                # PING and SETTINGS acknowledgements; never a WINDOW_UPDATE.
                out = self.conn.data_to_send()
                if out:
                    try:
                        self.sock.sendall(out)
                    except OSError:
                        pass

    def finished(self):
        with self.lock:
            return len(self.reset | self.ended | self.refused)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(admin, name):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    c.request("GET", "/metrics")
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def expect_reset(conns, total, what, started, admin, reason, counted_before, pid, fds_before):
    """Waits until the gateway has ended all `total` streams of `conns` — not before
    body_idle_timeout, within it plus slack — checks that each was counted under `reason`
    and that the upstream connections they held are closed; returns the seconds taken."""
    while sum(c.finished() for c in conns) < total:
        check(time.monotonic() - started < BODY_IDLE + 10,
              f"{total - sum(c.finished() for c in conns)} {what} still open "
              f"{time.monotonic() - started:.1f} s in (body_idle_timeout {BODY_IDLE:g} s)")
        time.sleep(0.1)
    took = time.monotonic() - started
    check(took >= BODY_IDLE - 0.5, f"{what} reset after {took:.1f} s, before body_idle_timeout")
    name = f'sessiongate_connections_closed_total{{reason="{reason}"}}'
    counted = metric(admin, name) - counted_before
    check(counted == total, f"{counted:.0f} {reason} counted for {total} {what}")
    t0 = time.monotonic()
    while fds(pid) > fds_before + 2 * len(conns):
        check(time.monotonic() - t0 < 5,
              f"{fds(pid) - fds_before} more file descriptors than before, after the reset of {what}")
        time.sleep(0.1)
    return took


def http1_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    return r.status, len(body)


def h2_get(port, path):
    """A fresh HTTP/2 connection that reads normally: status and body length."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "gw.test"),
                            (":path", path)], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, size = None, 0
    while True:
        data = sock.recv(65536)
        if not data:
            break
        done = False
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers).get(b":status")
            elif isinstance(ev, h2.events.DataReceived):
                size += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        sock.sendall(conn.data_to_send())
        if done:
            break
    sock.close()
    return int(status or 0), size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/sessiongate")
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-h2stall-")
    upstream = Upstream(("127.0.0.1", 0), Big)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    cfg = f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
h2c: true
shutdown_grace_period: 0s
connections: {{ body_idle_timeout: {BODY_IDLE:g}s, http2_max_concurrent_streams: {STREAMS} }}
upstreams:
  big: http://127.0.0.1:{upstream.server_address[1]}
routes:
  - {{ path_prefix: /, auth: none, upstream: big }}
log: {{ level: warn }}
"""
    with open(f"{work}/sg.yaml", "w") as f:
        f.write(cfg)
    gw = subprocess.Popen([args.bin, "--config", f"{work}/sg.yaml"],
                          stdout=open(f"{work}/sg.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while True:
            try:
                if http1_get(admin, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            check(time.time() < deadline, "the gateway did not become ready")
            time.sleep(0.05)
        # Warm up both protocols so the baseline holds what any gateway holds.
        for _ in range(3):
            check(http1_get(port, "/big/warm") == (200, len(BODY)), "HTTP/1.1 warm-up")
            check(h2_get(port, "/big/warm") == (200, len(BODY)), "HTTP/2 warm-up")
        time.sleep(0.5)
        rss0, fds0 = rss_kib(gw.pid) * 1024, fds(gw.pid)
        sent_before = metric(admin, 'sessiongate_connections_closed_total{reason="send_timeout"}')

        started = time.monotonic()
        stalled = [Stalled(port, STREAMS) for _ in range(args.connections)]
        # Let every stream reach its upstream and fill what it can.
        t_end = time.monotonic() + 2.5
        while time.monotonic() < t_end:
            time.sleep(0.1)
        grown = rss_kib(gw.pid) * 1024 - rss0
        per = grown / args.connections
        held = fds(gw.pid) - fds0
        got_headers = sum(len(s.headers) for s in stalled)
        print(f"http2 stall: {args.connections} connections x {STREAMS} streams, window 0: "
              f"{got_headers} response heads sent; RSS +{grown / 2**20:.1f} MiB "
              f"({per / 2**20:.2f} MiB per connection; bound {BOUND_PER_CONNECTION / 2**20:.0f}); "
              f"+{held} file descriptors")
        check(per <= BOUND_PER_CONNECTION,
              f"{per / 2**20:.1f} MiB per stalled connection, over the documented "
              f"{BOUND_PER_CONNECTION / 2**20:.0f} MiB")

        # 1. others are served meanwhile
        t0 = time.monotonic()
        check(http1_get(port, "/big/other") == (200, len(BODY)), "HTTP/1.1 during the stall")
        check(h2_get(port, "/big/other") == (200, len(BODY)), "HTTP/2 during the stall")
        print(f"http2 stall: other clients served meanwhile (HTTP/1.1 and HTTP/2, 1 MiB each, "
              f"{(time.monotonic() - t0) * 1000:.0f} ms)")

        # 4. the stream limit is HTTP/2's own: advertised in the gateway's SETTINGS (the
        # client library then refuses a 101st stream itself).
        advertised = stalled[0].conn.remote_settings.max_concurrent_streams
        check(advertised == STREAMS, f"the gateway advertised {advertised} concurrent streams")

        # 3. reset after body_idle_timeout, counted, upstream connections released
        total = args.connections * STREAMS
        took = expect_reset(stalled, total, "stalled streams", started, admin, "send_timeout",
                            sent_before, gw.pid, fds0)
        print(f"http2 stall: all {total} stalled streams reset {took:.1f} s in "
              f"(body_idle_timeout {BODY_IDLE:g} s), counted send_timeout; file descriptors back "
              f"to +{fds(gw.pid) - fds0}; RSS now +{(rss_kib(gw.pid) * 1024 - rss0) / 2**20:.1f} MiB")

        # 5. bodies that never come: Pingora reads HTTP/2 request bodies with no timeout
        bodies_before = metric(admin, 'sessiongate_connections_closed_total{reason="body_timeout"}')
        fds1 = fds(gw.pid)
        started = time.monotonic()
        silent = [Stalled(port, 50, method="POST") for _ in range(2)]
        time.sleep(1)
        held = fds(gw.pid) - fds1
        took = expect_reset(silent, 100, "streams whose body never came", started, admin,
                            "body_timeout", bodies_before, gw.pid, fds1)
        print(f"http2 stall: 2 connections x 50 streams that never send their body (+{held} file "
              f"descriptors while held): all reset {took:.1f} s in, counted body_timeout, "
              f"released")
        print("http2 stall: ok")
        return 0
    except Failure as e:
        print(f"http2 stall: FAILED: {e}", file=sys.stderr)
        print(open(f"{work}/sg.log").read()[-3000:], file=sys.stderr)
        return 1
    finally:
        stop(gw)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
