#!/usr/bin/env python3
"""A stand-in for your identity provider, for docs/getting-started.md: a "get session"
endpoint that answers who a bearer token belongs to. Python's standard library only.

    python3 docs/examples/my_provider.py 8001

GET /v1/session with `Authorization: Bearer <token>`:
  a known token → 200 {"user": {"id", "email"}, "permissions": [...], "expires_at": RFC 3339}
  anything else → 401 {"error": "unknown_session"}
"""
import datetime
import http.server
import json
import sys

TOKENS = {
    "alice-token-0123456789": ("alice", "alice@example.com", ["orders.read", "orders.write"]),
    "bob-token-0123456789": ("bob", "bob@example.com", ["orders.read"]),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        found = TOKENS.get(auth.removeprefix("Bearer ")) if self.path == "/v1/session" else None
        if found is None:
            self.answer(401, {"error": "unknown_session"})
            return
        user, email, permissions = found
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        self.answer(200, {
            "user": {"id": user, "email": email},
            "permissions": permissions,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("provider: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8001
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
