#!/usr/bin/env bash
# Runs every test of the project: Rust (fmt, clippy, unit + integration), the Python
# runtime's tests, and the end-to-end tests that drive the real `troupe` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep the cargo target dir outside the clone so repeat runs are incremental.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if mkdir -p /var/cache/troupe/target 2>/dev/null && [ -w /var/cache/troupe/target ]; then
        export CARGO_TARGET_DIR=/var/cache/troupe/target
    else
        export CARGO_TARGET_DIR="$PWD/target"
    fi
fi
export TROUPE_BIN="$CARGO_TARGET_DIR/debug/troupe"

# The transport tests start their own brokers (scripts/services/*.sh); install the servers
# once if any is missing, then stop whatever system services the packages started so
# that only the test harnesses run brokers.
if ! command -v rabbitmq-server >/dev/null || ! command -v redis-server >/dev/null \
    || ! command -v nats-server >/dev/null; then
    echo "== installing broker servers for the transport tests"
    [ "$(id -u)" = 0 ] || { echo "installing rabbitmq-server, redis-server and nats-server needs root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rabbitmq-server redis-server nats-server >/dev/null
    for svc in rabbitmq-server redis-server nats-server; do
        service "$svc" stop >/dev/null 2>&1 || true
    done
fi

echo "== python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== helm chart and rendered manifests"
scripts/helm-check.sh

# The PostgreSQL task store and replica tests need a real server; TROUPE_REQUIRE_POSTGRES
# makes them fail rather than skip if it is missing.
echo "== postgres (for the gateway store and replica tests)"
pg_dir="$(mktemp -d)"
kube_dir="$(mktemp -d)"
stop_services() {
    scripts/services/kube.sh stop "$kube_dir" >/dev/null 2>&1 || true
    rm -rf "$kube_dir"
    scripts/services/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_services EXIT
TROUPE_TEST_POSTGRES_URL="$(scripts/services/postgres.sh start "$pg_dir")"
export TROUPE_TEST_POSTGRES_URL TROUPE_REQUIRE_POSTGRES=1
# Broker tests start their own servers; in CI a missing server is a failure, not a skip.
export TROUPE_REQUIRE_REDIS=1 TROUPE_REQUIRE_NATS=1 TROUPE_REQUIRE_SQS=1 TROUPE_REQUIRE_PUBSUB=1
echo "postgres at $TROUPE_TEST_POSTGRES_URL"

# One real API server (kube-apiserver + etcd, built once from their Go modules and cached
# under /var/cache/troupe/go) for every Kubernetes test of the run; TROUPE_REQUIRE_KUBE
# makes those tests fail rather than skip without it.
echo "== kube-apiserver (for the Kubernetes tests)"
TROUPE_TEST_KUBECONFIG="$(scripts/services/kube.sh start "$kube_dir")"
export TROUPE_TEST_KUBECONFIG TROUPE_REQUIRE_KUBE=1
echo "kubeconfig at $TROUPE_TEST_KUBECONFIG"

echo "== cargo test"
cargo test --workspace --locked --no-fail-fast

# Each fuzz target for 20 s from its seed corpus (the instrumented build is cached in
# "$CARGO_TARGET_DIR-fuzz"); a crash fails the run.
echo "== fuzzing (20 s per target)"
scripts/fuzz.sh 20

echo "== build troupe"
cargo build -p troupe-cli --locked

# Two runs: each suite has its own conftest module.
echo "== python runtime tests"
python3 -m pytest tests/python -q -p no:cacheprovider

echo "== end-to-end tests (real binary, real Python)"
python3 -m pytest tests/e2e -q -p no:cacheprovider

# Every corpus and generated flow as plain Python and through `troupe up`, with native
# routers on and off (tests/flows/README.md).
echo "== differential flow tests"
python3 -m pytest tests/flows -q -p no:cacheprovider

# KEDA's real operator (built once from its Go module, scripts/services/keda.sh) against
# the run's API server, scaling on a real RabbitMQ queue.
echo "== kubernetes tests (real API server, real KEDA)"
python3 -m pytest tests/kube -q -p no:cacheprovider

# Both images, built daemonless (buildah over a debootstrap root filesystem cached in
# /var/cache/troupe/images), each started once: the runtime reports ready, the troupe
# image runs `troupe --version` (docs/decisions.md "Kubernetes: images and shutdown").
echo "== container images"
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "building the images needs root to install buildah and debootstrap" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi
scripts/images.sh "$TROUPE_BIN"
