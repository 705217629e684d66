"""Checks everything StreamSpace gives a Kubernetes cluster; run by
scripts/test-kubernetes.sh, which renders the session objects first.

Every object is validated against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields fail), plus the rules the
schemas cannot express: names, label keys and values, Deployment
selectors, container and port names, RBAC subjects in the right namespace.

The kustomizations are built by real kustomize (`kubectl kustomize`); this
file adds only what kustomize lets pass silently:
  - a patch whose target matches no object (or several) is applied to
    nothing, also when a component patches what a later component adds;
  - an `images:` entry that names no container's image changes nothing;
  - a manifest that no kustomization lists is never installed;
  - objects in another namespace than the top level's, a Deployment that
    uses a ServiceAccount the build lacks, and the same kind and name twice.
And the default install must isolate sessions: a NetworkPolicy selects
every pod `render` printed and admits the agent's pods only.

The PostgreSQL overlay runs replicas (docs/OPERATIONS.md): 3 of them, a
PodDisruptionBudget that lets one go at a time, readiness on /readyz and
liveness on /healthz, spread across nodes, each telling the others its pod
address (--internal-url from the downward API), one shared MFA key, and a
grace period that covers the preStop pause and the drain.

Three fixtures check the checks: kustomize must read image references with
a registry port or a digest right (fixtures/image-references), every rule
above must fail on a tree that breaks it (fixtures/broken), and every
replica rule on a Deployment that breaks it (fixtures/replicas-broken).

No apiserver runs here: this is schema validation, not a cluster.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

# Builds an operator may make that no kustomization in deploy/kubernetes
# makes itself: name -> (base, components), relative to the tree.
COMBINATIONS = {
    "the agent with every component": (
        "agent",
        [
            "agent/components/leader-election",
            "agent/components/port-forward",
            "agent/components/cluster-metrics",
        ],
    ),
}

# Builds that run control-plane replicas on PostgreSQL: directory relative
# to the tree -> how many replicas.
REPLICATED = {"control-plane/postgres": 3}
# The server's --drain-timeout default: how long a stopping replica gives
# its viewers' tunnels (docs/UPGRADING.md).
DRAIN_TIMEOUT_SECONDS = 10
# What a replica needs after the drain to tell its agents to move and exit.
EXIT_MARGIN_SECONDS = 5

KUSTOMIZE_KINDS = {"Kustomization", "Component"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PersistentVolume",
    "PriorityClass",
    "CustomResourceDefinition",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
IANA_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def shown(path):
    """A path as messages show it: relative to where we run."""
    return os.path.relpath(path)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_kustomization(directory):
    (k,) = load_all(os.path.join(directory, "kustomization.yaml"))
    return k


def name_of(obj):
    return (obj.get("metadata") or {}).get("name", "")


def pod_spec(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def pod_labels(deployment):
    return (deployment["spec"]["template"].get("metadata") or {}).get("labels") or {}


def images_in(objects):
    spec_images = []
    for o in objects:
        pod = pod_spec(o)
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            spec_images.append(c.get("image", ""))
    return spec_images


class Checker:
    """Collects failures; `checked` counts the objects validated."""

    def __init__(self, kubernetes_version):
        self.version = kubernetes_version
        self.failures = []
        self.checked = 0

    def fail(self, where, message):
        self.failures.append(f"{where}: {message}")

    def check_labels(self, where, labels):
        for key, value in (labels or {}).items():
            prefix, _, name = key.rpartition("/")
            if prefix and not (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)):
                self.fail(where, f"label key {key!r} has an invalid prefix")
            if not LABEL_NAME.match(name):
                self.fail(where, f"label key {key!r} is invalid")
            if not isinstance(value, str) or not LABEL_VALUE.match(value):
                self.fail(where, f"label {key}={value!r}: not a valid label value")

    def check_object(self, where, obj, expect_namespace=None):
        """Schema validation plus the rules the schemas cannot express."""
        kind = obj.get("kind")
        name = name_of(obj)
        where = f"{where} {kind}/{name}"
        try:
            kubernetes_validate.validate(obj, self.version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            self.fail(where, f"schema: {path}: {e.message}")
        except Exception as e:  # unknown kind or version
            self.fail(where, f"schema: {type(e).__name__}: {e}")
        self.checked += 1
        rule = DNS_LABEL if kind in {"Namespace", "Service"} else DNS_SUBDOMAIN
        if not rule.match(name):
            self.fail(where, f"name {name!r} is not a valid {kind} name")
        meta = obj.get("metadata") or {}
        self.check_labels(where, meta.get("labels"))
        namespace = meta.get("namespace")
        if expect_namespace and kind not in CLUSTER_SCOPED and namespace != expect_namespace:
            self.fail(where, f"namespace {namespace!r}, expected {expect_namespace!r}")
        if kind == "Deployment":
            self.check_deployment(where, obj)
        if kind in {"RoleBinding", "ClusterRoleBinding"}:
            for subject in obj.get("subjects", []):
                if (
                    subject.get("kind") == "ServiceAccount"
                    and expect_namespace
                    and subject.get("namespace") != expect_namespace
                ):
                    self.fail(
                        where,
                        f"subject {subject.get('name')} is in namespace "
                        f"{subject.get('namespace')!r}, expected {expect_namespace!r}",
                    )

    def check_deployment(self, where, obj):
        spec = obj["spec"]
        selector = spec["selector"].get("matchLabels", {})
        template_labels = (spec["template"].get("metadata") or {}).get("labels", {})
        self.check_labels(where + " pod template", template_labels)
        for key, value in selector.items():
            if template_labels.get(key) != value:
                self.fail(where, f"selector {key}={value} does not match the pod template")
        for c in spec["template"]["spec"]["containers"]:
            if not DNS_LABEL.match(c["name"]):
                self.fail(where, f"container name {c['name']!r} is invalid")
            for port in c.get("ports", []):
                pname = port.get("name")
                if pname is not None and not (
                    len(pname) <= 15
                    and IANA_SERVICE_NAME.match(pname)
                    and "--" not in pname
                    and re.search("[a-z]", pname)
                ):
                    self.fail(where, f"port name {pname!r} is not an IANA service name")


class Kustomize:
    """`kubectl kustomize`, and overlays of our own in a scratch directory."""

    def __init__(self, kubectl, scratch):
        self.kubectl = kubectl
        self.scratch = scratch
        self.overlays = 0

    def build(self, directory, load_anywhere=False):
        command = [self.kubectl, "kustomize", directory]
        if load_anywhere:
            # Our overlays list files of another kustomization's directory.
            command += ["--load-restrictor", "LoadRestrictionsNone"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(done.stderr.strip() or f"kubectl exited with {done.returncode}")
        return [d for d in yaml.safe_load_all(done.stdout) if d is not None]

    def overlay(self, resources, components):
        """A kustomization of these paths (absolute), built at once."""
        self.overlays += 1
        directory = os.path.join(self.scratch, f"overlay-{self.overlays}")
        os.makedirs(directory)
        # kustomize refuses absolute paths.
        k = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(p, directory) for p in resources],
            "components": [os.path.relpath(p, directory) for p in components],
        }
        with open(os.path.join(directory, "kustomization.yaml"), "w") as f:
            yaml.safe_dump(k, f)
        return directory


class BuildError(Exception):
    pass


@dataclass
class Build:
    name: str
    directory: str  # holds the kustomization.yaml that kubectl builds
    synthetic: bool = False  # an overlay of ours, not part of the tree

    def entries(self, field):
        """A list field of the kustomization, as absolute paths."""
        k = load_kustomization(self.directory)
        return [os.path.normpath(os.path.join(self.directory, p)) for p in k.get(field) or []]


def check_patch_targets(checker, where, directory, objects):
    """kustomize applies a patch to whatever its target matches, even nothing."""
    path = shown(os.path.join(directory, "kustomization.yaml"))
    for patch in load_kustomization(directory).get("patches") or []:
        # Without a target kustomize itself fails a patch that finds nothing.
        target = patch.get("target")
        if target is None:
            continue
        hits = [
            o
            for o in objects
            if o.get("kind") == target.get("kind") and name_of(o) == target.get("name")
        ]
        if len(hits) != 1:
            checker.fail(where, f"{path}: patch target {target} matches {len(hits)} objects")


def check_image_entries(checker, where, directory, objects):
    """kustomize ignores an `images:` entry that names no image it builds."""
    images = images_in(objects)
    for entry in load_kustomization(directory).get("images") or []:
        name = entry.get("newName", entry["name"])
        if entry.get("digest"):
            wanted = {f"{name}@{entry['digest']}"}
        elif entry.get("newTag"):
            wanted = {f"{name}:{entry['newTag']}"}
        else:
            wanted = {i for i in images if i == name or i.startswith((f"{name}:", f"{name}@"))}
        if not wanted & set(images):
            checker.fail(where, f"images entry {entry['name']!r} changes no container's image")


def referenced_files(directory, seen):
    """The kustomization files and manifests a kustomization lists, recursively."""
    path = os.path.normpath(os.path.join(directory, "kustomization.yaml"))
    if path in seen:
        return
    seen.add(path)
    k = load_kustomization(directory)
    entries = (k.get("resources") or []) + (k.get("components") or [])
    entries += [p["path"] for p in k.get("patches") or [] if "path" in p]
    for entry in entries:
        target = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(target):
            referenced_files(target, seen)
        else:
            seen.add(target)


def check_build(checker, kustomize, build, expect_namespace):
    """Builds one kustomization and checks its objects; returns them."""
    where = f"build {build.name}"
    try:
        objects = kustomize.build(build.directory, load_anywhere=build.synthetic)
    except BuildError as e:
        checker.fail(where, str(e))
        return None
    seen = {}
    for o in objects:
        key = (o.get("kind"), name_of(o))
        if key in seen:
            checker.fail(where, f"{key[0]}/{key[1]} appears twice")
        seen[key] = o
        checker.check_object(where, o, expect_namespace=expect_namespace)
    for o in objects:
        account = pod_spec(o).get("serviceAccountName")
        if account and ("ServiceAccount", account) not in seen:
            checker.fail(where, f"{o['kind']}/{name_of(o)} uses missing ServiceAccount {account}")
    check_patch_targets(checker, where, build.directory, objects)
    check_image_entries(checker, where, build.directory, objects)
    # A component patches what its kustomization's resources and the
    # components before it brought, and its own resources: build that much.
    resources, components = build.entries("resources"), build.entries("components")
    for i, component in enumerate(components):
        if i + 1 == len(components):
            # All of them: what the full build holds, as the kustomization's
            # own patches and namespace rename nothing.
            seen_by_component = objects
        else:
            partial = kustomize.overlay(resources, components[: i + 1])
            try:
                seen_by_component = kustomize.build(partial, load_anywhere=True)
            except BuildError as e:
                checker.fail(where, f"up to {shown(component)}: {e}")
                continue
        check_patch_targets(checker, where, component, seen_by_component)
    return objects


def check_tree(checker, kustomize, root, combinations):
    """Every manifest under root, raw and as built; returns the builds' objects by directory."""
    manifests = []
    for directory, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                manifests.append(os.path.normpath(os.path.join(directory, f)))

    builds = []
    for path in sorted(manifests):
        docs = load_all(path)
        if not docs:
            checker.fail(shown(path), "empty manifest")
        for doc in docs:
            if doc.get("kind") == "Kustomization":
                directory = os.path.dirname(path)
                builds.append(Build(shown(directory), directory))
            elif doc.get("kind") not in KUSTOMIZE_KINDS:
                checker.check_object(f"file {shown(path)}", doc)
    for name, (base, components) in combinations.items():
        directory = kustomize.overlay(
            [os.path.join(root, base)], [os.path.join(root, c) for c in components]
        )
        builds.append(Build(name, directory, synthetic=True))

    # Overlays that do not set a namespace get the one the top level sets.
    top_namespace = load_kustomization(root).get("namespace")
    built = {}
    used = set()
    for build in builds:
        built[build.directory] = check_build(checker, kustomize, build, top_namespace)
        referenced_files(build.directory, used)
    for path in manifests:
        if path not in used:
            checker.fail(shown(path), "not part of any kustomization")
    return built


def selects(selector, labels):
    """Whether a label selector (matchLabels only) selects these labels."""
    if not selector or selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def check_isolation(checker, where, default, sessions):
    """The default install admits only the agent to session pods."""
    # Without sessions every check below would pass by saying nothing.
    if not sessions:
        checker.fail(where, "render produced no session Deployment")
    agents = [
        pod_labels(d)
        for d in default
        if d.get("kind") == "Deployment" and name_of(d) == "streamspace-agent"
    ]
    if not agents:
        checker.fail(where, "no streamspace-agent Deployment")
    isolating = [
        p
        for p in default
        if p.get("kind") == "NetworkPolicy"
        and "Ingress" in p["spec"].get("policyTypes", [])
        and all(selects(p["spec"].get("podSelector"), s) for s in sessions)
    ]
    if not isolating:
        checker.fail(
            where, "no NetworkPolicy selects every session pod: sessions could reach each other"
        )
    for policy in isolating:
        for rule in policy["spec"].get("ingress", []):
            # A rule without `from` admits everyone; other peers than a pod
            # selector admit other namespaces or addresses.
            for peer in rule.get("from") or [{}]:
                ok = (
                    set(peer) == {"podSelector"}
                    and all(selects(peer["podSelector"], a) for a in agents)
                    and not any(selects(peer["podSelector"], s) for s in sessions)
                )
                if not ok:
                    checker.fail(
                        where, f"NetworkPolicy/{name_of(policy)} admits more than the agent: {peer}"
                    )
    return isolating


def check_rendered(checker, rendered_dir):
    """What `render` printed; returns the session pods' labels."""
    sessions = []
    for name in sorted(os.listdir(rendered_dir)):
        docs = load_all(os.path.join(rendered_dir, name))
        deployments = [d for d in docs if d.get("kind") == "Deployment"]
        if not deployments:
            checker.fail(name, "render printed no Deployment")
        sessions += [pod_labels(d) for d in deployments]
        for doc in docs:
            checker.check_object(f"render {name}", doc)
    return sessions


def env_of(container):
    """The container's environment as a list of (name, entry), in order."""
    return [(e.get("name"), e) for e in container.get("env") or []]


def probe_path(container, probe):
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


def check_replica_env(checker, where, pod, container):
    """Each replica names its own address, and all share one MFA key."""
    env = env_of(container)
    names = [name for name, _ in env]
    values = dict(env)
    if "STREAMSPACE_DATABASE_URL" not in values:
        checker.fail(where, "replicas without STREAMSPACE_DATABASE_URL do not share a database")
    internal = (values.get("STREAMSPACE_INTERNAL_URL") or {}).get("value", "")
    pod_ip = (((values.get("POD_IP") or {}).get("valueFrom") or {}).get("fieldRef") or {}).get(
        "fieldPath"
    )
    if "$(POD_IP)" not in internal:
        checker.fail(where, f"STREAMSPACE_INTERNAL_URL {internal!r} is not the pod's address")
    elif pod_ip != "status.podIP":
        checker.fail(where, "POD_IP does not come from the downward API's status.podIP")
    elif names.index("POD_IP") > names.index("STREAMSPACE_INTERNAL_URL"):
        # Kubernetes expands $(VAR) only from variables defined before.
        checker.fail(where, "POD_IP is defined after STREAMSPACE_INTERNAL_URL uses it")
    key_file = (values.get("STREAMSPACE_MFA_KEY_FILE") or {}).get("value", "")
    secrets = {v["name"] for v in pod.get("volumes") or [] if "secret" in v and "name" in v}
    mounted = [
        m["mountPath"].rstrip("/") + "/"
        for m in container.get("volumeMounts") or []
        if m.get("name") in secrets
    ]
    if not key_file or not any(key_file.startswith(m) for m in mounted):
        checker.fail(where, "STREAMSPACE_MFA_KEY_FILE is not a file of a mounted Secret")


def check_replica_lifecycle(checker, where, deployment, pod, container):
    """Rolling, drained and probed as a replica of several."""
    strategy = deployment["spec"].get("strategy") or {}
    unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable")
    if strategy.get("type") != "RollingUpdate" or unavailable != 0:
        checker.fail(where, f"strategy {strategy}: a rollout must start a pod before stopping one")
    if probe_path(container, "readinessProbe") != "/readyz":
        checker.fail(where, "the readiness probe is not GET /readyz")
    if probe_path(container, "livenessProbe") != "/healthz":
        checker.fail(where, "the liveness probe is not GET /healthz")
    pause = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
    if pause is None:
        checker.fail(where, "no preStop sleep: load balancers still send to a stopping pod")
        return
    needed = pause.get("seconds", 0) + DRAIN_TIMEOUT_SECONDS + EXIT_MARGIN_SECONDS
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < needed:
        checker.fail(where, f"terminationGracePeriodSeconds {grace} < {needed}: the drain is cut")


def check_replica_placement(checker, where, objects, deployment, replicas):
    """Spread across nodes, and disrupted one at a time."""
    labels = pod_labels(deployment)
    spread = [
        c
        for c in pod_spec(deployment).get("topologySpreadConstraints") or []
        if c.get("topologyKey") == "kubernetes.io/hostname"
        and c.get("maxSkew") == 1
        and selects(c.get("labelSelector"), labels)
    ]
    if not spread:
        checker.fail(where, "no topology spread of its pods across nodes (kubernetes.io/hostname)")
    budgets = [
        o
        for o in objects
        if o.get("kind") == "PodDisruptionBudget" and selects(o["spec"].get("selector"), labels)
    ]
    if not budgets:
        checker.fail(where, "no PodDisruptionBudget selects its pods")
    for budget in budgets:
        spec = budget["spec"]
        if spec.get("maxUnavailable") != 1 and spec.get("minAvailable") != replicas - 1:
            name = name_of(budget)
            checker.fail(where, f"PodDisruptionBudget/{name} does not keep {replicas - 1} up")


def check_replicated(checker, where, objects, replicas):
    """A control plane that runs `replicas` replicas on one database."""
    planes = [o for o in objects if o.get("kind") == "Deployment" and name_of(o) == "streamspace"]
    if len(planes) != 1:
        checker.fail(where, f"{len(planes)} streamspace Deployments, expected 1")
        return
    (deployment,) = planes
    where = f"{where} Deployment/streamspace"
    if deployment["spec"].get("replicas") != replicas:
        checker.fail(where, f"replicas {deployment['spec'].get('replicas')}, expected {replicas}")
    pod = pod_spec(deployment)
    server = [c for c in pod.get("containers", []) if c.get("name") == "server"]
    if not server:
        checker.fail(where, "no container named server")
        return
    check_replica_env(checker, where, pod, server[0])
    check_replica_lifecycle(checker, where, deployment, pod, server[0])
    check_replica_placement(checker, where, objects, deployment, replicas)


# What each replica rule reports on fixtures/replicas-broken, all of it.
REPLICAS_BROKEN_FAILURES = [
    "replicas 1, expected 3",
    "STREAMSPACE_INTERNAL_URL 'http://127.0.0.1:8080' is not the pod's address",
    "STREAMSPACE_MFA_KEY_FILE is not a file of a mounted Secret",
    "strategy {'type': 'Recreate'}: a rollout must start a pod before stopping one",
    "the readiness probe is not GET /readyz",
    "terminationGracePeriodSeconds 30 < 35: the drain is cut",
    "no topology spread of its pods across nodes",
    "PodDisruptionBudget/streamspace does not keep 2 up",
]
# The same Deployment with its address from the downward API, but defined
# too late, and without a preStop pause or a database; no budget at all.
REPLICAS_LATE_FAILURES = [
    "replicas without STREAMSPACE_DATABASE_URL do not share a database",
    "POD_IP is defined after STREAMSPACE_INTERNAL_URL uses it",
    "the liveness probe is not GET /healthz",
    "no preStop sleep",
    "no PodDisruptionBudget selects its pods",
]


def check_replicas_broken(checker, kustomize):
    """Each replica rule fails where it should."""
    for case, expected_failures in [
        ("replicas-broken", REPLICAS_BROKEN_FAILURES),
        ("replicas-broken/late", REPLICAS_LATE_FAILURES),
    ]:
        directory = os.path.join(FIXTURES, case)
        where = f"checks on {shown(directory)}"
        try:
            objects = kustomize.build(directory)
        except BuildError as e:
            checker.fail(where, str(e))
            continue
        probe = Checker(checker.version)
        check_replicated(probe, case, objects, 3)
        for expected in expected_failures:
            if not any(expected in f for f in probe.failures):
                checker.fail(where, f"no failure says {expected!r}")
        for failure in probe.failures:
            if not any(expected in failure for expected in expected_failures):
                checker.fail(where, f"unexpected failure {failure!r}")


def check_image_references(checker, kustomize):
    """kustomize reads `host:port/name` and digests as registries do."""
    directory = os.path.join(FIXTURES, "image-references")
    where = f"build {shown(directory)}"
    try:
        objects = kustomize.build(directory)
    except BuildError as e:
        checker.fail(where, str(e))
        return
    cases = len(load_all(os.path.join(directory, "deployments.yaml")))
    expected = [
        o
        for o in objects
        if "streamspace.test/expected-image" in o["metadata"].get("annotations", {})
    ]
    if len(expected) != cases:
        checker.fail(where, f"{len(expected)} cases built, expected {cases}")
    for o in expected:
        want = o["metadata"]["annotations"]["streamspace.test/expected-image"]
        got = images_in([o])
        if got != [want]:
            checker.fail(where, f"Deployment/{name_of(o)}: image {got}, expected {want!r}")


# What each rule reports on fixtures/broken; every line must appear, and
# nothing else may.
BROKEN_TREE_FAILURES = [
    "empty.yaml: empty manifest",
    "empty.yaml: not part of any kustomization",
    "stray.yaml: not part of any kustomization",
    "Deployment/web: schema: spec.template.spec: Additional properties are not allowed",
    "Deployment/web: label app.kubernetes.io/name='not a label value': not a valid label value",
    "Deployment/web: selector app=web does not match the pod template",
    "Deployment/web: container name 'Web_Server' is invalid",
    "Deployment/web: port name 'a-port-name-longer-than-fifteen' is not an IANA service name",
    "ConfigMap/Not_A_Name: name 'Not_A_Name' is not a valid ConfigMap name",
    # Only the build of sub/ keeps them there; the top level moves them.
    "sub ServiceAccount/worker: namespace 'elsewhere', expected 'broken'",
    "sub RoleBinding/worker: namespace 'elsewhere', expected 'broken'",
    "RoleBinding/worker: subject worker is in namespace 'elsewhere', expected 'broken'",
    "Deployment/web uses missing ServiceAccount missing-account",
    "patch target {'kind': 'Deployment', 'name': 'renamed'} matches 0 objects",
    "patch target {'kind': 'ConfigMap', 'name': 'settings'} matches 0 objects",
    "images entry 'streamspace/nothing' changes no container's image",
    "no streamspace-agent Deployment",
    "no NetworkPolicy selects every session pod",
]


def check_broken_tree(checker, kustomize, sessions):
    """Each rule fails where it should: the checks can fail."""
    root = os.path.join(FIXTURES, "broken")
    probe = Checker(checker.version)
    built = check_tree(probe, kustomize, root, {})
    check_isolation(probe, "broken default", built.get(root) or [], sessions)
    where = f"checks on {shown(root)}"
    for expected in BROKEN_TREE_FAILURES:
        if not any(expected in f for f in probe.failures):
            checker.fail(where, f"no failure says {expected!r}")
    for failure in probe.failures:
        if not any(expected in failure for expected in BROKEN_TREE_FAILURES):
            checker.fail(where, f"unexpected failure {failure!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", required=True, help="kubectl with a current kustomize")
    parser.add_argument("--kubernetes-version", required=True, help="schemas to validate against")
    parser.add_argument("--rendered", required=True, help="directory of `render` outputs")
    parser.add_argument("deploy_dir", help="the kustomize tree, deploy/kubernetes")
    args = parser.parse_args(argv)
    deploy_dir = os.path.normpath(os.path.abspath(args.deploy_dir))

    checker = Checker(args.kubernetes_version)
    with tempfile.TemporaryDirectory(prefix="check-manifests.") as scratch:
        kustomize = Kustomize(args.kubectl, scratch)
        sessions = check_rendered(checker, args.rendered)
        built = check_tree(checker, kustomize, deploy_dir, COMBINATIONS)
        where = f"kubectl kustomize {args.deploy_dir}"
        isolating = check_isolation(checker, where, built.get(deploy_dir) or [], sessions)
        for overlay, replicas in REPLICATED.items():
            directory = os.path.join(deploy_dir, overlay)
            if directory not in built:
                checker.fail(overlay, "no kustomization there to build")
            elif built[directory] is not None:
                check_replicated(checker, f"build {overlay}", built[directory], replicas)
        check_replicas_broken(checker, kustomize)
        check_image_references(checker, kustomize)
        check_broken_tree(checker, kustomize, sessions)

    if isolating and not checker.failures:
        print(
            f"test-kubernetes: NetworkPolicy/{name_of(isolating[0])} in the default install "
            f"admits only the agent to all {len(sessions)} rendered sessions",
            file=sys.stderr,
        )
    if not checker.failures:
        for overlay, replicas in REPLICATED.items():
            print(
                f"test-kubernetes: {overlay} runs {replicas} replicas: PodDisruptionBudget, "
                "readiness /readyz, liveness /healthz, spread across nodes, drain covered",
                file=sys.stderr,
            )
    print(f"test-kubernetes: {checker.checked} objects checked", file=sys.stderr)
    for f in checker.failures:
        print(f"test-kubernetes: FAIL {f}", file=sys.stderr)
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
