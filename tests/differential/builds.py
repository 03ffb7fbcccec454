"""Two builds of sessiongate, the same raw requests: what a raw upstream receives, compared.

    python3 tests/differential/builds.py OLD_BINARY NEW_BINARY

A check for changes to how the upstream request is made (not run by CI: it needs a
second build). Each build runs twice — without and with `trusted_proxies` — in front of
its own raw upstream that records every request head; ~30 hostile and ordinary requests
(forged identity headers, forwarding headers, credential cookies and API-key headers,
path tricks, obs-text, long and many headers, h2c, HEAD, fragments) go to both. The
request line, each header's values in order, and the answer's status line must agree;
header-name spelling is reported but is not a difference (names are case-insensitive).
Exits 1 on any difference. Workdir: $TMPDIR/sg-builds.
"""
import os, socket, subprocess, sys, threading, time, json, urllib.request

OLD, NEW = sys.argv[1], sys.argv[2]
TOK = "oldnew-token-0123456789abcdef"
os.environ["OLDNEW_TOKEN"] = TOK

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class Upstream:
    def __init__(self):
        self.heads = {}
        self.sock = socket.socket(); self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0)); self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()
    def serve(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()
    def conn(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d: c.close(); return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            rid = None
            for line in head.split(b"\r\n")[1:]:
                n, _, v = line.partition(b":")
                if n.strip().lower() == b"x-request-id": rid = v.strip().decode()
            self.heads[rid] = head
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")

def config(port, admin, up, trusted, d):
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
pid_file: {d}/pid
upgrade_sock: {d}/sock
log: {{ level: warn }}
{"trusted_proxies: [127.0.0.0/8]" if trusted else ""}
providers:
  idp:
    kind: static
    tokens:
      - {{ token: "${{OLDNEW_TOKEN}}", identity: {{ subject: "bench user", session_id: s-1, scopes: [read, write], organizations: [acme, "b,c"], ip_restrict: [127.0.0.0/8] }} }}
upstreams: {{ app: "http://127.0.0.1:{up}" }}
routes:
  - {{ name: open, path_prefix: /open, auth: none, upstream: app }}
  - {{ name: cookie, path_prefix: /c, provider: idp, upstream: app, token_sources: [authorization, {{ cookie: sid }}, {{ header: X-Api-Key }}] }}
  - {{ name: hidden, path_prefix: /h, provider: idp, upstream: app, forward_authorization: false, token_sources: [authorization, {{ header: X-Api-Key }}] }}
  - {{ name: api, path_prefix: /, provider: idp, upstream: app }}
"""

def start(binary, trusted, tag):
    up = Upstream()
    port, admin = free_port(), free_port()
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"), "sg-builds", tag); os.makedirs(d, exist_ok=True)
    open(f"{d}/config.yaml", "w").write(config(port, admin, up.port, trusted, d))
    p = subprocess.Popen([binary, "--config", f"{d}/config.yaml"], stdout=open(f"{d}/log", "w"), stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1); break
        except Exception: time.sleep(0.1)
    return p, port, up

B = f"Authorization: Bearer {TOK}"
cases = [
    ("GET /x HTTP/1.1", ["Host: api.example", B]),
    ("GET /a/./b HTTP/1.1", ["Host: api.example", B]),
    ("GET //x?q=1 HTTP/1.1", ["Host: api.example", B]),
    ("GET /a%2Fb HTTP/1.1", ["Host: api.example", B]),
    ("GET /a/../x?y=%20&z HTTP/1.1", ["Host: api.example", B]),
    ("GET /x HTTP/1.1", ["host: API.example:8080", B, "Accept: a", "accept: b", "ACCEPT: c"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Auth-Subject: forged", "X_Auth_Subject: forged2", "x-auth-scopes: admin"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "Connection: close"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "Connection: keep-alive, close"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Forwarded-For: 1.2.3.4, 10.0.0.1", "X-Real-IP: 9.9.9.9", "Forwarded: for=1.2.3.4", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Forwarded-For: 127.0.0.5", "x-forwarded-for: 127.0.0.6"]),
    ("GET /c/x HTTP/1.1", ["Host: h", f"Cookie: a=1; sid={TOK}; b=2", "Sec-Fetch-Site: same-origin"]),
    ("GET /c/x HTTP/1.1", ["Host: h", f"Cookie: sid={TOK}", "Cookie: theme=dark"]),
    ("GET /c/x HTTP/1.1", ["Host: h", f"X-Api-Key: {TOK}", "Cookie: theme=dark"]),
    ("GET /h/x HTTP/1.1", ["Host: h", f"x-api-key: {TOK}"]),
    ("GET /h/x HTTP/1.1", ["Host: h", B, "X-Keep: 1"]),
    ("GET /open/x HTTP/1.1", ["Host: h", "X-Auth-Subject: forged", "Authorization: Bearer whatever"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Obs: caf\xe9 \x80\xff"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Long: " + "v" * 6000]),
    ("GET /x HTTP/1.1", ["Host: h", B] + [f"X-H{i}: {i}" for i in range(80)]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-Empty:", "X-Tab: a\tb", "X-Spaces:    padded   "]),
    ("HEAD /x HTTP/1.1", ["Host: h", B]),
    ("OPTIONS /x HTTP/1.1", ["Host: h", B]),
    ("DELETE /x?id=1 HTTP/1.1", ["Host: h", B]),
    ("get /x HTTP/1.1", ["Host: h", B]),
    ("GET /x HTTP/1.1", [B]),
    ("GET /x HTTP/1.1", ["Host: h", B, "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__", "Connection: Upgrade, HTTP2-Settings"]),
    ("GET /x HTTP/1.1", ["Host: h", B, "X-HTTP-Method-Override: DELETE", "X-Original-URL: /admin"]),
    ("GET /x#frag HTTP/1.1", ["Host: h", B]),
    ("GET /%7Euser/%41 HTTP/1.1", ["Host: h", B]),
]

def send(port, line, headers, rid):
    raw = (line + "\r\n" + "".join(h + "\r\n" for h in headers + [f"X-Request-Id: {rid}"]) + "\r\n").encode("latin-1")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            d = s.recv(65536)
            if not d: break
            resp += d
    except socket.timeout:
        pass
    s.close()
    return resp.split(b"\r\n", 1)[0].decode("latin-1")

def norm(head, spelling=True):
    if head is None: return None
    lines = head.split(b"\r\n")
    groups = {}
    for l in lines[1:]:
        n, _, v = l.partition(b":")
        groups.setdefault(n.lower(), []).append((n if spelling else n.lower(), v.strip()))
    return (lines[0], sorted(groups.items()))

bad = 0
for trusted in (False, True):
    gws = {}
    for name, binary in (("old", OLD), ("new", NEW)):
        gws[name] = start(binary, trusted, f"{name}-{trusted}")
    for i, (line, headers) in enumerate(cases):
        rid = f"case-{int(trusted)}-{i}"
        status = {n: send(g[1], line, headers, rid) for n, g in gws.items()}
        time.sleep(0.05)
        heads = {n: norm(g[2].heads.get(rid), spelling=False) for n, g in gws.items()}
        spelled = {n: norm(g[2].heads.get(rid)) for n, g in gws.items()}
        same = status["old"] == status["new"] and heads["old"] == heads["new"]
        note = "" if spelled["old"] == spelled["new"] else " (header-name spelling differs)"
        print(f"{'same' if same else 'DIFF'} trusted={trusted} #{i} {line!r}: {status['new']}, upstream {'got it' if heads['new'] else 'nothing'}{note}")
        if same and note:
            old_names = sorted(n for _, vs in spelled["old"][1] for n, _ in vs)
            new_names = sorted(n for _, vs in spelled["new"][1] for n, _ in vs)
            print("   spelled by old only:", sorted(set(old_names) - set(new_names)),
                  "by new only:", sorted(set(new_names) - set(old_names)))
        if not same:
            bad += 1
            print("   old:", status["old"], heads["old"])
            print("   new:", status["new"], heads["new"])
    for g in gws.values():
        g[0].terminate(); g[0].wait()
print("differences:", bad)
sys.exit(1 if bad else 0)
