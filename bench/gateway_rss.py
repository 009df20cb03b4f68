#!/usr/bin/env python3
"""RSS of `troupe up` under hostile maximum-size requests (issue 9, item 3).

For each run a fresh `troupe up` starts on a one-actor project; the script reads its
idle RSS, then sends CONCURRENCY requests at once and reads the process's peak RSS
(VmHWM) once every answer is in. Two scenarios:

  events  POST /api/v1/mesh/{id}/events with a 29 MB body `[0,0,0,...]`
  create  POST /api/v1/mesh/?actor=ok   with {"payload": [0,0,0,...]} (29 MB)

Prints idle RSS, peak RSS and peak minus idle per run and the median of the runs.

    python3 bench/gateway_rss.py --bin $CARGO_TARGET_DIR/debug/troupe [--runs 3] [--concurrency 20]

The mesh gets an address-space cap (--max-as-gib, default 12) so a build that blows up
aborts instead of pushing the machine into the OOM killer.
"""

import argparse
import http.client
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BODY_BYTES = 29_000_000

MESH = """actors:
  - actor: ok
    handler: h.ok
"""

HANDLERS = """def ok(p):
    return {"n": len(p) if hasattr(p, "__len__") else 0}
"""


def zeros(n):
    return b"[" + b"0," * (n // 2 - 1) + b"0]"


def rss_kib(pid, field):
    """The field in KiB; None once the process is gone (a zombie has no memory lines)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Mesh:
    def __init__(self, binary, max_as_gib):
        self.dir = tempfile.TemporaryDirectory(prefix="troupe-rss-")
        root = Path(self.dir.name)
        (root / "troupe.yaml").write_text(MESH)
        (root / "h.py").write_text(HANDLERS)
        self.token = secrets.token_hex(16)
        cap = max_as_gib << 30

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        self.log = open(root / "up.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "--log-level", "warn", "up", str(root)], cwd=root,
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limit,
            env=dict(os.environ, TROUPE_GATEWAY_TOKEN=self.token),
        )
        state = root / ".troupe" / "mesh.json"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"troupe up exited {self.proc.returncode}: {(root / 'up.log').read_text()}")
            if state.exists():
                try:
                    info = json.loads(state.read_text())
                except ValueError:
                    info = None
                if info and info.get("pid") == self.proc.pid:
                    self.host, port = info["url"].removeprefix("http://").rsplit(":", 1)
                    self.port = int(port)
                    return
            time.sleep(0.05)
        raise RuntimeError("troupe up did not come up")

    def request(self, method, path, body=None, sidecar=False):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        headers = {"Content-Type": "application/json"}
        if sidecar:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:
            return None, str(e).encode()
        finally:
            conn.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()


def one_run(binary, scenario, concurrency, max_as_gib, body):
    mesh = Mesh(binary, max_as_gib)
    try:
        code, text = mesh.request("POST", "/api/v1/mesh/?actor=ok", b'{"payload": {"n": 1}}')
        assert code == 201, (code, text)
        task = json.loads(text)["id"]
        time.sleep(2)  # let start-up allocations settle
        idle = rss_kib(mesh.proc.pid, "VmRSS")
        if scenario == "events":
            path, payload, sidecar = f"/api/v1/mesh/{task}/events", body, True
        else:
            path, payload, sidecar = "/api/v1/mesh/?actor=ok", b'{"payload":' + body + b"}", False
        codes = []
        barrier = threading.Barrier(concurrency)

        def send():
            barrier.wait()
            codes.append(mesh.request("POST", path, payload, sidecar=sidecar)[0])

        threads = [threading.Thread(target=send) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = rss_kib(mesh.proc.pid, "VmHWM") if mesh.proc.poll() is None else None
        if peak is None:
            log = (Path(mesh.dir.name) / "up.log").read_text(errors="replace")
            print("troupe up died; the end of its log:\n" + log[-1500:], flush=True)
        return idle, peak, codes, peak is not None
    finally:
        mesh.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="troupe binary")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--max-as-gib", type=int, default=12)
    ap.add_argument("--scenario", choices=["events", "create", "both"], default="both")
    args = ap.parse_args()
    body = zeros(BODY_BYTES)
    scenarios = ["events", "create"] if args.scenario == "both" else [args.scenario]
    for scenario in scenarios:
        deltas = []
        for i in range(args.runs):
            idle, peak, codes, alive = one_run(args.bin, scenario, args.concurrency, args.max_as_gib, body)
            summary = {c: codes.count(c) for c in set(codes)}
            if peak is None:
                print(f"{scenario} run {i + 1}: idle {idle / 1024:.0f} MB, troupe up DIED (answers {summary})")
                continue
            deltas.append((peak - idle) / 1024)
            print(f"{scenario} run {i + 1}: idle {idle / 1024:.0f} MB, peak {peak / 1024:.0f} MB, "
                  f"+{(peak - idle) / 1024:.0f} MB, answers {summary}", flush=True)
        if deltas:
            print(f"{scenario}: {args.concurrency} concurrent {BODY_BYTES / 1e6:.0f} MB requests: "
                  f"median +{statistics.median(deltas):.0f} MB RSS over {len(deltas)} runs", flush=True)


if __name__ == "__main__":
    sys.exit(main())
