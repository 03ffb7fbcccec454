#!/usr/bin/env python3
"""Cluster-wide rate limits (issue #37): three gateway processes count together in a real
redis-server, and keep limiting when Redis is killed or hung.

Started here, each on a free 127.0.0.1 port: redis-server (no persistence: a restart comes
back empty), a static upstream, and gateways A, B and C with the same `cluster:` section and
one policy, `per-user: 100/s, burst 10`, keyed by subject. Ten identities each send 130
requests a second, spread evenly over the three gateways (one keep-alive connection per
identity and gateway, paced by a schedule).

Checked (each failure names itself; exit 1):
1. accuracy, 30 s with Redis up: each identity's admitted requests are within ±5 % of
   100/s × the time it sent + its burst; every answer is 200 or 429; every gateway sees
   the three replicas (`sessiongate_cluster_rate_limit_replicas` 3);
2. Redis holds, under the limits' prefix, only the policy's counters (named by hashes, no
   subject in clear) and the replica set, and a counter is gone once its key is back to a
   full burst;
3. faults, 30 s: Redis hung (SIGSTOP) for 5 s, then killed and restarted empty 5 s later:
   no 5xx and no failed connection; the gateways count locally at a third of the rate
   meanwhile (`sessiongate_cluster_rate_limit_checks_total{counted="fallback"}` grows,
   `/readyz` says so) and count in Redis again within 5 s of its return; each identity's
   admitted requests over the whole run stay within ±10 % of the limit (the fallback's
   shares add up to the rate; each replica's share starts with a burst of its own);
4. the admin reset of one identity's count reaches Redis: that identity has a full burst
   again on every gateway.

Prints one JSON line of figures (per-phase admitted rates, fallback counts).

Usage: tests/e2e/cluster_limits.py [--bin target/release/sessiongate] [--seconds 30]
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from e2e_util import Failure, check, free_port, print_tails, stop, wait_ready
from cluster import Upstream, UpstreamHandler, metric, redis_cli, request, wait_port

RATE, BURST, OFFERED = 100, 10, 130
IDENTITIES = 10
ADMIN_TOKEN = "cluster-limits-admin-token-0123456789"


def token(i):
    return f"cluster-limits-token-{i:02d}-0123456789abcdef"


async def sender(port, tok, rate, start, until, out):
    """Sends GET /x with `tok` on one keep-alive connection at `rate` a second from
    `start` (monotonic) until `until`; appends (time, status) to `out`, status 0 for a
    failed exchange (then reconnects)."""
    interval = 1.0 / rate
    k = 0
    reader = writer = None
    request_bytes = (f"GET /x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {tok}\r\n\r\n").encode()
    while True:
        at = start + k * interval
        if at >= until:
            break
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        k += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            out.append((at, status))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
            out.append((at, 0))
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(ports, seconds, events=()):
    """Every identity through every gateway for `seconds`; `events` are (offset, fn) run
    from a thread at those offsets. Returns {identity: [(t, status)]} and the start."""
    results = {i: [] for i in range(IDENTITIES)}
    start = time.monotonic() + 0.2

    def fire():
        for offset, fn in events:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            fn()

    t = threading.Thread(target=fire, daemon=True)
    t.start()

    async def main():
        tasks = []
        for i in range(IDENTITIES):
            for j, port in enumerate(ports):
                # Each connection's schedule starts a third of an interval after the last,
                # so an identity's requests reach the gateways in turn.
                offset = j / (OFFERED * len(ports))
                tasks.append(sender(port, token(i), OFFERED / len(ports), start + offset,
                                    start + seconds, results[i]))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    t.join()
    return results, start


def counted(gateways, where):
    """Requests the gateways counted `where` (redis, fallback), all three together."""
    return sum(metric(admin, f'sessiongate_cluster_rate_limit_checks_total{{counted="{where}"}}')
               for _, admin in gateways)


def admitted_rate(samples, lo=None, hi=None):
    """(admitted, seconds spanned) of the samples in [lo, hi)."""
    chosen = [(t, s) for t, s in samples if (lo is None or t >= lo) and (hi is None or t < hi)]
    if not chosen:
        return 0, 0.0
    times = [t for t, _ in chosen]
    return sum(1 for _, s in chosen if s == 200), max(times) - min(times)


def within_limit(results, tolerance, what):
    """Checks each identity's admitted requests against RATE × the time it sent + BURST;
    returns the admitted rates."""
    rates = []
    for i, samples in results.items():
        admitted, span = admitted_rate(samples)
        expected = RATE * span + BURST
        rates.append(round(admitted / span, 1))
        check(abs(admitted - expected) <= tolerance * expected,
              f"identity {i} {what}: {admitted} admitted in {span:.1f} s, expected "
              f"{expected:.0f} ±{tolerance:.0%}")
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SESSIONGATE_BIN", "target/release/sessiongate"))
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-cluster-limits-")
    procs = []
    report = {}

    def spawn(cmd, log):
        p = subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    redis_port = free_port()
    redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"]
    try:
        redis = spawn(redis_cmd, f"{work}/redis.log")
        wait_port(redis_port, "redis-server")
        upstream = Upstream(("127.0.0.1", 0), UpstreamHandler)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        with open(f"{work}/cluster-secret", "w") as f:
            f.write("an-e2e-cluster-secret-for-rate-limits-0123")
        with open(f"{work}/admin-token", "w") as f:
            f.write(ADMIN_TOKEN)
        tokens = "\n".join(
            f"      - {{ token_sha256: {hashlib.sha256(token(i).encode()).hexdigest()}, identity: {{ subject: user-{i} }} }}"
            for i in range(IDENTITIES))
        gateways = []
        for name in "ABC":
            port, admin = free_port(), free_port()
            path = f"{work}/{name}.yaml"
            with open(path, "w") as f:
                f.write(f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
threads: 1
shutdown_grace_period: 0s
pid_file: {work}/{name}.pid
upgrade_sock: {work}/{name}.sock
providers:
  s:
    kind: static
    tokens:
{tokens}
upstreams:
  app: http://127.0.0.1:{upstream.server_address[1]}
rate_limits:
  per-user: {{ rate: {RATE}/s, burst: {BURST} }}
routes:
  - {{ name: api, path_prefix: /, provider: s, upstream: app, rate_limits: [per-user] }}
admin:
  token_file: {work}/admin-token
cluster:
  redis:
    url: redis://127.0.0.1:{redis_port}/0
  key_secret_file: {work}/cluster-secret
  rate_limits:
    key_prefix: e2e:rl
log: {{ level: warn, format: json }}
""")
            proc = spawn([args.bin, "--config", path], f"{work}/{name}.log")
            wait_ready(admin, proc)
            gateways.append((port, admin))
        ports = [p for p, _ in gateways]
        # The replicas find each other at their first heartbeat.
        deadline = time.time() + 10
        while time.time() < deadline and any(
                metric(a, "sessiongate_cluster_rate_limit_replicas") != 3 for _, a in gateways):
            time.sleep(0.2)
        for name, (_, admin) in zip("ABC", gateways):
            check(metric(admin, "sessiongate_cluster_rate_limit_replicas") == 3,
                  f"gateway {name} does not see three replicas")

        # --- 1. accuracy with Redis up ---
        results, _ = run_load(ports, args.seconds)
        statuses = {s for samples in results.values() for _, s in samples}
        check(statuses <= {200, 429}, f"answers other than 200 and 429: {sorted(statuses)}")
        report["clean_admitted_per_s"] = within_limit(results, 0.05, "with Redis up")
        fallback_before = counted(gateways, "fallback")
        report["clean_fallback_checks"] = fallback_before
        check(fallback_before <= 3,
              f"{fallback_before} requests counted locally while Redis was up (only before the first connection)")

        # --- 2. what Redis holds ---
        keys = [k.decode() for k in redis_cli(redis_port, "--scan", "--pattern", "e2e:rl:*").split()]
        check("e2e:rl:replicas" in keys, f"no replica set in Redis: {keys[:5]}")
        counters = [k for k in keys if k != "e2e:rl:replicas"]
        check(len(counters) == IDENTITIES or len(counters) == 0,
              f"{len(counters)} counters for {IDENTITIES} identities: {counters[:12]}")
        for k in keys:
            check("user-" not in k and "token" not in k, f"a key names its identity: {k}")
            if k != "e2e:rl:replicas":
                parts = k.split(":")
                check(len(parts) == 5 and parts[2] == "per-user" and len(parts[4]) == 16,
                      f"unexpected key shape {k}")
        # A counter lives until its key is back to a full burst: at most 100 ms here.
        time.sleep(0.3)
        left = redis_cli(redis_port, "--scan", "--pattern", "e2e:rl:per-user:*").split()
        check(not left, f"counters outlive a full burst: {left[:3]}")

        # --- 3. faults ---
        def hang():
            redis.send_signal(signal.SIGSTOP)

        def resume():
            redis.send_signal(signal.SIGCONT)

        def kill():
            redis.kill()
            redis.wait()

        restarted = {}

        def restart():
            restarted["proc"] = spawn(redis_cmd, f"{work}/redis.log")
            restarted["at"] = time.monotonic()

        seconds = args.seconds
        marks = {}

        def mark(name):
            def f():
                marks[name] = {
                    "fallback": counted(gateways, "fallback"),
                    "redis": counted(gateways, "redis"),
                    "readyz": urllib.request.urlopen(f"http://127.0.0.1:{gateways[0][1]}/readyz",
                                                     timeout=2).read().decode(),
                }
            return f

        events = [
            (0.25 * seconds, hang), (0.25 * seconds + 5, mark("hung")), (0.25 * seconds + 5, resume),
            (0.25 * seconds + 10, kill), (0.25 * seconds + 14.5, mark("killed")),
            (0.25 * seconds + 15, restart), (0.25 * seconds + 20, mark("back")),
            (seconds - 0.5, mark("end")),
        ]
        fallback_start = counted(gateways, "fallback")
        results, start = run_load(ports, seconds, events)
        statuses = {}
        for samples in results.values():
            for _, s in samples:
                statuses[s] = statuses.get(s, 0) + 1
        check(set(statuses) <= {200, 429}, f"answers during Redis faults: {statuses}")
        check(marks["hung"]["fallback"] > fallback_start, "no request counted locally while Redis hung")
        check(marks["killed"]["fallback"] > marks["hung"]["fallback"],
              "no request counted locally while Redis was down")
        check("counted locally at 1/3" in marks["killed"]["readyz"],
              f"/readyz while Redis is down: {marks['killed']['readyz']!r}")
        check(marks["end"]["redis"] > marks["back"]["redis"] > marks["killed"]["redis"],
              f"not counting in Redis again after its return: {marks}")
        # Redis came back empty: each replica registers again at its next heartbeat (every
        # 5 s) and learns how many others did at the one after — within two heartbeats.
        deadline, readyz = restarted["at"] + 2 * 5 + 2, marks["end"]["readyz"]
        while "cluster-wide (3 replicas" not in readyz and time.monotonic() < deadline:
            time.sleep(0.25)
            readyz = urllib.request.urlopen(f"http://127.0.0.1:{gateways[0][1]}/readyz",
                                            timeout=2).read().decode()
        check("cluster-wide (3 replicas" in readyz,
              f"/readyz two heartbeats after Redis returned: {readyz!r}")
        report["replicas_known_again_s"] = round(time.monotonic() - restarted["at"], 1)
        report["faults_admitted_per_s"] = within_limit(results, 0.10, "through faults")
        report["faults_statuses"] = statuses
        # Admitted per second while Redis was down (counted locally at a third each).
        down = [admitted_rate(s, start + 0.25 * seconds + 10.5, start + 0.25 * seconds + 14.5)
                for s in results.values()]
        report["down_admitted_per_s"] = [round(a / max(sp, 0.001), 1) for a, sp in down]
        report["fallback_checks"] = marks["end"]["fallback"] - fallback_start

        # --- 4. reset reaches every replica ---
        for _ in range(BURST + 5):
            request(ports[0], "GET", "/x", token(0))
        status, body = request(gateways[1][1], "POST", "/admin/rate_limits/reset",
                               body={"policy": "per-user", "key": "user-0"},
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        check(status == 200, f"reset: {status} {body!r}")
        admitted = sum(request(ports[k % 3], "GET", "/x", token(0))[0] == 200 for k in range(BURST))
        check(admitted == BURST, f"after a reset on B, {admitted} of a burst of {BURST} admitted across A, B, C")

        print(json.dumps(report))
        print("cluster rate limits: all checks passed")
        return 0
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print_tails(work, ("A.log", "B.log", "C.log", "redis.log"), 15)
        return 1
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGCONT)
            except OSError:
                pass
            stop(p)


if __name__ == "__main__":
    sys.exit(main())
