#!/usr/bin/env bash
# KEDA's operator for tests, run as a local process against a test API server (kube.sh).
# It is built once from KEDA's Go module (github.com/kedacore/keda/v2 at KEDA_VERSION),
# inside a copy of the module's source so that KEDA's own go.mod and its replace
# directives apply, and cached outside the clone (see go/build.sh).
#
#   keda.sh start DIR KUBECONFIG [OWNER_PID]
#                     install (server-side apply) KEDA's CRDs and the namespace `keda`,
#                     start the operator (leader election off, metrics, probe and gRPC
#                     ports free on 127.0.0.1, gRPC certs made in DIR/certs), wait until
#                     its /readyz is ok; print its log's path (its pid is in
#                     DIR/keda-operator.pid); with OWNER_PID, stop it once that process
#                     is gone
#   keda.sh stop DIR  stop the operator, waiting until it has exited
#   keda.sh crds      print the directory of KEDA's CRD YAML files (fetched if needed)
#   keda.sh build     only build (or find) the operator; print its path
#
# KUBECONFIG must carry its certificates inline (certificate-authority-data,
# client-certificate-data, client-key-data), as kube.sh's does. The operator only sees
# API objects: with no kubelet or controller-manager, scaling shows as the target's
# spec.replicas (and KEDA's HPA object), never as pods.
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/services/go/build.sh
. "$(dirname "${BASH_SOURCE[0]}")/go/build.sh"

# v2.20 is the newest KEDA that builds with Go 1.26 (v2.21 needs Go 1.27); it uses
# client-go 0.35, within the supported skew of kube.sh's 1.36 API server.
KEDA_VERSION=v2.20.2
KEDA_MODULE=github.com/kedacore/keda/v2

# A writable copy of KEDA's module source at KEDA_VERSION, made once.
keda_source() {
    local root src mod tmp
    root="$(go_cache_root)"
    src="$root/src/keda-$KEDA_VERSION"
    if [ ! -f "$src/go.mod" ]; then
        require_go
        mod="$(go mod download -json "$KEDA_MODULE@$KEDA_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
        [ -n "$mod" ] && [ -f "$mod/go.mod" ] || die "could not download $KEDA_MODULE@$KEDA_VERSION"
        mkdir -p "$root/src"
        tmp="$(mktemp -d "$src.XXXXXX")"
        cp -r "$mod/." "$tmp"
        chmod -R u+w "$tmp"
        # -T: fails, rather than nesting, when another start has put its copy there.
        mv -T "$tmp" "$src" 2>/dev/null || rm -rf "$tmp"
    fi
    echo "$src"
}

# Builds KEDA's operator from KEDA_SRC into OUT with KEDA's own go.mod and go.sum.
build_operator() {
    (cd "$KEDA_SRC" && nice -n 10 go build -mod=readonly -buildvcs=false -trimpath -ldflags='-s -w' -o "$1" ./cmd/operator)
}

operator_binary() {
    local key out
    KEDA_SRC="$(keda_source)"
    key="$(go env GOVERSION GOOS GOARCH | sha256sum | cut -c1-16)"
    out="$(go_cache_root)/bin/keda-operator-$KEDA_VERSION-$key/keda-operator"
    go_cached_build "keda-operator $KEDA_VERSION" "$out" build_operator
    echo "$out"
}

crds() {
    echo "$(keda_source)/config/crd/bases"
}

# One field of the (flat, kube.sh-style) kubeconfig.
kubeconfig_field() {
    sed -n "s/^ *$2: *//p" "$1" | head -n 1
}

# Writes the API server's URL to DIR/api/server and its CA and client cert files beside
# it, for curl.
api_credentials() {
    local dir="$1" kubeconfig="$2" field
    mkdir -p "$dir/api"
    kubeconfig_field "$kubeconfig" server >"$dir/api/server"
    [ -s "$dir/api/server" ] || die "no server in $kubeconfig"
    for field in certificate-authority-data:ca.crt client-certificate-data:client.crt client-key-data:client.key; do
        kubeconfig_field "$kubeconfig" "${field%%:*}" | base64 -d >"$dir/api/${field#*:}" ||
            die "$kubeconfig has no inline ${field%%:*}"
        [ -s "$dir/api/${field#*:}" ] || die "$kubeconfig has no inline ${field%%:*}"
    done
}

# curl against the API server of DIR: METHOD PATH [curl options...].
api() {
    local dir="$1" method="$2" path="$3"
    shift 3
    curl -fsS --cacert "$dir/api/ca.crt" --cert "$dir/api/client.crt" --key "$dir/api/client.key" \
        -X "$method" "$(cat "$dir/api/server")$path" "$@"
}

# Server-side apply of the YAML file FILE at PATH (idempotent: repeat starts against
# the same API server just re-apply).
apply() {
    local dir="$1" path="$2" file="$3"
    api "$dir" PATCH "$path?fieldManager=troupe-keda-sh&force=true" \
        -H "Content-Type: application/apply-patch+yaml" --data-binary "@$file" >/dev/null
}

install_crds() {
    local dir="$1" file name
    for file in "$(crds)"/*.yaml; do
        name="$(sed -n 's/^  name: //p' "$file" | head -n 1)"
        [ -n "$name" ] || die "no metadata.name in $file"
        apply "$dir" "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" "$file" ||
            die "could not apply the CRD $name from $file"
    done
    # Established: the groups are served.
    for _ in $(seq 1 300); do
        if api "$dir" GET /apis/keda.sh/v1alpha1 2>/dev/null | grep -q '"scaledobjects"' &&
            api "$dir" GET /apis/eventing.keda.sh/v1alpha1 2>/dev/null | grep -q '"cloudeventsources"'; then
            return 0
        fi
        sleep 0.1
    done
    die "KEDA's CRDs were applied but their API groups are not served"
}

# The certificates of the operator's gRPC metrics service (DIR/certs/{ca.crt,tls.crt,
# tls.key}; KEDA's metrics adapter would be the client, which does not run here).
make_certs() {
    local dir="$1"
    [ -f "$dir/certs/tls.crt" ] && return 0
    mkdir -p "$dir/certs"
    (
        cd "$dir/certs"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/O=KEDAORG/CN=KEDA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj "/CN=keda-operator"
        printf '%s\n' "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth,clientAuth" \
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:keda-operator,DNS:keda-operator.keda.svc" >tls.ext
        openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt \
            -days 3650 -extfile tls.ext
        rm -f tls.csr tls.ext
    ) >"$dir/certs.log" 2>&1 || die_with_log "$dir/certs.log" "could not make the gRPC certificates"
}

# The operator with its probe on PORT, metrics on PORT+1 and gRPC on PORT+2; waits up
# to 60 s for /readyz.
launch() {
    local dir="$1" port="$2" pid
    port_listening $((port + 1)) && return 1
    port_listening $((port + 2)) && return 1
    # WATCH_NAMESPACE empty: all namespaces. POD_NAMESPACE and the cluster object
    # namespace are what the in-cluster pod would read from its service account.
    WATCH_NAMESPACE="" POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda \
        KUBECONFIG="$KUBECONFIG_PATH" \
        "$OPERATOR" --leader-elect=false \
        --health-probe-bind-address "127.0.0.1:$port" \
        --metrics-bind-address "127.0.0.1:$((port + 1))" \
        --metrics-service-bind-address "127.0.0.1:$((port + 2))" \
        --cert-dir "$dir/certs" --ca-dir "$dir/certs" \
        --zap-log-level info </dev/null >>"$dir/keda-operator.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/keda-operator.pid"
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [ "$(curl -fsS "http://127.0.0.1:$port/readyz" 2>/dev/null)" = ok ]; then
            echo "$port" >"$dir/port"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

halt() {
    local pid
    if pid="$(live_pid "$1/keda-operator.pid")"; then
        stop_pid "$pid" 100
    fi
    rm -f "$1/keda-operator.pid"
}

start() {
    local dir="$1" owner="${3:-}"
    [ -f "$2" ] || die "no kubeconfig at $2"
    KUBECONFIG_PATH="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    live_pid "$dir/keda-operator.pid" >/dev/null && die "a KEDA operator already runs in $dir"
    OPERATOR="$(operator_binary)"
    api_credentials "$dir" "$KUBECONFIG_PATH"
    install_crds "$dir"
    printf '%s\n' "apiVersion: v1" "kind: Namespace" "metadata:" "  name: keda" >"$dir/namespace.yaml"
    apply "$dir" /api/v1/namespaces/keda "$dir/namespace.yaml" || die "could not create the namespace keda"
    make_certs "$dir"
    launch_on_free_port port_listening launch halt "$dir" ||
        die_with_log "$dir/keda-operator.log" "could not start KEDA's operator after $TRIES tries"
    [ -n "$owner" ] && watchdog "$dir" "$owner"
    echo "$dir/keda-operator.log"
}

stop() {
    stop_watchdog "$1"
    halt "$1"
}

case "${1:-}" in
start)
    [ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: $0 start DIR KUBECONFIG [OWNER_PID]"
    start "$2" "$3" "${4:-}"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    stop "$2"
    ;;
crds)
    [ $# -eq 1 ] || die "usage: $0 crds"
    crds
    ;;
build)
    [ $# -eq 1 ] || die "usage: $0 build"
    operator_binary
    ;;
*)
    die "usage: $0 start DIR KUBECONFIG [OWNER_PID] | stop DIR | crds | build"
    ;;
esac
