#!/usr/bin/env bash
# A throwaway Kubernetes API server for tests, on loopback only: the real kube-apiserver
# of k8s.io/kubernetes over a real etcd, both built from their Go modules
# (scripts/services/go/{kube-apiserver,etcd}) once and cached outside the clone (see
# go/build.sh). No kubelet, scheduler or controller-manager runs: tests see API objects
# only (a Deployment gets no pods).
#
#   kube.sh start DIR [OWNER_PID]  start etcd (data in DIR/etcd, emptied first) and kube-apiserver on
#                                  free 127.0.0.1 ports, wait until /readyz is ok, print
#                                  the path of DIR/kubeconfig (nothing else); with
#                                  OWNER_PID, stop both once that process is gone
#   kube.sh stop DIR               stop both, waiting until they have exited
#   kube.sh build                  only build (or find) the binaries; print their paths
#
# The kubeconfig authenticates with a client certificate in group system:masters
# (DIR/admin.crt, DIR/admin.key; the server's CA is DIR/ca.crt), so RBAC lets it do
# anything. The ServiceAccount admission plugin is off: without a controller-manager no
# namespace gets its `default` service account, and pods could not be created at all.
# The `kubernetes` service gets no endpoints (a loopback address is not allowed there).
# Logs: DIR/etcd.log, DIR/apiserver.log.
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/services/go/build.sh
. "$(dirname "${BASH_SOURCE[0]}")/go/build.sh"

command -v openssl >/dev/null 2>&1 || die "openssl is needed for the API server's certificates (apt-get install openssl)"
command -v curl >/dev/null 2>&1 || die "curl is needed to probe the API server (apt-get install curl)"

# A CA, the API server's serving certificate, an admin client certificate and the
# service-account signing key pair, all in DIR. RSA keys: every client (kube-rs with
# rustls, Python's ssl, curl) reads them.
make_certs() {
    local dir="$1"
    [ -f "$dir/admin.crt" ] && return 0
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=troupe-test-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
            -subj "/CN=kube-apiserver"
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
            >apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out apiserver.crt -days 3650 -extfile apiserver.ext
        openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
            -subj "/O=system:masters/CN=troupe-admin"
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth" >admin.ext
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out admin.crt -days 3650 -extfile admin.ext
        openssl genrsa -out sa.key 2048
        openssl rsa -in sa.key -pubout -out sa.pub
        rm -f ./*.csr ./*.ext
    ) >"$dir/certs.log" 2>&1 || die_with_log "$dir/certs.log" "could not make the certificates"
}

# Runs COMMAND... in the background as NAME (DIR/NAME.pid, output to DIR/NAME.log).
spawn() {
    local dir="$1" name="$2"
    shift 2
    # Its own stdin/stdout, so whoever reads this script's output is not kept waiting.
    "$@" </dev/null >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# Stops NAME of DIR if it runs: SIGTERM, then SIGKILL after 10 s.
halt() {
    local dir="$1" name="$2" pid
    if pid="$(live_pid "$dir/$name.pid")"; then
        stop_pid "$pid" 100
    fi
    rm -f "$dir/$name.pid"
}

halt_etcd() { halt "$1" etcd; }
# After a failed launch: etcd keeps its peer URL in its data, so a retry on another
# port starts from an empty store.
discard_etcd() {
    halt "$1" etcd
    rm -rf "$1/etcd"
}
halt_apiserver() { halt "$1" apiserver; }

# etcd on client port PORT and peer port PORT+1; fails if either is taken or it exits.
launch_etcd() {
    local dir="$1" port="$2" peer pid
    peer=$((port + 1))
    port_listening "$peer" && return 1
    spawn "$dir" etcd "$ETCD" --name troupe --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "troupe=http://127.0.0.1:$peer" \
        --unsafe-no-fsync --log-level warn
    pid="$(cat "$dir/etcd.pid")"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        if curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'; then
            echo "$port" >"$dir/etcd.port"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# curl against the API server of DIR as the admin.
kube_curl() {
    local dir="$1" port="$2" path="$3"
    curl -fsS --cacert "$dir/ca.crt" --cert "$dir/admin.crt" --key "$dir/admin.key" \
        "https://127.0.0.1:$port$path"
}

# kube-apiserver on secure port PORT; waits up to 120 s for /readyz.
launch_apiserver() {
    local dir="$1" port="$2" pid
    spawn "$dir" apiserver "$APISERVER" \
        --etcd-servers "http://127.0.0.1:$(cat "$dir/etcd.port")" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
        --cert-dir "$dir/apiserver-certs" \
        --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
        --client-ca-file "$dir/ca.crt" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
        --service-cluster-ip-range 10.96.0.0/16 \
        --authorization-mode RBAC \
        --endpoint-reconciler-type none \
        --disable-admission-plugins ServiceAccount \
        --profiling=false
    pid="$(cat "$dir/apiserver.pid")"
    for _ in $(seq 1 1200); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [ "$(kube_curl "$dir" "$port" /readyz 2>/dev/null)" = ok ]; then
            echo "$port" >"$dir/port"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

write_kubeconfig() {
    local dir="$1" port="$2"
    cat >"$dir/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: troupe-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: troupe-admin
  user:
    client-certificate-data: $(base64 -w0 "$dir/admin.crt")
    client-key-data: $(base64 -w0 "$dir/admin.key")
contexts:
- name: troupe-test
  context:
    cluster: troupe-test
    user: troupe-admin
    namespace: default
current-context: troupe-test
EOF
    mv "$dir/kubeconfig.tmp" "$dir/kubeconfig"
}

binaries() {
    APISERVER="$(go_module_binary kube-apiserver)"
    ETCD="$(go_module_binary etcd)"
}

start() {
    local dir="$1" owner="${2:-}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    live_pid "$dir/apiserver.pid" >/dev/null && die "an API server already runs in $dir"
    binaries
    make_certs "$dir"
    # Every start gets an empty store.
    rm -rf "$dir/etcd"
    launch_on_free_port port_listening launch_etcd discard_etcd "$dir" ||
        die_with_log "$dir/etcd.log" "could not start etcd after $TRIES tries"
    if ! launch_on_free_port port_listening launch_apiserver halt_apiserver "$dir"; then
        halt_etcd "$dir"
        die_with_log "$dir/apiserver.log" "could not start kube-apiserver after $TRIES tries"
    fi
    write_kubeconfig "$dir" "$PORT"
    [ -n "$owner" ] && watchdog "$dir" "$owner"
    echo "$dir/kubeconfig"
}

stop() {
    local dir="$1"
    stop_watchdog "$dir"
    halt_apiserver "$dir"
    halt_etcd "$dir"
}

case "${1:-}" in
start)
    [ $# -eq 2 ] || [ $# -eq 3 ] || die "usage: $0 start DIR [OWNER_PID]"
    start "$2" "${3:-}"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    stop "$2"
    ;;
build)
    binaries
    echo "$APISERVER"
    echo "$ETCD"
    ;;
*)
    die "usage: $0 start DIR [OWNER_PID] | stop DIR | build"
    ;;
esac
