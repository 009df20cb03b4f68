#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/troupe and everything Troupe renders:
#   1. the chart's CRD is exactly `troupe render --crd` (and the golden copy), its runtime
#      file exactly the crate's;
#   2. `helm lint --strict` and `helm template` with the default values and each
#      deploy/helm/troupe/ci/*.yaml (a real Helm, built once from its Go module);
#   3. every object rendered by Helm and by `troupe render` (each transport) validated
#      strictly: core kinds by kubernetes-validate --strict, KEDA's kinds by KEDA's own CRD
#      schemas (from its Go module), the ServiceMonitor by the CRD controller-gen makes from
#      prometheus-operator's Go types, the AsyncActors of tests/helm by our CRD;
#   4. the chart's gateway and crew equal `troupe render`'s for the same transport
#      (securityContexts included), every pod the chart ships is locked down (non-root,
#      read-only root, no capabilities), every pod `troupe render` emits too (its user
#      runtime: no privilege escalation, no capabilities) and the operator's RBAC grants
#      exactly what it needs.
#
# Builds go to /var/cache/troupe/go (TROUPE_GO_CACHE) once; later runs reuse them. The
# troupe binary is built with cargo into $CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.21.4
# The KEDA release scripts/services/keda.sh runs, so the schemas match the KEDA under test.
KEDA_VERSION=v2.20.2
# k8s-openapi's feature (Cargo.toml: v1_33): the oldest cluster Troupe supports.
K8S_VERSION=1.33.0
CHART=deploy/helm/troupe
NAMESPACE=prod

die() {
    echo "helm-check: $*" >&2
    exit 1
}

cache="${TROUPE_GO_CACHE:-/var/cache/troupe/go}"
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache="$PWD/target/go"
mkdir -p "$cache"

# Helm from its Go module (scripts/services/go/helm pins it with go.sum), once.
HELM="$cache/helm-$HELM_VERSION/helm"
if [ ! -x "$HELM" ]; then
    command -v go >/dev/null || die "go is needed once to build helm $HELM_VERSION"
    echo "helm-check: building helm $HELM_VERSION (once, into $HELM)"
    mkdir -p "$(dirname "$HELM")"
    start=$SECONDS
    (cd scripts/services/go/helm && nice -n 10 go build -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        -o "$HELM.tmp" helm.sh/helm/v3/cmd/helm) || die "building helm failed"
    mv "$HELM.tmp" "$HELM"
    echo "helm-check: built helm in $((SECONDS - start)) s"
fi

# KEDA's CRDs from its module source (config/crd/bases), once.
KEDA_CRDS="$cache/keda-crds-$KEDA_VERSION"
if [ ! -f "$KEDA_CRDS/keda.sh_scaledobjects.yaml" ]; then
    command -v go >/dev/null || die "go is needed once to fetch KEDA $KEDA_VERSION's CRDs"
    dir="$(cd scripts/services/go/helm && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [ -d "$dir/config/crd/bases" ] || die "KEDA $KEDA_VERSION's module has no config/crd/bases"
    mkdir -p "$KEDA_CRDS.tmp"
    cp "$dir"/config/crd/bases/keda.sh_*.yaml "$KEDA_CRDS.tmp/"
    chmod u+w "$KEDA_CRDS.tmp"/*
    rm -rf "$KEDA_CRDS"
    mv "$KEDA_CRDS.tmp" "$KEDA_CRDS"
fi

# The ServiceMonitor CRD, generated once by controller-gen from prometheus-operator's Go
# types (its CRD YAMLs are in its root module, which the Go proxy does not serve).
PROM_OPERATOR_VERSION=v0.95.2
CONTROLLER_GEN_VERSION=v0.23.0
PROM_CRDS="$cache/prometheus-operator-crds-$PROM_OPERATOR_VERSION"
if [ ! -f "$PROM_CRDS/monitoring.coreos.com_servicemonitors.yaml" ]; then
    command -v go >/dev/null || die "go is needed once to generate the ServiceMonitor CRD"
    gen="$cache/controller-gen-$CONTROLLER_GEN_VERSION/controller-gen"
    if [ ! -x "$gen" ]; then
        echo "helm-check: building controller-gen $CONTROLLER_GEN_VERSION (once, into $gen)"
        mkdir -p "$(dirname "$gen")"
        (cd scripts/services/go/helm/crdgen && nice -n 10 go build -trimpath -ldflags "-s -w" \
            -o "$gen.tmp" sigs.k8s.io/controller-tools/cmd/controller-gen) || die "building controller-gen failed"
        mv "$gen.tmp" "$gen"
    fi
    rm -rf "$PROM_CRDS.tmp"
    (cd scripts/services/go/helm/crdgen && "$gen" crd:crdVersions=v1 \
        paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
        output:crd:dir="$PROM_CRDS.tmp") || die "controller-gen could not generate the ServiceMonitor CRD"
    rm -rf "$PROM_CRDS"
    mv "$PROM_CRDS.tmp" "$PROM_CRDS"
fi

# Always through cargo (a no-op when fresh): a stale binary would compare an old renderer.
cargo build -q -p troupe-cli --locked
TROUPE_BIN="${CARGO_TARGET_DIR:-target}/debug/troupe"
[ -x "$TROUPE_BIN" ] || die "no troupe binary at $TROUPE_BIN"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Helm keeps its config and cache under these; nothing of the user's is read or written.
export HELM_CONFIG_HOME="$work/helm-home/config" HELM_CACHE_HOME="$work/helm-home/cache" \
    HELM_DATA_HOME="$work/helm-home/data"

echo "helm-check: $("$HELM" version --short), KEDA $KEDA_VERSION schemas, Kubernetes $K8S_VERSION schemas"

# 1. The CRD and runtime file the chart ships are the ones Troupe has.
"$TROUPE_BIN" render --crd >"$work/crd.yaml"
diff -u "$work/crd.yaml" "$CHART/crds/asyncactors.asya.sh.yaml" \
    || die "$CHART/crds/asyncactors.asya.sh.yaml differs from \`troupe render --crd\`: copy it over"
diff -u "$work/crd.yaml" crates/troupe-resource/tests/golden/crd.yaml \
    || die "crates/troupe-resource/tests/golden/crd.yaml differs from \`troupe render --crd\`"
cmp -s crates/troupe-runtime/python/troupe_runtime.py "$CHART/files/asya_runtime.py" \
    || die "$CHART/files/asya_runtime.py differs from crates/troupe-runtime/python/troupe_runtime.py: copy it over"

# 2. Lint and template with the defaults and every ci/ value file.
mkdir -p "$work/helm"
cases=(default)
for f in "$CHART"/ci/*.yaml; do cases+=("$(basename "$f" .yaml)"); done
for c in "${cases[@]}"; do
    values=()
    [ "$c" = default ] || values=(-f "$CHART/ci/$c.yaml")
    "$HELM" lint --strict "$CHART" "${values[@]}" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION" >"$work/lint.log" 2>&1 \
        || { cat "$work/lint.log" >&2; die "helm lint --strict failed for $c"; }
    "$HELM" template troupe "$CHART" "${values[@]}" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION" --include-crds \
        >"$work/helm/$c.yaml" || die "helm template failed for $c"
done
echo "helm-check: helm lint --strict and helm template pass for ${cases[*]}"

# Values the schema must refuse, so it is known to be strict: an unknown key, an unknown
# transport, a transport without its required setting.
for bad in operator.replica=2 transport.kind=kafka transport.kind=sqs transport.kind=nats \
    transport.kind=redis transport.kind=pubsub crew.resumeMergeMode=merge; do
    if "$HELM" template troupe "$CHART" --kube-version "$K8S_VERSION" --set "$bad" >/dev/null 2>&1; then
        die "values.schema.json accepted --set $bad"
    fi
done

# 3. troupe render for every transport (the mesh of tests/helm/mesh).
declare -A urls=(
    [rabbitmq]='amqp://mq:5672/%2f?exchange=events'
    [sqs]='sqs://eu-west-1?endpoint=http://moto:5000'
    [pubsub]='pubsub://proj?endpoint=pubsub:8085'
    [nats]='nats://nats.messaging:4222'
    [redis]='redis://:pw@redis.messaging:6379/0'
)
for t in rabbitmq sqs pubsub nats redis; do
    "$TROUPE_BIN" render tests/helm/mesh --namespace "$NAMESPACE" --transport "${urls[$t]}" \
        -o "$work/render/$t" 2>"$work/render-$t.log" \
        || { cat "$work/render-$t.log" >&2; die "troupe render failed for $t"; }
done
# SQS through IRSA (no endpoint): pod identity instead of keys.
"$TROUPE_BIN" render tests/helm/mesh --namespace "$NAMESPACE" --transport 'sqs://eu-west-1' \
    -o "$work/render/sqs-irsa" 2>/dev/null || die "troupe render failed for sqs://eu-west-1"

# Strict validation; the validator must first refuse objects with an unknown field.
mkdir -p "$work/bad"
cat >"$work/bad/bad.yaml" <<'EOF'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: bad, namespace: prod}
spec: {scaleTargetRef: {name: bad}, triggers: [{type: rabbitmq, metadata: {}}], minReplicas: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: prod}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i, imagePullPolice: Always}]}
EOF
# KEDA's CRDs, the ServiceMonitor's and ours (so AsyncActors are checked too).
mkdir -p "$work/crds"
cp "$KEDA_CRDS"/*.yaml "$PROM_CRDS/monitoring.coreos.com_servicemonitors.yaml" "$work/crd.yaml" "$work/crds/"
validate=(python3 tests/helm/validate.py --k8s "$K8S_VERSION" --crd-dir "$work/crds"
    --require-crd keda.sh/ScaledObject --require-crd keda.sh/TriggerAuthentication
    --require-crd monitoring.coreos.com/ServiceMonitor)
if "${validate[@]}" "$work/bad" >"$work/bad.log"; then
    cat "$work/bad.log" >&2
    die "the validator accepted objects with unknown fields"
fi
[ "$(grep -c '^INVALID' "$work/bad.log")" = 2 ] || { cat "$work/bad.log" >&2; die "the validator missed an unknown field"; }

"${validate[@]}" --label "helm: " "$work/helm"
"${validate[@]}" --label "troupe render: " "$work/render"
"${validate[@]}" --require-crd asya.sh/AsyncActor --label "AsyncActors: " tests/helm/asyncactors.yaml

# 4. The chart's gateway and crew are the renderer's; its pods are locked down.
for t in rabbitmq sqs pubsub nats redis; do
    python3 tests/helm/compare.py "$work/helm/$t-values.yaml" "$work/render/$t"
done
python3 tests/helm/compare.py --security "$work/helm"/*.yaml
python3 tests/helm/compare.py --rbac "$work/helm"/*.yaml
# troupe render's pods: Troupe containers locked down as the chart's, the user's runtime
# without privilege escalation or capabilities (docs/decisions.md).
python3 tests/helm/compare.py --security --render "$work/render"/*/
echo "helm-check: ok"
