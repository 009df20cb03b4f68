"""Fixtures: start the Python runtime as a subprocess per handler, reuse it per session."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNTIME_DIR = REPO / "crates" / "troupe-runtime" / "python"
RUNTIME_PY = RUNTIME_DIR / "troupe_runtime.py"
HANDLERS_SRC = HERE / "rt_handlers.py"
# Interpreter that runs the runtime subprocesses; set TROUPE_TEST_PYTHON to check other
# Python versions (the test process itself keeps running on the current one).
RUNTIME_PYTHON = os.environ.get("TROUPE_TEST_PYTHON") or sys.executable

sys.path.insert(0, str(RUNTIME_DIR))
sys.path.insert(0, str(HERE))


class RuntimeProcess:
    """One runtime subprocess with its own socket directory."""

    def __init__(self, handler, handlers_dir, env=None, sock_dir=None):
        self.handler = handler
        self.dir = Path(sock_dir or tempfile.mkdtemp(prefix="troupe-rt-"))
        self.socket = str(self.dir / "asya-runtime.sock")
        self.ready = self.dir / "runtime-ready"
        full_env = dict(os.environ)
        full_env.pop("ASYA_SOCKET_NAME", None)
        full_env.update(
            {
                "ASYA_HANDLER": handler,
                "ASYA_SOCKET_DIR": str(self.dir),
                "PYTHONPATH": str(handlers_dir),
                "ASYA_LOG_LEVEL": "WARNING",
            }
        )
        full_env.update(env or {})
        if "ASYA_SOCKET_NAME" in full_env:
            self.socket = str(self.dir / full_env["ASYA_SOCKET_NAME"])
        self.proc = subprocess.Popen(
            [RUNTIME_PYTHON, str(RUNTIME_PY)],
            env=full_env,
            # The socket dir doubles as working directory when it exists (lets a test
            # check that handlers in the cwd are importable).
            cwd=str(self.dir) if self.dir.is_dir() else tempfile.gettempdir(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                return self
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(
                    "runtime for %s exited with %s:\n%s%s"
                    % (self.handler, self.proc.returncode, out.decode(), err.decode())
                )
            time.sleep(0.01)
        raise TimeoutError("runtime for %s not ready after %ss" % (self.handler, timeout))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_PYDANTIC = {}


def runtime_has_pydantic():
    """Whether the runtime interpreter can import pydantic (cached)."""
    if "ok" not in _PYDANTIC:
        res = subprocess.run([RUNTIME_PYTHON, "-c", "import pydantic.v1"], capture_output=True)
        _PYDANTIC["ok"] = res.returncode == 0
    return _PYDANTIC["ok"]


@pytest.fixture(scope="session")
def handlers_dir(tmp_path_factory):
    """A temp dir holding rt_handlers.py (on the runtimes' PYTHONPATH)."""
    path = tmp_path_factory.mktemp("handlers")
    shutil.copy(HANDLERS_SRC, path / "rt_handlers.py")
    return path


@pytest.fixture(scope="session")
def runtime(handlers_dir):
    """`runtime("rt_handlers.echo")` -> socket path of a shared, running runtime."""
    started = {}

    def get(handler, **env):
        key = (handler, tuple(sorted(env.items())))
        if key not in started:
            started[key] = RuntimeProcess(handler, handlers_dir, env).wait_ready()
        return started[key].socket

    yield get
    for proc in started.values():
        proc.cleanup()


@pytest.fixture
def spawn(handlers_dir):
    """Start a private runtime (for lifecycle tests); stopped at test end."""
    procs = []

    def start(handler, env=None, sock_dir=None):
        proc = RuntimeProcess(handler, handlers_dir, env, sock_dir)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.cleanup()
