"""Strict validation of rendered Kubernetes manifests (scripts/helm-check.sh).

    python3 tests/helm/validate.py --k8s 1.33.0 --crd-dir DIR [--require-crd GROUP/KIND ...] FILE_OR_DIR...

Every document of every YAML file given (folders: their *.yaml, recursively) is checked:

- core kinds with kubernetes-validate's strict schemas for the Kubernetes version given
  (unknown fields are errors);
- custom kinds against the openAPIV3Schema of their CustomResourceDefinition, found in the
  *.yaml files of --crd-dir, made strict the way the API server prunes: an object schema
  that lists properties accepts no others unless it says x-kubernetes-preserve-unknown-fields;
  their metadata against ObjectMeta (strict);
- on every object: the name (RFC 1123), the namespace (RFC 1123 label) and label keys and
  values as the API server checks them.

A kustomization.yaml must list exactly the other files of its folder.
A custom kind whose CRD is not in --crd-dir is reported as skipped, or an error when named by
--require-crd. Exits 1 when any object fails; prints one line per failure and a summary.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
import sys
from collections import Counter

import functools

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

# kubernetes-validate reads and parses its schema files (the definitions file is megabytes)
# for every object; parse each once. It never mutates what it reads.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)

# The API groups whose kinds kubernetes-validate's schemas cover.
CORE_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# RBAC object names may hold ':' (system:...); every other kind here must be a subdomain.
COLON_NAMES = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def strict_schema(schema: dict) -> dict:
    """A structural CRD schema as a JSON Schema that rejects what the API server would prune.

    `nullable: true` becomes a null alternative; int-or-string fields accept both; object
    schemas with `properties` get `additionalProperties: false` unless they preserve unknown
    fields. Kubernetes-only keywords are dropped so the validator never guesses at them."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
            return
        if not isinstance(node, dict):
            return
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        for key in list(node):
            if key.startswith("x-kubernetes-"):
                del node[key]
        if (
            node.get("type") in ("object", ["object", "null"])
            and "properties" in node
            and "additionalProperties" not in node
            and not preserve
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties", "definitions"):
            for sub in node.get(key, {}).values():
                walk(sub)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(node.get(key), (dict, list)):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            walk(node.get(key, []))

    walk(s)
    return s


def load_crds(crd_dir: pathlib.Path | None) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> strict JSON Schema, from every CRD in the folder."""
    out: dict[tuple[str, str, str], dict] = {}
    if crd_dir is None:
        return out
    for path in sorted(crd_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                schema = v.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                out[(spec["group"], v["name"], spec["names"]["kind"])] = strict_schema(schema)
    return out


def documents(paths: list[pathlib.Path]):
    """(file, index, object) for every non-empty document."""
    files: list[pathlib.Path] = []
    for p in paths:
        files.extend(sorted(p.rglob("*.yaml")) if p.is_dir() else [p])
    for f in files:
        for i, doc in enumerate(yaml.safe_load_all(f.read_text())):
            if doc is None:
                continue
            yield f, i, doc


def check_names(doc: dict) -> list[str]:
    """What the API server's name and label validation would refuse."""
    errors = []
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    pattern = None if doc.get("kind") in COLON_NAMES else DNS_SUBDOMAIN
    if not name or len(name) > 253 or (pattern and not pattern.match(name)):
        errors.append(f"metadata.name {name!r} is not a valid name")
    ns = meta.get("namespace")
    if ns is not None and (len(ns) > 63 or not DNS_LABEL.match(ns)):
        errors.append(f"metadata.namespace {ns!r} is not a DNS label")
    label_sets = [("metadata.labels", meta.get("labels") or {})]
    template = (doc.get("spec") or {}).get("template")
    if isinstance(template, dict):
        label_sets.append(
            ("spec.template.metadata.labels", (template.get("metadata") or {}).get("labels") or {})
        )
    for where, labels in label_sets:
        for k, v in labels.items():
            prefix, _, key = k.rpartition("/")
            if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix))) or (
                len(key) > 63 or not LABEL_NAME.match(key)
            ):
                errors.append(f"{where}: key {k!r} is not a valid label key")
            if not isinstance(v, str) or len(v) > 63 or (v and not LABEL_NAME.match(v)):
                errors.append(f"{where}: {k}={v!r} is not a valid label value")
    return errors


def check_kustomization(f: pathlib.Path, doc: dict) -> list[str]:
    """A kustomization.yaml (not an API object): it lists exactly the other files."""
    listed = set(doc.get("resources") or [])
    present = {p.name for p in f.parent.glob("*.yaml") if p.name != f.name}
    errors = [f"resources lists {r}, which is not in {f.parent}" for r in sorted(listed - present)]
    errors += [f"resources leaves out {r}" for r in sorted(present - listed)]
    return errors


def validate(doc: dict, version: str, crds: dict, required: set[str]) -> tuple[str, list[str]]:
    """('core'|'custom'|'skipped', errors) for one object."""
    api_version = doc.get("apiVersion", "")
    kind = doc.get("kind", "")
    group, _, ver = api_version.rpartition("/")
    errors = check_names(doc)
    if group in CORE_GROUPS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(root)"
            errors.append(f"{path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(e.message)
        return "core", errors
    schema = crds.get((group, ver, kind))
    if schema is None:
        if f"{group}/{kind}" in required:
            errors.append(f"no CRD schema for {api_version} {kind} (required)")
            return "custom", errors
        return "skipped", errors
    # The CRD schema leaves metadata open; the API server checks it as ObjectMeta.
    meta_probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
    try:
        kubernetes_validate.validate(meta_probe, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        errors.append(f"metadata.{'.'.join(str(p) for p in e.path)}: {e.message}")
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    body_schema = dict(schema)
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in ("apiVersion", "kind", "metadata")}
    body_schema["properties"] = props
    body_schema["additionalProperties"] = False
    body_schema.pop("required", None)
    body_schema["required"] = [r for r in schema.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
    for e in jsonschema.Draft7Validator(body_schema).iter_errors(body):
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        errors.append(f"{path}: {e.message}")
    return "custom", errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k8s", required=True, help="Kubernetes version of the schemas, e.g. 1.33.0")
    ap.add_argument("--crd-dir", type=pathlib.Path, help="folder of CRD YAMLs for custom kinds")
    ap.add_argument("--require-crd", action="append", default=[], metavar="GROUP/KIND")
    ap.add_argument("--label", default="", help="prefix of the summary line")
    ap.add_argument("paths", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    crds = load_crds(args.crd_dir)
    counts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    failures = 0
    for f, i, doc in documents(args.paths):
        where = f"{f}#{i} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if doc.get("apiVersion", "").startswith("kustomize.config.k8s.io/"):
            outcome, errors = "kustomization", check_kustomization(f, doc)
        else:
            outcome, errors = validate(doc, args.k8s, crds, set(args.require_crd))
        if outcome == "skipped":
            skipped[f"{doc.get('apiVersion')} {doc.get('kind')}"] += 1
        counts[outcome] += 1
        for e in errors:
            failures += 1
            print(f"INVALID {where}: {e}")
    for what, n in sorted(skipped.items()):
        print(f"skipped {n} x {what}: no CRD schema given")
    total = counts["core"] + counts["custom"]
    kustomizations = f", {counts['kustomization']} kustomization.yaml" if counts["kustomization"] else ""
    print(
        f"{args.label}validated {total} objects ({counts['core']} core, {counts['custom']} custom"
        f"{kustomizations}), {failures} errors"
    )
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
