"""The chart's gateway and crew against `troupe render`'s, and the chart's pod security.

    python3 tests/helm/compare.py HELM_OUTPUT.yaml RENDER_DIR
    python3 tests/helm/compare.py --security HELM_OUTPUT.yaml...
    python3 tests/helm/compare.py --security --render RENDER_DIR...

    python3 tests/helm/compare.py --rbac HELM_OUTPUT.yaml...

First form: every object `troupe render` emits for the crew actors, the gateway and the
runtime ConfigMap must be in the chart's output and equal to it, except for what Helm adds:
the release labels (helm.sh/chart, app.kubernetes.io/instance, app.kubernetes.io/version),
app.kubernetes.io/managed-by (Helm rather than troupe); securityContexts must be equal too.
Second form: every pod the chart ships runs non-root with the RuntimeDefault seccomp
profile, and every container has a read-only root filesystem, no privilege escalation and
drops ALL capabilities. With --render (`troupe render`'s output): every pod has the
RuntimeDefault seccomp profile; pods of Troupe containers only (crew, gateway) run non-root;
every Troupe container (asya-sidecar, gateway) has the chart's settings and runs as
65532:65532; the runtime and state proxies (the user's images, which may run as root and
write their filesystem) escalate no privilege and drop ALL capabilities; containers the
user lists (sidecars, initContainers) are theirs. Third form: the operator's RBAC grants
exactly the permissions below, nothing more or less, in a Role or ClusterRole as
operator.watchNamespace says. Exits 1 on any difference.
"""

from __future__ import annotations

import copy
import pathlib
import sys

import yaml

HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
MESH_NAMES = {"x-sink", "x-sump", "x-pause", "x-resume", "troupe-gateway", "troupe-gateway-internal"}


# Gateway variables only the chart sets (its `gateway.env` in the ci values).
CHART_ONLY_GATEWAY_ENV = {"TROUPE_FLOWS_JSON"}


def load(paths: list[pathlib.Path]) -> list[dict]:
    out = []
    for p in paths:
        files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
        for f in files:
            # kustomization.yaml is kustomize's config, not an object.
            out.extend(d for d in yaml.safe_load_all(f.read_text()) if d and "metadata" in d)
    return out


def pods(doc: dict):
    """The pod spec of a workload, if it has one."""
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield doc["spec"]["template"]["spec"]


def normalize(doc: dict) -> dict:
    d = copy.deepcopy(doc)
    metas = [d.get("metadata", {})]
    if d.get("kind") == "Deployment":
        metas.append(d["spec"]["template"].get("metadata", {}))
    for m in metas:
        labels = {k: v for k, v in (m.get("labels") or {}).items() if k not in HELM_LABELS}
        m["labels"] = labels
    # `gateway.env` is the chart's own extra (e.g. a compiled flow's TROUPE_FLOWS_JSON);
    # `troupe render` has no counterpart, so those entries are left out of the comparison.
    if d.get("kind") == "Deployment" and d["metadata"].get("name") == "troupe-gateway":
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["env"] = [e for e in c.get("env", []) if e.get("name") not in CHART_ONLY_GATEWAY_ENV]
    return d


def diff(a, b, path="") -> list[str]:
    """Paths where a (the chart) and b (the renderer) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in a:
                out.append(f"{p}: missing in the chart (renderer: {b[k]!r:.120})")
            elif k not in b:
                out.append(f"{p}: only in the chart ({a[k]!r:.120})")
            else:
                out.extend(diff(a[k], b[k], p))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [e for i, (x, y) in enumerate(zip(a, b)) for e in diff(x, y, f"{path}[{i}]")]
    if a != b:
        return [f"{path}: chart {a!r:.200} != renderer {b!r:.200}"]
    return []


def key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def is_mesh_object(doc: dict) -> bool:
    name = doc["metadata"]["name"]
    return (
        name in MESH_NAMES
        or name.removesuffix("-trigger-auth") in MESH_NAMES
        or (doc["kind"] == "ConfigMap" and name == "asya-runtime")
    )


def compare(helm_file: pathlib.Path, render_dir: pathlib.Path) -> tuple[int, list[str]]:
    chart = {key(d): d for d in load([helm_file]) if d["kind"] != "Secret"}
    rendered = [d for d in load([render_dir]) if is_mesh_object(d)]
    errors = []
    if not rendered:
        errors.append(f"{render_dir}: troupe render emitted no crew or gateway objects")
    for r in rendered:
        k = key(r)
        if k not in chart:
            errors.append(f"{k[0]}/{k[1]}: rendered by troupe render, missing from the chart")
            continue
        errors.extend(f"{k[0]}/{k[1]}: {e}" for e in diff(normalize(chart[k]), normalize(r)))
    wanted = {key(r) for r in rendered}
    for k, d in chart.items():
        if is_mesh_object(d) and k not in wanted:
            errors.append(f"{k[0]}/{k[1]}: in the chart, not rendered by troupe render")
    return len(rendered), errors


def security(docs: list[dict]) -> list[str]:
    errors = []
    for d in docs:
        for pod in pods(d):
            where = f"{d['kind']}/{d['metadata']['name']}"
            psc = pod.get("securityContext") or {}
            if psc.get("runAsNonRoot") is not True:
                errors.append(f"{where}: pod securityContext.runAsNonRoot is not true")
            if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                errors.append(f"{where}: pod seccompProfile is not RuntimeDefault")
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                sc = c.get("securityContext") or {}
                cw = f"{where} container {c['name']}"
                if sc.get("readOnlyRootFilesystem") is not True:
                    errors.append(f"{cw}: readOnlyRootFilesystem is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    errors.append(f"{cw}: allowPrivilegeEscalation is not false")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    errors.append(f"{cw}: capabilities.drop lacks ALL")
    return errors


TROUPE_CONTAINERS = {"asya-sidecar", "gateway"}
USER_IMAGE_CONTAINERS = ("asya-runtime", "asya-state-proxy-")


def render_security(docs: list[dict]) -> list[str]:
    """What `troupe render` must set (see the module doc); pods it renders only."""
    errors = []
    for d in docs:
        for pod in pods(d):
            where = f"{d['kind']}/{d['metadata']['name']}"
            psc = pod.get("securityContext") or {}
            names = [c["name"] for c in pod.get("containers", [])]
            if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                errors.append(f"{where}: pod seccompProfile is not RuntimeDefault")
            if set(names) <= TROUPE_CONTAINERS and psc.get("runAsNonRoot") is not True:
                errors.append(f"{where}: pod securityContext.runAsNonRoot is not true")
            for c in pod.get("containers", []):
                sc = c.get("securityContext") or {}
                cw = f"{where} container {c['name']}"
                troupe = c["name"] in TROUPE_CONTAINERS
                if not troupe and not c["name"].startswith(USER_IMAGE_CONTAINERS):
                    continue
                if sc.get("allowPrivilegeEscalation") is not False:
                    errors.append(f"{cw}: allowPrivilegeEscalation is not false")
                if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                    errors.append(f"{cw}: capabilities.drop is not [ALL]")
                if troupe:
                    for k, v in (("readOnlyRootFilesystem", True), ("runAsNonRoot", True),
                                 ("runAsUser", 65532), ("runAsGroup", 65532)):
                        if sc.get(k) != v:
                            errors.append(f"{cw}: {k} is {sc.get(k)!r}, want {v!r}")
    return errors


_CHILD = ("get", "list", "watch", "create", "patch", "delete")
# (apiGroup, resource) -> verbs: what reconciling an AsyncActor needs, and no more.
OPERATOR_RULES = {
    ("asya.sh", "asyncactors"): {"get", "list", "watch", "patch", "update"},
    ("asya.sh", "asyncactors/status"): {"patch", "update"},
    ("asya.sh", "asyncactors/finalizers"): {"update"},
    ("apps", "deployments"): set(_CHILD),
    ("", "serviceaccounts"): set(_CHILD),
    ("", "configmaps"): set(_CHILD),
    ("", "services"): set(_CHILD),
    ("keda.sh", "scaledobjects"): set(_CHILD),
    ("keda.sh", "triggerauthentications"): set(_CHILD),
    ("", "secrets"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or []:
        if rule.get("resourceNames") or rule.get("nonResourceURLs"):
            out[("?", "resourceNames/nonResourceURLs")] = {"unexpected"}
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                out.setdefault((g, r), set()).update(rule.get("verbs") or [])
    return out


def rbac(doc_sets: dict[str, list[dict]]) -> list[str]:
    """Per helm output file: the operator's roles grant exactly OPERATOR_RULES (ClusterRole,
    or Role in the watched namespace) and LEASE_RULES (Role in the release namespace)."""
    errors = []
    for name, docs in doc_sets.items():
        roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
        binds = {
            (d["kind"], d["metadata"].get("namespace"), d["roleRef"]["name"])
            for d in docs
            if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
            and any(s.get("name") == "troupe-operator" for s in d.get("subjects", []))
        }
        if not roles:
            continue
        found = {"operator": 0, "lease": 0}
        for r in roles:
            g = grants(r)
            which = "lease" if set(g) == set(LEASE_RULES) else "operator"
            want = LEASE_RULES if which == "lease" else OPERATOR_RULES
            found[which] += 1
            where = f"{name}: {r['kind']}/{r['metadata']['name']}"
            if g != want:
                for k in sorted(set(g) | set(want)):
                    if g.get(k) != want.get(k):
                        errors.append(f"{where}: {k[0] or 'core'}/{k[1]} grants {sorted(g.get(k, []))}, want {sorted(want.get(k, []))}")
            bind_kind = "ClusterRoleBinding" if r["kind"] == "ClusterRole" else "RoleBinding"
            if (bind_kind, r["metadata"].get("namespace"), r["metadata"]["name"]) not in binds:
                errors.append(f"{where}: no {bind_kind} gives it to ServiceAccount troupe-operator")
        if found != {"operator": 1, "lease": 1}:
            errors.append(f"{name}: want one operator role and one lease Role, found {found}")
    return errors


def main(argv: list[str]) -> int:
    if argv[:1] == ["--rbac"]:
        sets = {p: load([pathlib.Path(p)]) for p in argv[1:]}
        errors = rbac(sets)
        for e in errors:
            print(f"RBAC {e}")
        print(f"rbac: {len(sets)} renderings checked, {len(errors)} errors")
        return 1 if errors else 0
    if argv[:1] == ["--security"]:
        render = argv[1:2] == ["--render"]
        files = [pathlib.Path(p) for p in argv[2 if render else 1 :]]
        docs = load(files)
        errors = render_security(docs) if render else security(docs)
        n = sum(1 for d in docs for _ in pods(d))
        for e in errors:
            print(f"INSECURE {e}")
        what = "troupe render" if render else "chart"
        print(f"security ({what}): {n} pod specs checked, {len(errors)} errors")
        return 1 if errors or n == 0 else 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n, errors = compare(pathlib.Path(argv[0]), pathlib.Path(argv[1]))
    for e in errors:
        print(f"DIFFERS {e}")
    print(f"compare {argv[0]} with {argv[1]}: {n} objects, {len(errors)} differences")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
