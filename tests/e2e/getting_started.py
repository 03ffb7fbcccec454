#!/usr/bin/env python3
"""docs/getting-started.md, run as written (in .ci/run): the stand-in provider
(docs/examples/my_provider.py), the page's config block (`<!-- getting-started: config -->`)
through `--check` and then as a running gateway, and every command of the requests block
(`<!-- getting-started: requests -->`) that ends in `# → NNN`, which must answer NNN.
The page's fixed ports (8080, 9090, 8001) are swapped for free ones; nothing else is
changed. Then the provider is stopped: a new token gets 503, a cached one still 200.

    python3 tests/e2e/getting_started.py [--bin target/debug/sessiongate]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import Failure, check, free_port, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "getting-started.md")


def block(text, marker):
    m = re.search(re.escape(f"<!-- getting-started: {marker} -->") + r"\n```\w*\n(.*?)\n```", text, re.S)
    check(m is not None, f"{PAGE}: no block marked {marker}")
    return m.group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "sessiongate"))
    args = ap.parse_args()
    text = open(PAGE).read()
    ports = {"8080": free_port(), "9090": free_port(), "8001": free_port()}

    def local(s):
        return re.sub(r"(127\.0\.0\.1|localhost):(8080|9090|8001)\b",
                      lambda m: f"{m.group(1)}:{ports[m.group(2)]}", s)

    work = tempfile.mkdtemp(prefix="sg-getting-started-")
    config = os.path.join(work, "my-gateway.yaml")
    with open(config, "w") as f:
        f.write(local(block(text, "config")) + f"\npid_file: {work}/pid\nupgrade_sock: {work}/sock\n")
    provider = subprocess.Popen([sys.executable, os.path.join(ROOT, "docs/examples/my_provider.py"),
                                 str(ports["8001"])], stderr=subprocess.DEVNULL)
    gateway = None
    try:
        done = subprocess.run([args.bin, "--config", config, "--check"], capture_output=True, text=True)
        check(done.returncode == 0 and not done.stderr, f"--check: {done.returncode} {done.stderr}")
        gateway = subprocess.Popen([args.bin, "--config", config], stdout=subprocess.DEVNULL,
                                   stderr=open(os.path.join(work, "gateway.log"), "w"))
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['9090']}/readyz", timeout=1)
                urllib.request.urlopen(f"http://127.0.0.1:{ports['8001']}/", timeout=1)
            except urllib.error.HTTPError:
                break  # the provider's 401: both are up
            except OSError:
                check(time.time() < deadline, "gateway or provider not up in 20 s")
                time.sleep(0.1)
                continue
            break

        ran = 0
        for line in block(text, "requests").splitlines():
            m = re.match(r"^(curl .*?)\s+#\s*→\s*(\d{3})\s*$", line)
            if not m:
                check(line.startswith("#") or not line.strip(), f"a request line without '# → status': {line}")
                continue
            cmd, want = local(m.group(1)), m.group(2)
            if "|" in cmd:  # a pipeline: it must succeed and print something
                out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
                check(out.returncode == 0 and out.stdout.strip(), f"{line}: {out.returncode} {out.stderr}")
            else:
                out = subprocess.run(["bash", "-c", cmd + " -o /dev/null -w '%{http_code}'"],
                                     capture_output=True, text=True)
                check(out.stdout == want, f"{line}: answered {out.stdout!r}, the page says {want}")
            ran += 1
        check(ran >= 7, f"only {ran} requests found on the page")

        # What the page says the echo shows for alice.
        first = [line for line in block(text, "requests").splitlines() if line.startswith("curl")][0]
        echo = subprocess.run(["bash", "-c", local(first.split("#")[0])], capture_output=True, text=True).stdout
        seen = json.loads(echo)["headers"]
        want = {"x-auth-subject": "alice", "x-auth-claim-email": "alice@example.com",
                "x-auth-scopes": "orders.read orders.write"}
        check({k: seen.get(k) for k in want} == want, f"the echo shows {seen}")

        stop(provider)
        url = f"http://127.0.0.1:{ports['8080']}/orders"
        codes = {}
        for token in ("never-seen-0123456789", "alice-token-0123456789"):
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                codes[token] = urllib.request.urlopen(req, timeout=10).status
            except urllib.error.HTTPError as e:
                codes[token] = e.code
        check(codes == {"never-seen-0123456789": 503, "alice-token-0123456789": 200},
              f"with the provider stopped: {codes}")
        print(f"getting started: ok ({ran} documented requests answered as the page says; "
              f"provider stopped: new token 503, cached 200)")
    finally:
        stop(provider)
        if gateway:
            stop(gateway)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"getting started: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
