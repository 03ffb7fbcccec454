"""Helpers shared by the Python end-to-end scripts (cluster.py, cluster_limits.py, decision.py, websocket.py,
grpc_calls.py, http2_stall.py, conn_memory.py, traces.py), imported from their own folder."""

import socket
import subprocess
import sys
import time
import urllib.request

_TAKEN = set()


def free_port():
    """A port free a moment ago and not handed out before (two calls in a row can get
    the same port from the kernel)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


class Failure(Exception):
    """A check that did not hold; the scripts print it and exit 1."""


def check(cond, what):
    if not cond:
        raise Failure(what)


def rss_kib(pid):
    """A process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure(f"no VmRSS for process {pid}")


def wait_ready(admin_port, proc, timeout=20):
    """Waits until the gateway's admin listener says /readyz 200; kills it and fails if it
    does not within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1).status == 200:
                return
        except Exception:
            time.sleep(0.05)
    proc.kill()
    raise Failure("the gateway did not become ready")


def stop(proc, timeout=10):
    """Terminates a process started by a script, killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def print_tails(work, files, lines=20):
    """Prints the last `lines` lines of each of `files` (names in `work`) to stderr: what a
    failed script shows of its processes' logs."""
    for name in files:
        try:
            with open(f"{work}/{name}") as f:
                print(f"--- {name} (tail)\n" + "".join(f.readlines()[-lines:]), file=sys.stderr)
        except OSError:
            pass
