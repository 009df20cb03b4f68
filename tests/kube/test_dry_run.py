"""Everything Troupe ships, submitted to the real API server with `dryRun=All`: the Helm
chart (each ci/ value set) and `troupe render` output. Schema validation in helm-check.sh
cannot see what only the server checks: the CRD's CEL rules, defaulting, admission, and
KEDA's CRDs as installed (`keda` fixture). Nothing is stored."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kubeapi import ApiError

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "troupe"
HELM = Path(os.environ.get("TROUPE_GO_CACHE", "/var/cache/troupe/go")) / "helm-v3.21.4" / "helm"

# kind -> (API path prefix, plural, namespaced). A kind missing here fails the test, so a
# new kind in the chart or the renderer is not silently skipped.
RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects", True),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications", True),
    "AsyncActor": ("/apis/asya.sh/v1alpha1", "asyncactors", True),
}


def troupe_bin():
    given = os.environ.get("TROUPE_BIN")
    if given:
        return given
    return str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "troupe")


def dry_run(kube, namespace, docs):
    """Server-side applies each object with dryRun=All; the errors, one line each."""
    errors, kinds = [], set()
    for obj in docs:
        if not obj:
            continue
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind not in RESOURCES:
            errors.append(f"{kind}/{name}: no API path known to this test (add it to RESOURCES)")
            continue
        prefix, plural, namespaced = RESOURCES[kind]
        obj.setdefault("metadata", {})
        if namespaced:
            obj["metadata"]["namespace"] = namespace
            path = f"{prefix}/namespaces/{namespace}/{plural}/{name}"
        else:
            path = f"{prefix}/{plural}/{name}"
        try:
            kube.request("PATCH", f"{path}?fieldManager=troupe-dry-run&force=true&dryRun=All",
                         json.dumps(obj).encode(), "application/apply-patch+yaml")
            kinds.add(kind)
        except ApiError as e:
            errors.append(f"{kind}/{name}: {e}")
    return errors, kinds


def install_crd(kube):
    crd = yaml.safe_load(subprocess.run([troupe_bin(), "render", "--crd"], check=True,
                                        capture_output=True, text=True).stdout)
    kube.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}", crd)


@pytest.mark.parametrize("values", sorted(p.name for p in (CHART / "ci").glob("*.yaml")))
def test_the_chart_is_accepted_by_the_api_server(kube, keda, namespace, values):
    if not HELM.exists():
        if os.environ.get("TROUPE_REQUIRE_KUBE") == "1":
            pytest.fail(f"no helm at {HELM}: scripts/helm-check.sh builds it")
        pytest.skip(f"no helm at {HELM}: run scripts/helm-check.sh once")
    out = subprocess.run([str(HELM), "template", "troupe", str(CHART), "--namespace", namespace,
                          "--kube-version", "1.33.0", "--include-crds", "-f", str(CHART / "ci" / values),
                          # The ServiceMonitor CRD is not installed here (helm-check.sh
                          # validates it against its schema).
                          "--set", "operator.serviceMonitor.enabled=false"],
                         check=True, capture_output=True, text=True).stdout
    docs = list(yaml.safe_load_all(out))
    errors, kinds = dry_run(kube, namespace, docs)
    assert not errors, "\n".join(errors)
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "RoleBinding"} <= kinds, kinds


def test_troupe_render_output_and_asyncactors_are_accepted(kube, keda, namespace, tmp_path):
    install_crd(kube)
    out = tmp_path / "rendered"
    subprocess.run([troupe_bin(), "render", str(REPO / "tests" / "helm" / "mesh" / "troupe.yaml"),
                    "--namespace", namespace, "--transport", "amqp://mq:5672/%2f", "-o", str(out)],
                   check=True, capture_output=True)
    docs = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))
            if p.name != "kustomization.yaml"]
    docs += list(yaml.safe_load_all((REPO / "tests" / "helm" / "asyncactors.yaml").read_text()))
    errors, kinds = dry_run(kube, namespace, docs)
    assert not errors, "\n".join(errors)
    assert {"Deployment", "ScaledObject", "TriggerAuthentication", "AsyncActor"} <= kinds, kinds
    # And the server's own checks do bite: an AsyncActor the CRD's CEL rules refuse.
    bad = {"apiVersion": "asya.sh/v1alpha1", "kind": "AsyncActor", "metadata": {"name": "x"},
           "spec": {"actor": "x", "image": "i:1", "handler": "m.f",
                    "sidecars": [{"name": "asya-sidecar", "image": "evil:1"}],
                    "scaling": {"advanced": {"formula": "queue * 2"}}}}
    errors, _ = dry_run(kube, namespace, [bad])
    assert len(errors) == 1, errors
    assert "container names starting with asya- are reserved" in errors[0], errors
    assert "formula requires scaling.advanced.target" in errors[0], errors


def test_troupe_flow_compile_manifests_are_accepted(kube, keda, namespace, tmp_path):
    """A compiled flow's base/ (AsyncActors of handler actors, Python routers and fan-ins;
    the routers and program ConfigMaps) as `troupe flow compile` writes it."""
    install_crd(kube)
    source = REPO / "crates" / "troupe-flow" / "tests" / "outputs" / "research.py"
    handlers = []
    for actor in ["plan", "search", "review", "write", "apologize", "summarize", "notify"]:
        handlers += ["--handler", f"{actor}=handlers.{actor}"]
    subprocess.run([troupe_bin(), "flow", "compile", str(source), "--image", "ghcr.io/acme/flows:1",
                    "-o", str(tmp_path), *handlers], check=True, capture_output=True)
    base = tmp_path / "research" / "base"
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    docs = [yaml.safe_load((base / name).read_text()) for name in listed]
    errors, kinds = dry_run(kube, namespace, docs)
    assert not errors, "\n".join(errors)
    assert {"AsyncActor", "ConfigMap"} <= kinds, kinds
    roles = {d["metadata"]["labels"]["asya.sh/role"] for d in docs if d["kind"] == "AsyncActor"}
    assert roles == {"actor", "router"}, roles
    assert any(d["spec"].get("crew") == "fan-in" for d in docs if d["kind"] == "AsyncActor"), listed
