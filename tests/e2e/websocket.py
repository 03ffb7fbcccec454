#!/usr/bin/env python3
"""WebSocket through the gateway, with the `websockets` library on both ends.

Started here on free 127.0.0.1 ports: a `websockets` echo server (the upstream; its first
message reports the identity headers it received with the handshake) and the gateway with
a static provider. Checked (each failure names itself; exit 1):
1. a valid token: the upgrade goes through, the upstream saw the token's identity headers
   and not the client's spoofed copy, 1,000 text and binary messages echo in order, and
   a 1 MiB message echoes whole;
2. no token: the handshake is refused with 401 (and a WWW-Authenticate challenge), the
   upstream never sees it;
3. a token without the route's scope: 403;
4. an `Upgrade: h2c` request is not a tunnel (the header is stripped);
5. a tunnel outlives the gateway's idle timeout for requests, and closes cleanly;
6. a tunnel silent both ways for `tunnel_idle_timeout` (4 s here) is closed by the
   gateway; one busy every second is kept until `tunnel_max_duration` (12 s here), then
   closed too;
7. cookie-authenticated upgrades (a browser's): from another origin (`Origin:
   https://evil.example`, with or without `Sec-Fetch-Site: cross-site`) or with no
   origin evidence → 403 `csrf`, the upstream never sees them; from the page's own origin
   or `Sec-Fetch-Site: same-origin` → 101 with the cookie's identity.

Usage: tests/e2e/websocket.py --bin target/debug/sessiongate
"""

import argparse
import asyncio
import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

from e2e_util import Failure, check, free_port
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOKEN = "ws-reader-token-0123456789"
NO_SCOPE = "ws-other-token-0123456789"


async def upstream_handler(ws):
    seen = {k.lower(): v for k, v in ws.request.headers.raw_items() if k.lower().startswith("x-auth-")}
    await ws.send(json.dumps({"path": ws.request.path, "identity": seen}))
    async for message in ws:
        await ws.send(message)


async def run(gateway_port, upstream_hits):
    url = f"ws://127.0.0.1:{gateway_port}/ws/echo"
    # 1. allowed
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}",
                                                "X-Auth-Subject": "spoofed-admin"},
                       max_size=2 ** 21) as ws:
        hello = json.loads(await ws.recv())
        check(hello["identity"].get("x-auth-subject") == "ws-reader",
              f"the upstream saw identity {hello['identity']}, expected subject ws-reader")
        check("spoofed-admin" not in json.dumps(hello), "the client's X-Auth-Subject reached the upstream")
        for i in range(1000):
            msg = f"message {i}" if i % 2 else f"bytes {i}".encode()
            await ws.send(msg)
            echo = await ws.recv()
            check(echo == msg, f"message {i}: sent {msg!r}, got {echo!r}")
        big = os.urandom(1 << 20)
        await ws.send(big)
        check(await ws.recv() == big, "a 1 MiB message did not echo whole")
        # 5. idle longer than the gateway's idle_timeout (2 s here): still open.
        await asyncio.sleep(3)
        await ws.send("after idle")
        check(await ws.recv() == "after idle", "the tunnel did not survive 3 s idle")
    print("websocket: upgrade with a valid token; identity headers at the upstream, spoofed copy "
          "stripped; 1,000 messages and 1 MiB echoed; 3 s idle kept; clean close")

    # 2. no token, 3. wrong scope
    before = upstream_hits()
    for headers, want in (({}, 401), ({"Authorization": f"Bearer {NO_SCOPE}"}, 403)):
        try:
            async with connect(url, additional_headers=headers):
                raise Failure(f"upgrade with {headers or 'no token'} was accepted")
        except InvalidStatus as e:
            status = e.response.status_code
            check(status == want, f"upgrade with {headers or 'no token'}: {status}, expected {want}")
            if want == 401:
                check("Bearer" in (e.response.headers.get("WWW-Authenticate") or ""),
                      "401 without a Bearer challenge")
    check(upstream_hits() == before, "a refused upgrade reached the upstream")
    print("websocket: refused upgrades: no token 401 (Bearer challenge), missing scope 403; "
          "the upstream saw neither")

    # 4. `Upgrade: h2c` is not a way around the checks.
    def h2c():
        # In a thread: the upstream answering it runs on this event loop.
        conn = http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=5)
        conn.request("GET", "/ws/echo", headers={"Authorization": f"Bearer {TOKEN}",
                                                 "Connection": "Upgrade, HTTP2-Settings",
                                                 "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAAQAAP__"})
        r = conn.getresponse()
        r.read()
        return r.status

    status = await asyncio.to_thread(h2c)
    check(status != 101, f"an h2c upgrade was switched: {status}")
    print(f"websocket: Upgrade: h2c is not switched (the upstream, seeing a plain GET, answered {status})")

    # 6. tunnel limits: idle both ways, and the whole lifetime.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(url, additional_headers=auth, ping_interval=None) as ws:
        await ws.recv()
        started = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), timeout=10)
            raise Failure("the idle tunnel sent a message")
        except ConnectionClosed:
            idle = time.monotonic() - started
        except asyncio.TimeoutError:
            raise Failure("an idle tunnel was still open after 10 s (tunnel_idle_timeout 4s)")
        check(3.5 <= idle <= 7, f"the idle tunnel closed after {idle:.1f} s, expected ~4 s")
    async with connect(url, additional_headers=auth, ping_interval=None) as ws:
        await ws.recv()
        started = time.monotonic()
        lived = None
        for i in range(20):
            try:
                await ws.send(f"tick {i}")
                await asyncio.wait_for(ws.recv(), timeout=5)
                await asyncio.sleep(1)
            except ConnectionClosed:
                lived = time.monotonic() - started
                break
        check(lived is not None, "a busy tunnel outlived tunnel_max_duration (12 s)")
        check(10 <= lived <= 15, f"the busy tunnel closed after {lived:.1f} s, expected ~12 s")
    print(f"websocket: a silent tunnel closed after {idle:.1f} s (tunnel_idle_timeout 4s); one "
          f"busy every second kept until {lived:.1f} s (tunnel_max_duration 12s)")

    # 7. cross-site WebSocket hijacking: the browser sends the victim's cookie with a
    # handshake any page opens; only the page's own origin may have the socket.
    cookie_url = f"ws://127.0.0.1:{gateway_port}/console/ws"
    cookie = f"theme=dark; sg_session={TOKEN}"
    before = upstream_hits()
    for extra in ({"Origin": "https://evil.example"},
                  {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                  {"Origin": "null"},
                  {}):
        try:
            async with connect(cookie_url, additional_headers={"Cookie": cookie, **extra},
                               origin=None):
                raise Failure(f"a cookie-authenticated upgrade with {extra or 'no origin'} was accepted")
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body or b""
            check(status == 403 and b'"csrf"' in body,
                  f"cookie upgrade with {extra or 'no origin'}: {status} {body[:200]!r}, expected 403 csrf")
    check(upstream_hits() == before, "a cross-site upgrade reached the upstream")
    own = f"http://127.0.0.1:{gateway_port}"
    for extra in ({"Origin": own}, {"Origin": own, "Sec-Fetch-Site": "same-origin"}):
        async with connect(cookie_url, additional_headers={"Cookie": cookie, **extra},
                           origin=None) as ws:
            hello = json.loads(await ws.recv())
            check(hello["identity"].get("x-auth-subject") == "ws-reader",
                  f"same-origin cookie upgrade: the upstream saw {hello['identity']}")
    print("websocket: cookie-authenticated upgrades: cross-site, 'null' and origin-less -> 403 csrf "
          "(the upstream saw none); same origin -> 101 with the cookie's identity")


async def amain(bin_path, work):
    hits = {"n": 0}

    def count_request(connection, request):
        # Every handshake request that reaches the upstream, accepted or not.
        hits["n"] += 1
        return None

    async with serve(upstream_handler, "127.0.0.1", 0, max_size=2 ** 21,
                     process_request=count_request) as server:
        up_port = list(server.sockets)[0].getsockname()[1]
        port, admin = free_port(), free_port()
        cfg = f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
threads: 1
pid_file: {work}/sg.pid
upgrade_sock: {work}/sg.sock
connections: {{ idle_timeout: 2s, tunnel_idle_timeout: 4s, tunnel_max_duration: 12s }}
providers:
  static:
    kind: static
    tokens:
      - token: ${{WS_TOKEN}}
        identity: {{ subject: ws-reader, scopes: [ws_read] }}
      - token: ${{WS_OTHER_TOKEN}}
        identity: {{ subject: ws-other, scopes: [other] }}
upstreams:
  ws: http://127.0.0.1:{up_port}
routes:
  - {{ name: ws, path_prefix: /ws, provider: static, upstream: ws, require_scopes: {{ all_of: [ws_read] }} }}
  - {{ name: console, path_prefix: /console, provider: static, upstream: ws, token_sources: [{{ cookie: sg_session }}] }}
log: {{ level: warn }}
"""
        with open(f"{work}/sg.yaml", "w") as f:
            f.write(cfg)
        gateway = subprocess.Popen([bin_path, "--config", f"{work}/sg.yaml"],
                                   stdout=open(f"{work}/sg.log", "w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, "WS_TOKEN": TOKEN, "WS_OTHER_TOKEN": NO_SCOPE})
        try:
            deadline = time.time() + 15
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                check(time.time() < deadline, "the gateway did not become ready")
                await asyncio.sleep(0.05)
            await run(port, lambda: hits["n"])
        finally:
            if gateway.poll() is None:
                gateway.terminate()
                try:
                    gateway.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    gateway.kill()


def main():
    # The upstream logs the h2c request it refuses (case 4): expected, not news.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/sessiongate")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-ws-")
    try:
        asyncio.run(amain(args.bin, work))
        print("websocket: ok")
        return 0
    except Failure as e:
        print(f"websocket: FAILED: {e}", file=sys.stderr)
        if os.path.exists(f"{work}/sg.log"):
            print(open(f"{work}/sg.log").read()[-3000:], file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
