#!/usr/bin/env python3
"""Envoy ext_authz against sessiongate's decision listener (issue #38), with a gRPC client
built from Envoy's own `external_auth.proto` (the generated classes of the xds-protos
package: envoy.service.auth.v3) and grpcio — nothing of sessiongate's own wire code.

Each case sends the CheckRequest Envoy would send for a request and reads the
CheckResponse as Envoy would (each failure names itself; exit 1):
1. allowed: status OK, ok_response sets the identity headers (overwrite, not append),
   removes those the identity lacks, the client's own identity headers and the credential;
2. unauthenticated (no token, unknown token): denied 401 with the Bearer challenge and the
   JSON body, status UNAUTHENTICATED;
3. refused by scope: denied 403, PERMISSION_DENIED;
4. provider down: denied 503 with Retry-After, UNAVAILABLE — never an allow;
5. rate limited: the third call denied 429 with Retry-After and RateLimit fields,
   RESOURCE_EXHAUSTED;
6. the client address is Envoy's source address (a route open to 10.0.0.0/8 only: allowed
   from 10.1.2.3, refused from 203.0.113.9 whatever X-Forwarded-For the client sent); the
   client certificate is Envoy's source.principal (require_client_certificate: the listed
   workload allowed, another refused, none — or only an XFCC header — unauthenticated);
7. a path Envoy did not normalise (`/items/../admin`) is refused 400, since Envoy would
   forward it as sent; a CheckRequest without the source address is refused 400;
8. raw headers (Envoy's encode_raw_headers: header_map instead of the map) read the same;
9. a caller outside trusted_proxies gets a gRPC error (PERMISSION_DENIED), not a decision.

Usage: tests/e2e/ext_authz_calls.py --bin target/debug/sessiongate
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from e2e_util import Failure, check, free_port, print_tails, stop, wait_ready

ALICE = "ext-authz-e2e-alice-0123456789"
BOB = "ext-authz-e2e-bob-0123456789"


def sha(t):
    return hashlib.sha256(t.encode()).hexdigest()


def config(work, listen, admin, decision, dead, trusted):
    return f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 0s
pid_file: {work}/sg.pid
upgrade_sock: {work}/sg.sock
trusted_proxies: [{trusted}]
decision: {{ listen: "127.0.0.1:{decision}" }}
providers:
  p:
    kind: static
    tokens:
      - {{ token_sha256: {sha(ALICE)}, identity: {{ subject: alice, session_id: s-1, scopes: [read, write] }} }}
      - {{ token_sha256: {sha(BOB)}, identity: {{ subject: bob, scopes: [read] }} }}
  down:
    kind: http
    url: http://127.0.0.1:{dead}/session
    timeout: 500ms
    response: {{ subject: /sub }}
    protection: {{ failures: 0 }}
rate_limits:
  tight: {{ rate: 2/min, burst: 2 }}
routes:
  - {{ name: limited, path_prefix: /limited, provider: p, rate_limits: [tight] }}
  - {{ name: admin, path_prefix: /admin, provider: p, require_scopes: {{ all_of: [admin] }} }}
  - {{ name: down, path_prefix: /down, provider: down }}
  - {{ name: office, path_prefix: /office, provider: p, allow_cidrs: [10.0.0.0/8] }}
  - {{ name: mesh, path_prefix: /mesh, provider: p, require_client_certificate: ["spiffe://cluster.local/ns/web/sa/frontend"] }}
  - {{ name: items, path_prefix: /items, provider: p, forward_authorization: false, methods: [GET, POST], method_scopes: [ {{ methods: [POST], all_of: [write] }} ] }}
log: {{ level: "warn,sessiongate::access=info", format: json }}
"""


def check_request(method, path, headers, source="203.0.113.9", raw=False, principal=None):
    r = external_auth_pb2.CheckRequest()
    a = r.attributes
    if source:
        a.source.address.socket_address.address = source
        a.source.address.socket_address.port_value = 40000
    if principal:
        a.source.principal = principal
    a.destination.address.socket_address.address = "10.9.9.9"
    h = a.request.http
    h.id = "envoy-request-1"
    h.method = method
    h.path = path
    h.host = "api.example.com"
    h.scheme = "https"
    h.protocol = "HTTP/1.1"
    every = {":method": method, ":path": path, ":authority": "api.example.com",
             ":scheme": "https", "x-request-id": "0f6e4c1a-envoy", **headers}
    if raw:
        for k, v in every.items():
            hv = h.header_map.headers.add()
            hv.key = k
            hv.raw_value = v.encode()
    else:
        for k, v in every.items():
            h.headers[k] = v
    return r


def verdict(stub, *args, **kw):
    resp = stub.Check(check_request(*args, **kw), timeout=10)
    if resp.HasField("ok_response"):
        ok = resp.ok_response
        return {
            "code": resp.status.code,
            "set": {o.header.key: o.header.value for o in ok.headers},
            "appends": [o.header.key for o in ok.headers
                        if not o.HasField("append") or o.append.value],
            "remove": list(ok.headers_to_remove),
        }
    d = resp.denied_response
    return {
        "code": resp.status.code,
        "status": d.status.code,
        "headers": {o.header.key: o.header.value for o in d.headers},
        "body": json.loads(d.body) if d.body else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SESSIONGATE_BIN", "target/debug/sessiongate"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-ext-authz-")
    procs = []
    try:
        listen, admin, decision, dead = free_port(), free_port(), free_port(), free_port()
        with open(f"{work}/sg.yaml", "w") as f:
            f.write(config(work, listen, admin, decision, dead, "127.0.0.1/32"))
        sg = subprocess.Popen([args.bin, "--config", f"{work}/sg.yaml"],
                              stdout=open(f"{work}/sg.log", "w"), stderr=subprocess.STDOUT)
        procs.append(sg)
        wait_ready(admin, sg)
        channel = grpc.insecure_channel(f"127.0.0.1:{decision}")
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        bearer = lambda t: {"authorization": f"Bearer {t}"}
        results = {}

        # 1. allowed.
        v = verdict(stub, "GET", "/items/1?x=1", {
            **bearer(BOB), "x-auth-subject": "root", "x-auth-session-id": "forged",
            "x-auth-claim-role": "admin"})
        check(v["code"] == 0 and "set" in v, f"bob GET /items/1: {v}")
        check(v["set"].get("x-auth-subject") == "bob" and v["set"].get("x-auth-scopes") == "read",
              f"identity headers: {v}")
        check(not v["appends"], f"identity headers appended, not overwritten: {v['appends']}")
        for name in ("x-auth-session-id", "x-auth-claim-role", "authorization"):
            check(name in v["remove"], f"{name} not removed: {v['remove']}")
        check("x-auth-subject" not in v["remove"], f"a granted header is removed: {v['remove']}")
        results["allowed"] = v
        v = verdict(stub, "POST", "/items/1", bearer(ALICE))
        check(v["code"] == 0 and v["set"].get("x-auth-session-id") == "s-1", f"alice POST: {v}")

        # 2. unauthenticated.
        for name, headers in (("no token", {}), ("unknown token", bearer("nobody-0123456789abcdef"))):
            v = verdict(stub, "GET", "/items/1", headers)
            check(v["code"] == 16 and v.get("status") == 401, f"{name}: {v}")
            check(v["headers"].get("www-authenticate", "").startswith("Bearer realm="),
                  f"{name}: no challenge: {v}")
            check(v["body"]["error"] in ("missing_token", "invalid_token"), f"{name}: body {v['body']}")
        results["unauthenticated"] = v["status"]

        # 3. scope.
        v = verdict(stub, "POST", "/items/1", bearer(BOB))
        check(v["code"] == 7 and v.get("status") == 403, f"bob POST: {v}")
        v = verdict(stub, "GET", "/admin/users", bearer(ALICE))
        check(v.get("status") == 403 and "insufficient_scope" in v["headers"].get("www-authenticate", ""),
              f"alice /admin: {v}")
        results["forbidden"] = v["status"]

        # 4. provider down: never an allow.
        v = verdict(stub, "GET", "/down/x", bearer(ALICE))
        check(v["code"] == 14 and v.get("status") == 503 and "retry-after" in v["headers"],
              f"provider down: {v}")
        results["provider_down"] = v["status"]

        # 5. rate limited.
        seen = [verdict(stub, "GET", "/limited/a", bearer(ALICE)) for _ in range(3)]
        check([s["code"] for s in seen] == [0, 0, 8], f"limited: {[s['code'] for s in seen]}")
        h = seen[2]["headers"]
        check(seen[2]["status"] == 429 and "retry-after" in h and "ratelimit" in h
              and "ratelimit-policy" in h, f"the 429: {seen[2]}")
        results["rate_limited"] = seen[2]["status"]

        # 6. the client is Envoy's source address.
        v = verdict(stub, "GET", "/office/a", bearer(ALICE), source="10.1.2.3")
        check(v["code"] == 0, f"office from 10.1.2.3: {v}")
        v = verdict(stub, "GET", "/office/a", {**bearer(ALICE), "x-forwarded-for": "10.1.2.3"},
                    source="203.0.113.9")
        check(v["code"] == 7 and v.get("status") == 403, f"office from 203.0.113.9 with a forged XFF: {v}")
        results["source_address"] = "used"

        # 6b. the calling workload's mTLS identity (Istio's source.principal) is the
        # client certificate: require_client_certificate and X-Auth-Client-Certificate.
        frontend = "spiffe://cluster.local/ns/web/sa/frontend"
        v = verdict(stub, "GET", "/mesh/a", bearer(ALICE), principal=frontend)
        check(v["code"] == 0 and v["set"].get("x-auth-client-certificate") == frontend,
              f"mesh from the frontend workload: {v}")
        v = verdict(stub, "GET", "/mesh/a", bearer(ALICE),
                    principal="spiffe://cluster.local/ns/web/sa/other")
        check(v["code"] == 7 and v.get("status") == 403, f"mesh from another workload: {v}")
        v = verdict(stub, "GET", "/mesh/a", {**bearer(ALICE), "x-forwarded-client-cert": f"URI={frontend}"})
        check(v["code"] == 16 and v.get("status") == 401, f"mesh without mTLS (an XFCC header is not one): {v}")
        results["client_certificate"] = "source.principal"

        # 7. not normalised, no source: refused.
        v = verdict(stub, "GET", "/items/../admin/users", bearer(ALICE))
        check(v.get("status") in (400, 403), f"/items/../admin: {v}")
        v = verdict(stub, "GET", "/items//1", bearer(ALICE))
        check(v.get("status") == 400 and "normalize_path" in v["body"]["error_description"],
              f"/items//1: {v}")
        v = verdict(stub, "GET", "/items/1", bearer(ALICE), source=None)
        check(v.get("status") == 400 and "source" in v["body"]["error_description"], f"no source: {v}")
        results["not_normalised"] = v["status"]

        # 8. raw headers.
        v = verdict(stub, "GET", "/items/1", bearer(BOB), raw=True)
        check(v["code"] == 0 and v["set"].get("x-auth-subject") == "bob", f"raw headers: {v}")

        # The access log names decision mode and the described request.
        with open(f"{work}/sg.log") as f:
            lines = [json.loads(l) for l in f if l.startswith("{") and '"request"' in l]
        check(any(l.get("mode") == "decision" and l.get("path") == "/items/1" for l in lines),
              f"access log: {lines[:2]}")
        channel.close()

        # 9. an untrusted caller: a gRPC error, not a decision.
        stop(sg)
        with open(f"{work}/sg.yaml", "w") as f:
            f.write(config(work, listen, admin, decision, dead, "192.0.2.1/32"))
        sg = subprocess.Popen([args.bin, "--config", f"{work}/sg.yaml"],
                              stdout=open(f"{work}/sg2.log", "w"), stderr=subprocess.STDOUT)
        procs.append(sg)
        wait_ready(admin, sg)
        channel = grpc.insecure_channel(f"127.0.0.1:{decision}")
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        try:
            v = verdict(stub, "GET", "/items/1", bearer(ALICE))
            raise Failure(f"an untrusted caller got a decision: {v}")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"untrusted: {e.code()} {e.details()}")
        channel.close()
        results["untrusted"] = "PERMISSION_DENIED"
        print(json.dumps(results))
        print("Envoy ext_authz (gRPC): all checks passed")
        shutil.rmtree(work, ignore_errors=True)
        return 0
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print_tails(work, ("sg.log", "sg2.log"))
        return 1
    finally:
        for p in procs:
            stop(p)


if __name__ == "__main__":
    sys.exit(main())
