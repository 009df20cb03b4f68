"""Fixtures for end-to-end tests: the real `troupe` binary running real Python handlers.

The binary is taken from $TROUPE_BIN, else target/debug/troupe under the repository
(or $CARGO_TARGET_DIR/debug/troupe). Build it first: `cargo build -p troupe-cli`.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def troupe_binary():
    env = os.environ.get("TROUPE_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "troupe"


@pytest.fixture(scope="session")
def troupe_bin():
    path = troupe_binary()
    if not path.exists():
        pytest.fail(f"troupe binary not found at {path}: run `cargo build -p troupe-cli` first")
    return path


class Mesh:
    """A `troupe up` process on a temporary project folder."""

    def __init__(self, binary, root):
        self.binary = Path(binary)
        self.root = Path(root)
        self.proc = None
        self.log_path = self.root / "troupe-up.log"
        self.url = None
        # The sidecar credential (docs/security.md): fixed here so tests can act as a
        # sidecar (publish raw envelopes, post reports); `troupe up` makes one otherwise.
        self.token = secrets.token_hex(16)
        # Sent as X-API-Key by http() when the mesh has client auth on.
        self.api_key = None

    # -- project files -------------------------------------------------------------
    def write(self, name, text):
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def copy_example(self, folder):
        """Copies an examples/<folder> project into the mesh root."""
        src = REPO / "examples" / folder
        for item in src.iterdir():
            if item.name in (".troupe", "__pycache__"):
                continue
            dst = self.root / item.name
            if item.is_dir():
                shutil.copytree(item, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(item, dst)

    @property
    def state_dir(self):
        return self.root / ".troupe"

    # -- lifecycle -----------------------------------------------------------------
    def start(self, *extra, wait=True, log_level="info", timeout=30):
        self.url = None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "--log-level", log_level, "up", str(self.root), *extra],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, TROUPE_GATEWAY_TOKEN=self.token),
        )
        log.close()
        if wait:
            self.wait_up(timeout)
        return self

    def wait_up(self, timeout=30):
        deadline = time.time() + timeout
        state = self.state_dir / "mesh.json"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"troupe up exited with {self.proc.returncode}:\n{self.log()}")
            if state.exists():
                try:
                    info = json.loads(state.read_text())
                except ValueError:
                    info = None
                if info and info.get("pid") == self.proc.pid:
                    self.url = info["url"]
                    return
            time.sleep(0.05)
        raise AssertionError(f"mesh did not come up within {timeout}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the mesh; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"troupe up did not stop within {timeout}s:\n{self.log()}")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def runtime_pids(self, actor=None):
        """Live runtime processes of this mesh (any generation, orphans of a killed mesh
        included), optionally only those of `actor`."""
        marker = str(self.state_dir).encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if len(argv) < 2 or not argv[1].endswith(b"troupe_runtime.py") or marker not in argv[1]:
                    continue
                if actor is not None:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        env = f.read().split(b"\0")
                    if f"ASYA_ACTOR_NAME={actor}".encode() not in env:
                        continue
            except OSError:
                continue
            pids.append(int(entry))
        return pids

    def kill_runtimes(self):
        """SIGKILL to every runtime process of this mesh (what a killed mesh leaves behind)."""
        for pid in self.runtime_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- CLI -------------------------------------------------------------------------
    def cli(self, *args, input=None, timeout=60, check=False, env=None):
        """Runs `troupe ARGS` in the project folder; returns CompletedProcess (text)."""
        res = subprocess.run(
            [str(self.binary), *args], cwd=self.root, input=input, capture_output=True,
            text=True, timeout=timeout, env=env,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"troupe {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def send(self, actor, payload=None, route=None, timeout=None):
        args = ["send", actor]
        if payload is not None:
            args.append(json.dumps(payload))
        if route:
            args += ["--route", ",".join(route)]
        if timeout:
            args += ["--timeout", timeout]
        return self.cli(*args, check=True).stdout.strip()

    # -- HTTP ------------------------------------------------------------------------
    def http(self, method, path, body=None, raw=None, sidecar=False, headers=None):
        """Returns (status, parsed JSON or text). `sidecar`: present the sidecar token."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"}
        if sidecar:
            hdrs["Authorization"] = f"Bearer {self.token}"
        elif self.api_key:
            hdrs["X-API-Key"] = self.api_key
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
                code = resp.status
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            code = e.code
        try:
            return code, json.loads(text) if text else None
        except ValueError:
            return code, text

    def publish_raw(self, actor, body: bytes):
        """Puts raw bytes on an actor's queue (no gateway record)."""
        code, _ = self.http("POST", f"/troupe/v1/queues/{actor}", raw=body, sidecar=True)
        assert code == 202, code

    def status(self):
        code, body = self.http("GET", "/troupe/v1/status")
        assert code == 200, body
        return {a["actor"]: a for a in body["actors"]}

    def task(self, task_id):
        return self.http("GET", f"/api/v1/mesh/{task_id}")

    # -- results on disk ---------------------------------------------------------------
    def results(self, kind):
        """Parsed envelopes under .troupe/<kind>/ (succeeded, failed, paused)."""
        folder = self.state_dir / kind
        out = {}
        if folder.exists():
            for f in folder.glob("*.json"):
                out[f.stem] = json.loads(f.read_text())
        return out

    def wait_for(self, predicate, timeout=30, interval=0.05, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})\n{self.log()[-4000:]}")

    def wait_result(self, task_id, kind="succeeded", timeout=30):
        path = self.state_dir / kind / f"{task_id}.json"

        def parsed():
            # Result files are written in place: one can exist before its bytes do.
            try:
                return json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                return None

        return self.wait_for(parsed, timeout=timeout, what=f"{kind}/{task_id}.json")


@pytest.fixture
def mesh(troupe_bin, tmp_path):
    m = Mesh(troupe_bin, tmp_path)
    yield m
    if m.proc is not None and m.proc.poll() is None:
        m.proc.send_signal(signal.SIGTERM)
        try:
            m.proc.wait(30)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
