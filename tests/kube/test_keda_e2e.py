"""The whole Kubernetes path with real parts: `troupe operator` reconciles an AsyncActor
into its children on a real kube-apiserver, KEDA's real operator scales the rendered
Deployment on a real RabbitMQ queue, and a stand-in kubelet (kubelet.py) runs the pod as
real processes (`troupe sidecar` next to the Python runtime) while replicas > 0.

publish -> KEDA scales 0->1 -> the pod processes -> x-sink stores the result -> after the
cooldown KEDA scales back to 0 and the pod is stopped.

Measured twice: with the external-push trigger (the operator serves KEDA's
`externalscaler.ExternalScaler` and pushes the moment the queue holds a message) and with
KEDA's polling alone, both at the rendered default pollingInterval (30 s). Run with -s to
see the figures; TROUPE_KEDA_SAMPLES sets the samples per mode (median printed).
"""

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubeapi import ApiError
from kubelet import Kubelet, free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from brokers import RabbitSpace, clean_env, envelope, wait_until  # noqa: E402

SAMPLES = int(os.environ.get("TROUPE_KEDA_SAMPLES", "1"))
COOLDOWN = 3
EXCHANGE = "asya"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def troupe_bin():
    given = os.environ.get("TROUPE_BIN")
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "debug" / "troupe")


def install_crd(kube):
    out = subprocess.run([troupe_bin(), "render", "--crd"], capture_output=True, text=True,
                         check=True).stdout
    import yaml

    crd = yaml.safe_load(out)
    kube.apply(f"{CRD}/{crd['metadata']['name']}", crd)

    def established():
        got = kube.get(f"{CRD}/{crd['metadata']['name']}")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (got.get("status") or {}).get("conditions") or [])

    wait_until(established, 30, "the AsyncActor CRD to be established")


def secret(name, data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": data}


class Operator:
    """`troupe operator` watching one namespace, as a local process with a kubeconfig."""

    def __init__(self, kubeconfig, namespace, amqp_url, push, workdir):
        self.log_path = workdir / f"operator-{namespace}.log"
        scaler = f"127.0.0.1:{free_port()}"
        env = clean_env({
            "KUBECONFIG": kubeconfig, "ASYA_TRANSPORT": "rabbitmq",
            "ASYA_RABBITMQ_URL": amqp_url, "ASYA_RABBITMQ_EXCHANGE": EXCHANGE,
            "TROUPE_OPERATOR_GATEWAY": "false",
            # Where KEDA reaches the push scaler; `off` renders no external-push trigger.
            "TROUPE_PUSH_SCALER": scaler if push else "off",
            "RUST_LOG": "info",
        })
        argv = [troupe_bin(), "operator", "--namespace", namespace, "--no-leader-election",
                "--metrics-addr", f"127.0.0.1:{free_port()}"]
        if push:
            argv += ["--scaler-addr", scaler]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def log(self):
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def crew_sink(namespace, amqp_url, workdir):
    """x-sink's Deployment as `troupe render` emits it (the Helm chart ships the same)."""
    mesh = workdir / "troupe.yaml"
    # A mesh needs an actor; only x-sink's files are taken from the output.
    mesh.write_text("actors:\n  - {actor: unused, image: ghcr.io/acme/unused:1, handler: m.h}\n")
    out = workdir / "rendered"
    subprocess.run([troupe_bin(), "render", str(mesh), "--namespace", namespace,
                    "--transport", amqp_url, "-o", str(out)], check=True, capture_output=True)
    import yaml

    return [yaml.safe_load((out / f).read_text())
            for f in ("serviceaccount-x-sink.yaml", "deployment-x-sink.yaml")]


@pytest.mark.parametrize("mode", ["push", "polling"])
def test_publish_scales_from_zero_runs_the_pod_reaches_x_sink_and_scales_back(
        kube, kubeconfig, keda, rabbitmq, namespace, tmp_path, mode):
    install_crd(kube)
    ns = namespace
    core = f"/api/v1/namespaces/{ns}"
    kube.create(f"{core}/secrets", secret("troupe-transport", {"ASYA_RABBITMQ_URL": rabbitmq}))
    kube.create(f"{core}/secrets", secret("troupe-gateway-token", {"token": secrets.token_hex(16)}))
    results = tmp_path / "results"
    results.mkdir()
    for obj in crew_sink(ns, rabbitmq, tmp_path):
        path = {"ServiceAccount": f"{core}/serviceaccounts",
                "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments"}[obj["kind"]]
        kube.create(path, obj)

    op = Operator(kubeconfig, ns, rabbitmq, mode == "push", tmp_path)
    pods = tmp_path / "pods"
    pods.mkdir()
    kubelet = Kubelet(kube, ns, troupe_bin(), pods, pythonpath=[str(HERE / "handlers")],
                      extra_env={"ASYA_PERSISTENCE_MOUNT": str(results)})
    space = RabbitSpace(rabbitmq, ns, EXCHANGE)
    apps = f"/apis/apps/v1/namespaces/{ns}/deployments"
    actors = f"/apis/asya.sh/v1alpha1/namespaces/{ns}/asyncactors"

    def details():
        return (f"operator:\n{op.log()}\nkubelet errors: {kubelet.errors}\n"
                f"pod echo:\n{kubelet.logs('echo')[-4000:]}\nx-sink:\n{kubelet.logs('x-sink')[-3000:]}\n"
                f"keda:\n{keda.read_text(errors='replace')[-3000:]}")

    def replicas():
        try:
            return kube.get(f"{apps}/echo")["spec"].get("replicas")
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    try:
        with kubelet:
            kube.create(actors, {
                "apiVersion": "asya.sh/v1alpha1", "kind": "AsyncActor",
                "metadata": {"name": "echo"},
                "spec": {"actor": "echo", "image": "ghcr.io/acme/echo:1", "handler": "kube_echo.handle",
                         "scaling": {"minReplicaCount": 0, "maxReplicaCount": 1,
                                     "cooldownPeriod": COOLDOWN}},
            })
            try:
                wait_until(lambda: replicas() == 0, 90, "the operator's Deployment, scaled to 0 by KEDA")
                wait_until(lambda: space.exists(space.queue("x-sink")), 60, "x-sink's queue")
            except AssertionError as e:
                raise AssertionError(f"{e}\n{details()}") from None
            so = kube.get(f"/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/echo")
            kinds = [t["type"] for t in so["spec"]["triggers"]]
            assert kinds == (["rabbitmq", "external-push"] if mode == "push" else ["rabbitmq"]), kinds
            polling = so["spec"]["pollingInterval"]

            up, done = [], []
            for i in range(SAMPLES):
                # Measure from zero: the pod that ran before KEDA's first scale-down (a new
                # Deployment starts at 1) must be gone, or it could take the message.
                wait_until(lambda: "echo" not in kubelet.pods, 40, "the echo pod to stop",
                           details=details)
                task = f"k{uuid.uuid4().hex[:10]}"
                space.publish("echo", envelope(task, "echo", payload={"i": i}))
                t0 = time.monotonic()
                wait_until(lambda: replicas() == 1, polling + 30, "KEDA to scale echo to 1",
                           interval=0.02, details=details)
                up.append(time.monotonic() - t0)
                found = wait_until(lambda: next(results.rglob(f"{task}.json"), None), 60,
                                   f"x-sink to store {task}", details=details)
                done.append(time.monotonic() - t0)
                stored = json.loads(found.read_text())
                assert stored["payload"] == {"echo": {"i": i}, "by": "kube_echo"}, stored
                assert found.parent.name == "succeeded", found
                # Idle again: after the cooldown KEDA scales to 0 and the pod is stopped.
                wait_until(lambda: replicas() == 0, polling + COOLDOWN + 60,
                           "KEDA to scale echo back to 0", details=details)
                wait_until(lambda: "echo" not in kubelet.pods, 40, "the echo pod to stop")
            assert kubelet.started_at["echo"] and kubelet.stopped_at["echo"]
            status = kube.get(f"{actors}/echo")["status"]
            wait_until(lambda: kube.get(f"{actors}/echo")["status"].get("phase") == "Napping", 30,
                       "the AsyncActor to be Napping", details=details)
            print(f"\n{mode}: pollingInterval {polling}s, {SAMPLES} sample(s): publish -> replicas=1 "
                  f"median {statistics.median(up):.2f}s {[round(x, 2) for x in up]}, "
                  f"publish -> x-sink median {statistics.median(done):.2f}s "
                  f"{[round(x, 2) for x in done]}; status then {status.get('phase')}")
            assert not kubelet.errors, kubelet.errors
            assert not kubelet.killed, f"containers outlived the grace period: {kubelet.killed}"
            if mode == "push":
                # Push activation does not wait for a poll.
                assert max(up) < 5, up
    finally:
        space.close()
        op.stop()
