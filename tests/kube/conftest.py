"""Fixtures for the Kubernetes tests: one real API server per session (the run's, from
TROUPE_TEST_KUBECONFIG, or one started here by scripts/services/kube.sh), KEDA's real
operator against it (keda.sh) and a real RabbitMQ node (rabbitmq.sh). Each script gets
this process's pid so that its servers stop if the session dies before cleaning up.

A server that cannot start skips the tests that need it, unless TROUPE_REQUIRE_KUBE=1
(CI), which makes that a failure. The first start builds the servers from their Go
modules (minutes); later ones reuse the cached binaries."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubeapi import Kube  # noqa: E402

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"
# A cold build of kube-apiserver or KEDA's operator on two cores takes many minutes.
BUILD_TIMEOUT = 3600


def required():
    return os.environ.get("TROUPE_REQUIRE_KUBE") == "1"


def script(name, *args, env=None, timeout=BUILD_TIMEOUT):
    """Runs scripts/services/NAME.sh ARGS; its last line of output, or a skip (a failure
    when required) saying why it failed."""
    res = subprocess.run(["bash", str(SERVICES / f"{name}.sh"), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        why = f"{name}.sh {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stderr}"
        if required() or args[0] != "start":
            pytest.fail(why)
        pytest.skip(why)
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory):
    given = os.environ.get("TROUPE_TEST_KUBECONFIG")
    if given:
        assert Path(given).is_file(), f"TROUPE_TEST_KUBECONFIG={given} is not a file"
        yield given
        return
    folder = tmp_path_factory.mktemp("kube")
    path = script("kube", "start", folder, os.getpid())
    yield path
    script("kube", "stop", folder)


@pytest.fixture(scope="session")
def kube(kubeconfig):
    return Kube(kubeconfig)


@pytest.fixture(scope="session")
def keda(kubeconfig, tmp_path_factory):
    """KEDA's operator, running; the path of its log."""
    folder = tmp_path_factory.mktemp("keda")
    log = script("keda", "start", folder, kubeconfig, os.getpid())
    yield Path(log)
    script("keda", "stop", folder)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory):
    """A RabbitMQ node's AMQP URL."""
    folder = tmp_path_factory.mktemp("rabbitmq")
    url = script("rabbitmq", "start", folder, env={"RABBITMQ_TEST_OWNER_PID": str(os.getpid())},
                 timeout=150)
    yield url
    script("rabbitmq", "stop", folder, timeout=150)


@pytest.fixture
def namespace(kube):
    """A namespace of this test's own (deleted after; without a controller-manager its
    objects stay in etcd, which dies with the server)."""
    name = "t" + uuid.uuid4().hex[:10]
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
