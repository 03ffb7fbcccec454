#!/usr/bin/env python3
"""Differential cases: send hostile variants through sessiongate to a real backend and
check, for every request a backend handler ran, that the gateway authorized it.

Usage: diff.py GATEWAY_PORT BACKEND_NAME [--expect-violations] [--min-cases N]

Each backend answers {backend, route, method, host, scopes, subject}: the handler it
ran, the method it dispatched, and the identity headers it read. The invariant, per
case that reached a handler:
  1. the token sent satisfies what the gateway requires for that handler's route and
     the dispatched method (public: nothing; root: a valid token; wallets: read, plus
     write for POST/PUT/PATCH/DELETE; admin and the admin.internal host: admin);
  2. the identity the backend read is the token's or none (never a spoofed copy), and a
     handler that needs an identity got one from the gateway (the gateway authenticated
     the request rather than routing it to an open route);
  3. tenant isolation (issue #36): the org a backend's /orgs/<org>/ handler served is one
     of the token's organizations, and the X-Auth-Organizations it read are the token's.
Rows of issue #13 are named cases; the rest are generated from a fixed seed.
"""
import json
import os
import random
import socket
import sys

TOKENS = {
    None: None,
    "reader": ["read"],
    "writer": ["read", "write"],
    "admin": ["read", "write", "admin"],
}
WRITE = {"POST", "PUT", "PATCH", "DELETE"}
# Each token's organizations (gateway.yaml): /orgs/<org>/ is for the org's members only.
ORGS = {
    None: None,
    "reader": ["acme"],
    "writer": ["globex"],
    "admin": ["acme", "globex"],
}


def required(route, method):
    """Scopes a handler's route needs, or None for no token at all."""
    if route == "public":
        return None
    if route == "root":
        return []
    if route == "wallets":
        return ["read", "write"] if method.upper() in WRITE else ["read"]
    if route in ("admin", "vhost-admin"):
        return ["admin"]
    if route == "orgs":
        return []
    raise ValueError(f"unknown route {route!r}")


def request(method, target, host="api.example", headers=(), token=None, version="HTTP/1.1"):
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if token:
        lines.append(f"Authorization: Bearer {os.environ['DIFF_TOKEN_' + token.upper()]}")
    lines.extend(headers)
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def named_cases():
    """The rows of issue #13 (and the hostile-request checklist) as named cases."""
    yield "row1 /public/..%2Fadmin/users, no token", request("GET", "/public/..%2Fadmin/users"), None
    yield "row1 /public/%2e%2e/admin/users, no token", request("GET", "/public/%2e%2e/admin/users"), None
    yield "row1 /public/..%252Fadmin/users", request("GET", "/public/..%252Fadmin/users"), None
    yield "row1 /public/..;/admin/users", request("GET", "/public/..;/admin/users"), None
    yield "row1 /public/%c0%ae%c0%ae/admin", request("GET", "/public/%c0%ae%c0%ae/admin"), None
    yield "row1 //admin/users, no token", request("GET", "//admin/users"), None
    yield "row2 /admin%2Fusers, reader", request("GET", "/admin%2Fusers", token="reader"), "reader"
    yield "row2 /admin%2fusers, reader", request("GET", "/admin%2fusers", token="reader"), "reader"
    yield "row2 /admin%5Cusers, reader", request("GET", "/admin%5Cusers", token="reader"), "reader"
    yield "row3 post /wallets/w1, reader", request("post", "/wallets/w1", token="reader", headers=["Content-Length: 0"]), "reader"
    yield "row3 Delete /wallets/w1, reader", request("Delete", "/wallets/w1", token="reader"), "reader"
    yield "row4 Host admin.internal., reader", request("GET", "/x", host="admin.internal.", token="reader"), "reader"
    yield "row4 Host admin.internal:abc, reader", request("GET", "/x", host="admin.internal:abc", token="reader"), "reader"
    yield "row4 Host ADMIN.INTERNAL, reader", request("GET", "/x", host="ADMIN.INTERNAL", token="reader"), "reader"
    yield "row4 absolute-form http://admin.internal/x", request("GET", "http://admin.internal/x", host="admin.internal", token="reader"), "reader"
    yield "row9 X-Original-URL /admin/users, no token", request("GET", "/public/x", headers=["X-Original-URL: /admin/users"]), None
    yield "row9 X-Rewrite-URL /admin/users, no token", request("GET", "/public/x", headers=["X-Rewrite-URL: /admin/users"]), None
    yield "row9 X-HTTP-Method-Override DELETE, reader", request("GET", "/wallets/w1", token="reader", headers=["X-HTTP-Method-Override: DELETE"]), "reader"
    yield "row9 X_Auth_Scopes spoof, no token", request("GET", "/public/x", headers=["X_Auth_Scopes: admin", "X-Auth-Scopes: admin"]), None
    yield "row9 Transfer_Encoding", request("POST", "/public/x", headers=["Transfer_Encoding: chunked", "Content-Length: 0"]), None
    yield "row9 Content-Length: 0, 0", request("POST", "/public/x", headers=["Content-Length: 0, 0"]), None
    yield "row9 HTTP/1.1 without Host", request("GET", "/admin/users", host=None), None
    yield "case /ADMIN/users, reader", request("GET", "/ADMIN/users", token="reader"), "reader"
    yield "case /Admin, no token", request("GET", "/Admin"), None
    yield "case /PUBLIC/../Admin, writer", request("GET", "/PUBLIC/../Admin", token="writer"), "writer"


PATHS = [
    "/admin/users", "/admin", "/wallets/w1", "/wallets", "/public/x", "/public", "/", "/other",
    "/orgs/acme/projects", "/orgs/globex/projects", "/orgs/acme",
]
# Variants of the org segment: the org a backend reads must be one the gateway checked.
ORG_SEGMENTS = [
    "globex", "GLOBEX", "Globex", "%67lobex", "%2567lobex", "glob%65x", "globex;x=acme",
    "acme;globex", "globex%3Bacme", "acme%2Fglobex", "acme%2F..%2Fglobex", "acme%5Cglobex",
    "acme%252Fglobex", "acme/../globex", "acme/./../globex", "./globex", "globex/.",
    "acme%2E%2E", "globex.", "globex%20", "globex%00", "globex%09", "acme%2Fx", "%20globex",
    "globex%23x", "globex?org=acme", "globex#acme", "acme%3F/../globex", "%61cme", "ACME",
]
ORG_TAILS = ["", "/", "/projects", "//projects", "/./projects", "/%2e%2e/x"]
PATH_MUTATIONS = [
    lambda p: p,
    lambda p: "/public/.." + p,
    lambda p: "/public/..%2F" + p.lstrip("/"),
    lambda p: "/public/%2e%2e" + p,
    lambda p: "/public/.%2E" + p,
    lambda p: "/public/%2E%2E%2F" + p.lstrip("/"),
    lambda p: "/public/..%5C" + p.lstrip("/"),
    lambda p: "/public/..\\" + p.lstrip("/"),
    lambda p: "/public/..;" + p,
    lambda p: "/public;x=1/.." + p,
    lambda p: "/" + p,
    lambda p: p.replace("/", "//"),
    lambda p: p.replace("/", "%2F"),
    lambda p: p.replace("/", "%2f", 1) if p.count("/") > 1 else "/x%2F.." + p,
    lambda p: p.replace("/", "%252F"),
    lambda p: p + "/.",
    lambda p: p + "/..",
    lambda p: p + "%2F..",
    lambda p: p.upper(),
    lambda p: p[:2] + p[2:].upper(),
    lambda p: p.replace("a", "%61"),
    lambda p: p.replace("a", "%41"),
    lambda p: p + ";jsessionid=1",
    lambda p: p.replace("/", "/;/", 1),
    lambda p: p + "%00",
    lambda p: p + "%20",
    lambda p: p + ".",
    lambda p: p + "?x=/../admin",
    lambda p: p + "#frag",
    lambda p: "/public/%c0%ae%c0%ae" + p,
    lambda p: "/public/%252e%252e" + p,
]
METHODS = ["GET", "POST", "DELETE", "post", "Get", "PUT", "patch", "FOO", "OPTIONS", "HEAD", "head"]
HOSTS = [
    "api.example", "admin.internal", "ADMIN.internal", "admin.internal.", "admin.internal:80",
    "admin.internal:abc", "admin.internal:99999", "admin.internal..", "[::1]:8080", None,
]
HEADER_SETS = [
    [],
    ["X-Original-URL: /admin/users"],
    ["X-Rewrite-URL: /admin/users"],
    ["X-HTTP-Method-Override: DELETE"],
    ["X-Forwarded-Prefix: /admin"],
    ["X-Auth-Scopes: admin", "X_Auth_Scopes: admin", "X-Auth-Subject: admin"],
    ["X_Forwarded_For: 10.0.0.1", "X-Real-IP: 10.0.0.1"],
    ["Content-Length: 0"],
    ["Content-Length: 0, 0"],
    ["Transfer_Encoding: chunked"],
    ["Connection: X-Auth-Scopes"],
]


def path_grid():
    """Every path mutation on every base path, with every token: the systematic part."""
    for pi, base in enumerate(PATHS):
        for mi, mutate in enumerate(PATH_MUTATIONS):
            path = mutate(base)
            for token in TOKENS:
                name = f"grid p{pi}m{mi} GET {path} token={token}"
                yield name, request("GET", path, token=token), token


def org_grid():
    """Every org-segment variant under /orgs/ (and //orgs/, /public/../orgs/), each tail,
    each token."""
    for si, seg in enumerate(ORG_SEGMENTS):
        for ti, tail in enumerate(ORG_TAILS):
            for prefix in ["/orgs/", "//orgs//", "/public/../orgs/"]:
                path = prefix + seg + tail
                for token in TOKENS:
                    yield f"org s{si}t{ti} GET {path} token={token}", request("GET", path, token=token), token


def generated_cases(count, seed=1313):
    """Each case starts from a plain request (a base path, GET, a normal host, a token)
    and mutates one dimension (70 %) or two: path encoding, method, host, or headers —
    so every mutation is tried on its own, where the gateway cannot refuse the request
    for some other reason, as well as in combination."""
    rng = random.Random(seed)
    for i in range(count):
        path, method, host, headers = rng.choice(PATHS), "GET", "api.example", []
        dimensions = rng.sample(["path", "method", "host", "headers"], 1 if rng.random() < 0.7 else 2)
        if "path" in dimensions:
            path = rng.choice(PATH_MUTATIONS)(path)
        if "method" in dimensions:
            method = rng.choice(METHODS)
        if "host" in dimensions:
            host = rng.choice(HOSTS)
        if "headers" in dimensions:
            headers = rng.choice(HEADER_SETS)
        token = rng.choice(list(TOKENS))
        if method.upper() in ("POST", "PUT", "PATCH") and not any("Length" in h for h in headers):
            headers = headers + ["Content-Length: 0"]
        name = f"gen{i} {method} {path} host={host} {headers} token={token}"
        yield name, request(method, path, host=host, headers=headers, token=token), token


SLOW = []


def send(port, raw):
    import time
    started = time.monotonic()
    try:
        return _send(port, raw)
    finally:
        took = time.monotonic() - started
        if took > 1:
            SLOW.append((round(took, 1), raw[:120]))


def _send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            pass
    return b"".join(chunks).decode("latin-1")


def dechunk(body):
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition("\r\n")
        size = int(size_line.split(";")[0].strip() or "0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return "".join(out)


def header(head, name):
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def check(name, token, response):
    """(None, status) when the case is fine; else (a description of the violation,
    status). A 200 whose body is not a handler report is itself a failure: the checker
    must never pass a case it could not read."""
    head, _, body = response.partition("\r\n\r\n")
    status = head[9:12]
    if status != "200":
        return None, status
    if "transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    try:
        seen = json.loads(body)
    except ValueError:
        return f"a 200 that is not a handler report: {body[:80]!r}", status
    if "backend" not in seen:
        return f"a 200 that is not a handler report: {body[:80]!r}", status
    need = required(seen["route"], seen["method"])
    have = TOKENS[token]
    if need is not None:
        if have is None:
            return f"{seen['route']} ran {seen['method']} without a token", status
        missing = [s for s in need if s not in have]
        if missing:
            return f"{seen['route']} ran {seen['method']} for {token}, lacking {missing}", status
    if seen["route"] == "orgs":
        org = seen.get("org")
        if org is None:
            org = header(head, "x-backend-org")
        if org is None:
            return "the orgs handler did not say which org it served", status
        if org not in (ORGS[token] or []):
            return f"served org {org!r} to {token} (organizations {ORGS[token]})", status
        told = seen.get("orgs")
        if told is not None and told.split(",") != ORGS[token]:
            return f"backend read organizations {told!r}, token {token} has {ORGS[token]}", status
    observed = seen.get("scopes")
    expected = None if have is None else " ".join(have)
    # An empty scopes header tells the backend nothing, as an absent one does (Caddy's
    # copy_headers copies the decision's empty identity headers; nginx drops them): only
    # a value that is not the token's own is a violation.
    if observed not in (None, "") and observed != expected:
        return f"backend read scopes {observed!r}, token {token} has {expected!r}", status
    if need is not None and seen.get("subject") is None:
        return f"{seen['route']} ran with no identity from the gateway (it was not authenticated)", status
    return None, status


def check_head(port, name, token, response, raw):
    """A HEAD has no body to read the handler's report from: a HEAD that reached a
    handler (200) must be one whose GET twin — the same request as GET — reaches it too,
    with a token that has what the route requires for GET (HEAD is judged as GET)."""
    status = response.partition("\r\n\r\n")[0][9:12]
    if status != "200":
        return None, status
    twin = send(port, b"GET " + raw[len(b"HEAD "):])
    problem, twin_status = check(f"{name} (as GET)", token, twin)
    if twin_status != "200":
        return f"HEAD answered 200 where GET answered {twin_status}", status
    return problem, status


def main():
    port = int(sys.argv[1])
    backend = sys.argv[2]
    expect_violations = "--expect-violations" in sys.argv
    min_cases = 500
    if "--min-cases" in sys.argv:
        min_cases = int(sys.argv[sys.argv.index("--min-cases") + 1])
    cases = (list(named_cases()) + list(path_grid()) + list(org_grid())
             + list(generated_cases(max(min_cases, 600))))
    violations, statuses, reached, tenants = [], {}, 0, 0
    for name, raw, token in cases:
        response = send(port, raw)
        if raw.startswith(b"HEAD "):
            problem, status = check_head(port, name, token, response, raw)
        else:
            problem, status = check(name, token, response)
        statuses[status] = statuses.get(status, 0) + 1
        if status == "200":
            reached += 1
            if '"route": "orgs"' in response or '"route":"orgs"' in response:
                tenants += 1
        if problem:
            violations.append(f"{name}: {problem}")
    summary = {
        "backend": backend,
        "cases": len(cases),
        "reached_a_handler": reached,
        "reached_a_tenant": tenants,
        "statuses": dict(sorted(statuses.items())),
        "violations": len(violations),
    }
    print(json.dumps(summary))
    for v in violations[:20]:
        print("  violation:", v)
    for took, raw in SLOW[:5]:
        print(f"  slow ({took} s): {raw!r}")
    if len(cases) < min_cases:
        sys.exit(f"only {len(cases)} cases")
    if reached < len(cases) // 10:
        sys.exit(f"only {reached} cases reached {backend}: the suite is not exercising it")
    if tenants < 100:
        sys.exit(f"only {tenants} cases reached {backend}'s /orgs/ handler: tenant isolation is not exercised")
    if expect_violations:
        sys.exit(0 if violations else f"{backend}: expected violations (a mismatched setup) but found none")
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
