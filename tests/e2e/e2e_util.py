"""Helpers shared by the Python end-to-end scripts (cluster.py, websocket.py,
grpc_calls.py), imported from their own folder."""

import socket

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
