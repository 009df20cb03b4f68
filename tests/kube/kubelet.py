"""A stand-in kubelet for tests against a bare kube-apiserver (no nodes, no controllers).

It watches the Deployments of one namespace and, while a Deployment's `spec.replicas` is
above zero, runs one "pod" of it as local processes: every container of the pod template,
with the env the manifest gives it (plain values, Secret and ConfigMap keys, `envFrom`
Secrets), its emptyDir volumes mapped to temporary directories, the Troupe image's
containers run as the `troupe` binary under test and the runtime container as the Python
runtime of this repository. At zero replicas it stops the pod as a kubelet does: SIGTERM,
the termination grace period, then SIGKILL. It writes the Deployment's status
(replicas/readyReplicas) so that controllers reading it (the operator) see the pod.

Only what Troupe's rendered Deployments use is supported; anything else raises, so a
renderer change that this helper cannot run fails loudly instead of being skipped.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubeapi import ApiError, Kube

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PY = REPO / "crates" / "troupe-runtime" / "python" / "troupe_runtime.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pod:
    """One running replica: its processes, its scratch directory and the spec it ran."""

    generation: int
    workdir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    grace: float = 30.0


class Kubelet:
    """Runs the Deployments of `namespace` as local processes (see the module doc)."""

    def __init__(self, kube: Kube, namespace: str, troupe_bin: str, workdir: Path,
                 pythonpath: list[str] | None = None, extra_env: dict[str, str] | None = None,
                 interval: float = 0.1):
        self.kube = kube
        self.namespace = namespace
        self.troupe_bin = troupe_bin
        self.workdir = Path(workdir)
        self.pythonpath = pythonpath or []
        self.extra_env = extra_env or {}
        self.interval = interval
        self.pods: dict[str, Pod] = {}
        # Times at which a Deployment's pod was started / stopped, for latency figures.
        self.started_at: dict[str, list[float]] = {}
        self.stopped_at: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.last_dir: dict[str, Path] = {}
        # Containers that had to be SIGKILLed after the grace period.
        self.killed: list[str] = []
        self._volumes = tempfile.TemporaryDirectory(prefix="kl", dir="/tmp")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)
        for name in list(self.pods):
            self._stop_pod(name, report=False)
        self._volumes.cleanup()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as e:  # noqa: BLE001 - kept for the test to assert on
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def sync(self):
        """One pass: start, restart or stop pods so they match the Deployments."""
        listing = self.kube.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments")
        seen = set()
        for dep in listing["items"]:
            name = dep["metadata"]["name"]
            seen.add(name)
            want = dep["spec"].get("replicas", 1)
            gen = dep["metadata"].get("generation", 1)
            pod = self.pods.get(name)
            if pod and (want == 0 or pod.generation != gen and self._template_changed(pod, dep)):
                self._stop_pod(name)
                pod = None
            if pod:
                pod.generation = gen
                # A container that exited is a crashed pod: report it not ready.
                ready = all(p.poll() is None for p in pod.procs)
                self._status(dep, 1, 1 if ready else 0)
            elif want > 0:
                self._start_pod(dep)
                self._status(dep, 1, 1)
            else:
                self._status(dep, 0, 0)
        for name in list(self.pods):
            if name not in seen:
                self._stop_pod(name)

    def _template_changed(self, pod: Pod, dep: dict) -> bool:
        return getattr(pod, "template", None) != dep["spec"]["template"]

    def _status(self, dep: dict, replicas: int, ready: int):
        st = dep.get("status") or {}
        gen = dep["metadata"].get("generation", 1)
        if (st.get("replicas", 0), st.get("readyReplicas", 0), st.get("observedGeneration")) == (replicas, ready, gen):
            return
        name = dep["metadata"]["name"]
        self.kube.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}/status",
            {"status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
                        "updatedReplicas": replicas, "observedGeneration": gen}},
            content_type="application/merge-patch+json",
        )

    def _start_pod(self, dep: dict):
        name = dep["metadata"]["name"]
        spec = dep["spec"]["template"]["spec"]
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        # emptyDir volumes become directories shared by the pod's containers, under a
        # short path: the runtime's Unix socket lives there (108-byte limit).
        volumes = Path(tempfile.mkdtemp(prefix="kl-", dir=self._volumes.name))
        empty = {}
        for vol in spec.get("volumes", []):
            if "emptyDir" in vol:
                path = volumes / vol["name"]
                path.mkdir()
                empty[vol["name"]] = str(path)
        pod = Pod(generation=dep["metadata"].get("generation", 1), workdir=workdir,
                  grace=float(spec.get("terminationGracePeriodSeconds", 30)))
        pod.template = dep["spec"]["template"]  # type: ignore[attr-defined]
        for c in spec["containers"]:
            mounts = {m["mountPath"]: empty[m["name"]] for m in c.get("volumeMounts", []) if m["name"] in empty}
            env = self._env(c, mounts)
            argv = self._argv(c)
            log = open(workdir / f"{c['name']}.log", "wb")  # noqa: SIM115 - lives with the process
            pod.procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              cwd=workdir, start_new_session=True))
        self.pods[name] = pod
        self.started_at.setdefault(name, []).append(time.monotonic())

    def _argv(self, c: dict) -> list[str]:
        if "troupe" in c.get("image", "").rsplit("/", 1)[-1].split(":")[0] and not c.get("command"):
            return [self.troupe_bin, *c.get("args", [])]
        cmd = c.get("command") or []
        if len(cmd) == 2 and cmd[0].startswith("python") and cmd[1].endswith("asya_runtime.py"):
            return [sys.executable, str(RUNTIME_PY), *c.get("args", [])]
        raise ValueError(f"container {c['name']}: cannot run image {c.get('image')} command {cmd} locally")

    def _env(self, c: dict, mounts: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "RUST_LOG")}
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                env.update(self._secret(src["secretRef"]["name"], optional=src["secretRef"].get("optional", False)))
            elif "configMapRef" in src:
                env.update(self._config_map(src["configMapRef"]["name"]))
            else:
                raise ValueError(f"container {c['name']}: unsupported envFrom {src}")
        for var in c.get("env", []):
            if "value" in var:
                env[var["name"]] = mounts.get(var["value"], var["value"])
            elif "valueFrom" in var:
                ref = var["valueFrom"]
                if "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    val = self._secret(r["name"], optional=r.get("optional", False)).get(r["key"])
                    if val is None and not r.get("optional", False):
                        raise ValueError(f"container {c['name']}: secret {r['name']} has no key {r['key']}")
                    if val is not None:
                        env[var["name"]] = val
                elif "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    env[var["name"]] = self._config_map(r["name"])[r["key"]]
                elif "fieldRef" in ref:
                    env[var["name"]] = "127.0.0.1"
                else:
                    raise ValueError(f"container {c['name']}: unsupported valueFrom {ref}")
        # Cluster DNS does not exist here: the gateway Service is out of reach, and each
        # pod gets its own metrics port (they all say :8080).
        env.pop("ASYA_GATEWAY_URL", None)
        env["ASYA_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        env.update(self.extra_env)
        return env

    def _secret(self, name: str, optional: bool = False) -> dict[str, str]:
        try:
            s = self.kube.get(f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return {}
            raise
        return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}

    def _config_map(self, name: str) -> dict[str, str]:
        cm = self.kube.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}")
        return cm.get("data") or {}

    def _stop_pod(self, name: str, report: bool = True):
        # The pod stays listed until its processes have exited, as a terminating pod does.
        pod = self.pods[name]
        for p in pod.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + pod.grace
        for p in pod.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # A container that outlives the grace period is a shutdown bug.
                self.killed.append(f"{name}: {' '.join(map(str, p.args[:2]))}")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        del self.pods[name]
        if report:
            self.stopped_at.setdefault(name, []).append(time.monotonic())
        # The pod's directory stays (inside the test's temp dir) for its logs.
        self.last_dir[name] = pod.workdir

    def logs(self, name: str) -> str:
        """The logs of the running or last pod of `name` (all containers), for failure messages."""
        pod = self.pods.get(name)
        d = pod.workdir if pod else self.last_dir.get(name)
        if d is None:
            return ""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(d.glob("*.log")))
