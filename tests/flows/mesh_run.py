"""Running the differential cases through a real `troupe up` mesh.

A mesh holds many flows (mesh starts are slow). A flow that does not compile (or whose
routers cannot start) stops `troupe up` with exit 2; it is then left out (its cases fail
with that message) and the mesh started again without it. Tasks are started all at once over the mesh API
(`POST /api/v1/mesh/?actor=FLOW`, what `troupe send FLOW` does) and their results read
from the state folder (`.troupe/succeeded|failed/ID.json`, what `troupe result` prints).
"""

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cases as cases_mod

FRONTEND = Path(__file__).resolve().parents[2] / "crates" / "troupe-flow" / "python" / "flow_frontend.py"


def flows_supported(binary):
    """Whether this troupe binary runs `flows:` (it then has `up --no-native-routers`)."""
    res = subprocess.run([str(binary), "up", "--help"], capture_output=True, text=True, timeout=30)
    return "--no-native-routers" in res.stdout + res.stderr


def frontend_errors(root, flows):
    """{flow name: compile errors} from the front end alone, before any mesh start (one
    `troupe up` per bad flow would cost a mesh start each)."""
    if not FRONTEND.exists():
        return {}

    def check(f):
        out = subprocess.run([sys.executable, str(FRONTEND), f.file, f.func], capture_output=True,
                             text=True, cwd=root, timeout=60)
        try:
            errors = json.loads(out.stdout)["errors"]
        except (ValueError, KeyError):
            return f.name, f"front end failed (exit {out.returncode}): {out.stderr[-2000:]}"
        return f.name, "\n".join(f"{e['file']}:{e['line']}:{e['col']}: {e['message']}" for e in errors)

    with ThreadPoolExecutor(8) as ex:
        return {name: msg for name, msg in ex.map(check, flows) if msg}


def error_of(envelope):
    """{"error": {type, message}} of a failed task's stored envelope (type without module)."""
    status = envelope.get("status") or {}
    err = status.get("error") or {}
    kind = err.get("type") or status.get("reason") or "?"
    message = err.get("message", status.get("message", ""))
    return {"error": {"type": kind.rsplit(".", 1)[-1], "message": message}}


class FlowMesh:
    """`troupe up` over a folder holding `flows` (cases.MeshFlow list)."""

    def __init__(self, mesh, flows, native, start_timeout=300):
        self.mesh = mesh
        self.flows = list(flows)
        self.native = native
        self.start_timeout = start_timeout
        self.compile_errors = {}
        self.started = False

    def start(self):
        """Starts the mesh, leaving out the flows that do not compile; returns
        {flow name: compile error} for those."""
        root = self.mesh.root
        cases_mod.write_mesh(root, self.flows)
        self.compile_errors = frontend_errors(root, self.flows)
        extra = [] if self.native else ["--no-native-routers"]
        self.started = False
        for _ in range(len(self.flows) + 1):
            live = [f for f in self.flows if f.name not in self.compile_errors]
            if not live:
                return self.compile_errors
            cases_mod.write_mesh(root, live)
            self.mesh.log_path.write_text("")
            self.mesh.start(*extra, wait=False)
            code = self._wait_up()
            if code is None:
                self.started = True
                return self.compile_errors
            log = self.mesh.log()
            bad = self._failing_flows(log, live)
            if code != 2 or not bad:
                raise AssertionError(f"troupe up exited with {code}:\n{log[-6000:]}")
            for name in bad:
                self.compile_errors[name] = f"`troupe up` refused to start with it (exit 2):\n{log.strip()[-3000:]}"
        raise AssertionError("troupe up kept refusing to start")

    def _wait_up(self):
        deadline = time.time() + self.start_timeout
        state = self.mesh.state_dir / "mesh.json"
        while time.time() < deadline:
            code = self.mesh.proc.poll()
            if code is not None:
                return code
            try:
                info = json.loads(state.read_text())
            except (FileNotFoundError, ValueError):
                info = None
            if info and info.get("pid") == self.mesh.proc.pid:
                self.mesh.url = info["url"]
                return None
            time.sleep(0.1)
        self.mesh.stop()
        raise AssertionError(f"mesh did not come up within {self.start_timeout}s:\n{self.mesh.log()[-6000:]}")

    @staticmethod
    def _failing_flows(log, live):
        """The flows a failed start names: `flow 'NAME'`, the flow's module, or one of
        its routers (`router_FUNC_…`, `start_FUNC`, …) — each flow's longest match."""
        bad = set(re.findall(r"flow '([^']+)'", log)) & {f.name for f in live}
        routers = re.findall(r"\b(?:start|end|router|fanout|fanin)[_-]([a-z0-9_-]+)", log)
        funcs = sorted(live, key=lambda f: -len(f.func))
        for f in live:
            if f"{f.file}:" in log:
                bad.add(f.name)
        for name in routers:
            name = name.replace("-", "_")
            match = next((f for f in funcs if name == f.func or name.startswith(f.func + "_")), None)
            if match is not None:
                bad.add(match.name)
        return bad

    def run(self, cases, timeout=300):
        """{case key: result} for every case whose flow compiled: `{"ok": payload}`,
        `{"error": {type, message}}`, or `{"missing": ...}` when no result came."""
        todo = [c for c in cases if c.flow_name not in self.compile_errors]
        if not self.started:
            return {}

        def send(case):
            try:
                code, body = self.mesh.http("POST", f"/api/v1/mesh/?actor={case.flow_name}",
                                            {"payload": case.payload})
            except OSError as e:  # a timeout: the mesh did not answer the start
                return case, None, f"start not answered: {e!r}"
            if code not in (200, 201) or not isinstance(body, dict) or "id" not in body:
                return case, None, f"start refused: HTTP {code}: {body}"
            return case, body["id"], None

        results, ids = {}, {}
        with ThreadPoolExecutor(16) as ex:
            for case, task_id, problem in ex.map(send, todo):
                if task_id is None:
                    results[key(case)] = {"missing": problem}
                else:
                    ids[task_id] = case
        deadline = time.time() + timeout
        state = self.mesh.state_dir
        while ids and time.time() < deadline:
            for kind in ("succeeded", "failed"):
                folder = state / kind
                if not folder.exists():
                    continue
                for path in folder.glob("*.json"):
                    case = ids.get(path.stem)
                    if case is None:
                        continue
                    try:
                        envelope = json.loads(path.read_text())
                    except ValueError:
                        continue  # being written
                    results[key(case)] = ({"ok": envelope.get("payload")} if kind == "succeeded"
                                          else error_of(envelope))
                    del ids[path.stem]
            time.sleep(0.2)
        for task_id, case in ids.items():
            code, task = self.mesh.task(task_id)
            results[key(case)] = {"missing": f"no result within {timeout}s; task {task_id}: HTTP {code} {task}"}
        return results


def key(case):
    return (case.file, case.func, case.index)
