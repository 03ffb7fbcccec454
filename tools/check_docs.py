#!/usr/bin/env python3
"""Docs that cannot rot (run by .ci/run):

- every relative link in README.md, CONTRIBUTING.md, BENCHMARKS.md and docs/*.md points
  at a file or directory that exists, and every `#anchor` at a heading of its target;
- every ```yaml block in those files that is a sessiongate config passes
  `sessiongate --check --no-secrets` (secrets are the deployment's, not the docs').
  A block with `listen:` and `routes:` is checked as written; a fragment (say, just a
  `providers:` section) is checked inside a minimal config, its top-level keys replacing
  the minimal config's. Kubernetes objects (`apiVersion:`) and Prometheus files
  (`groups:`, `scrape_configs:`) are not sessiongate configs and are skipped.
  Files the examples name at deployment paths (`/etc/…` certificates, CA bundles, signing
  keys) are stood in for by files of the same kind — the demo certificate and key, a
  generated EC or the test RSA key — so that they are still read and must parse.
  The line before a block may say what to expect instead:
      <!-- check: fails "routes[0].methods" -->   the check must fail, naming that text
      <!-- check: skip because … -->              not checked (say why)

Usage: python3 tools/check_docs.py [--bin target/debug/sessiongate]
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["README.md", "CONTRIBUTING.md", "BENCHMARKS.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT))

# What a fragment is checked inside: the provider `idp` and the upstream `app` that the
# docs' fragments name (a fragment's own providers and upstreams are added to them; any
# other top-level key of the fragment replaces the minimal config's).
MINIMAL = {
    "listen": "127.0.0.1:8080",
    "admin_listen": "127.0.0.1:9090",
    "providers": {"idp": {"kind": "bitgo", "url": "https://idp.example/api/v2/user/session"}},
    "upstreams": {"app": "http://127.0.0.1:3000"},
    "routes": [{"name": "docs-check", "path_prefix": "/docs-check", "auth": "none", "upstream": "echo"}],
}


def in_minimal(doc):
    out = dict(MINIMAL)
    for key, value in doc.items():
        if key in ("providers", "upstreams") and isinstance(value, dict):
            out[key] = {**MINIMAL[key], **value}
        else:
            out[key] = value
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def blocks_and_text(path):
    """(lines outside code fences with their numbers, yaml blocks as (line, text, marker))."""
    prose, blocks = [], []
    fence, start, lang, body = None, 0, "", []
    lines = open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n")
    for n, line in enumerate(lines, 1):
        m = re.match(r"^(\s*)(```+|~~~+)(.*)$", line)
        if fence is None and m:
            fence, start, lang, body = m.group(2), n, m.group(3).strip(), []
        elif fence is not None and line.strip().startswith(fence):
            if lang == "yaml":
                before = lines[start - 2].strip() if start >= 2 else ""
                marker = before if before.startswith("<!-- check:") else ""
                blocks.append((start, "\n".join(body), marker))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append((n, line))
    return prose, blocks


def anchors_of(path):
    prose, _ = blocks_and_text(path)
    seen, out = {}, set()
    for _, line in prose:
        m = re.match(r"^#{1,6} (.*)$", line)
        if m:
            s = slug(m.group(1))
            k = seen.get(s, 0)
            out.add(s if k == 0 else f"{s}-{k}")
            seen[s] = k + 1
    return out


def check_links(errors):
    count = 0
    for f in FILES:
        prose, _ = blocks_and_text(f)
        for n, line in prose:
            line = re.sub(r"`[^`]*`", "", line)
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z]+:", target):
                    continue
                count += 1
                path, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
                if not os.path.exists(os.path.join(ROOT, dest)):
                    errors.append(f"{f}:{n}: link to {target}: {dest} does not exist")
                    continue
                if anchor and dest.endswith(".md") and anchor not in anchors_of(dest):
                    errors.append(f"{f}:{n}: link to {target}: {dest} has no heading #{anchor}")
    return count


def stand_in_files(node, work, key=None, parent=None):
    """The config with each `/etc/…` file replaced by a file of its kind."""
    if isinstance(node, dict):
        return {k: stand_in_files(v, work, k, node) for k, v in node.items()}
    if isinstance(node, list):
        return [stand_in_files(v, work, key, parent) for v in node]
    if not (isinstance(node, str) and node.startswith("/etc/")):
        return node
    if key == "key_file":  # an assertion signing key: the kind its algorithm needs
        alg = str((parent or {}).get("algorithm", "ES256"))
        return os.path.join(ROOT, "tests/fixtures/jwt/rsa-test-key.pem") if alg[:2] in ("RS", "PS") \
            else os.path.join(work, "es256.pem")
    if key == "key":
        return os.path.join(ROOT, "config/demo-tls.key")
    return os.path.join(ROOT, "config/demo-tls.crt")  # chain, ca_file


def check_configs(binary, errors):
    work = os.path.join(ROOT, "target", "docs-check")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # Relative paths in the docs (config/demo-tls.crt, …) are written from the repository
    # root; a config's relative paths are read from its own directory.
    for d in ("config", "tests", "deploy"):
        os.symlink(os.path.join(ROOT, d), os.path.join(work, d))
    subprocess.run(f"openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt "
                   f"-out {work}/es256.pem", shell=True, check=True)
    checked = skipped = 0
    for f in FILES:
        _, blocks = blocks_and_text(f)
        for line, text, marker in blocks:
            where = f"{f}:{line}"
            if marker.startswith("<!-- check: skip"):
                if not re.search(r"skip \S+", marker):
                    errors.append(f"{where}: a skipped block must say why")
                skipped += 1
                continue
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                errors.append(f"{where}: not YAML: {e}")
                continue
            if isinstance(doc, list) and doc and all(isinstance(r, dict) and "path_prefix" in r for r in doc):
                doc = {"routes": doc}  # a fragment of the routes list
            if not isinstance(doc, dict):
                errors.append(f"{where}: a yaml block that is neither a mapping nor routes")
                continue
            if {"apiVersion", "groups", "scrape_configs", "rule_files"} & set(doc):
                continue
            if not ("listen" in doc and "routes" in doc):
                doc = in_minimal(doc)
            config = yaml.safe_dump(stand_in_files(doc, work), sort_keys=False)
            path = os.path.join(work, f"{f.replace('/', '_')}-{line}.yaml")
            with open(path, "w") as out:
                out.write(config)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONGATE_", "INTROSPECTION_", "REDIS_"))}
            done = subprocess.run([binary, "--config", path, "--check", "--no-secrets"],
                                  capture_output=True, text=True, env=env, timeout=30)
            checked += 1
            expect = re.match(r'<!-- check: fails "([^"]+)"', marker)
            if expect:
                if done.returncode != 64 or expect.group(1) not in done.stderr:
                    errors.append(f"{where}: expected --check to fail naming {expect.group(1)!r}, "
                                  f"got exit {done.returncode}: {done.stderr.strip()}")
            elif done.returncode != 0:
                errors.append(f"{where}: --check failed: {done.stderr.strip()}")
            elif done.stderr.strip():
                errors.append(f"{where}: --check warned: {done.stderr.strip()}")
    return checked, skipped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "sessiongate"))
    args = ap.parse_args()
    os.chdir(ROOT)
    errors = []
    links = check_links(errors)
    checked, skipped = check_configs(os.path.abspath(args.bin), errors)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"docs: {len(errors)} problems", file=sys.stderr)
        return 1
    print(f"docs: {len(FILES)} files, {links} relative links resolve, "
          f"{checked} config blocks pass --check ({skipped} skipped, each saying why)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
