"""The fan-in aggregator (protocol.md §14.4, docs/decisions.md "Fan-in durability") end to
end: a Python router fans out Asya-style (N + 1 frames carrying `x-asya-fan-in`), workers
handle the slices, a `crew: fan-in` actor merges them and the merged envelope continues as
the origin task. Under `kill -9` of the whole mesh every origin completes once, with its
complete, ordered results; an origin whose slice never arrives fails with the timeout.
"""

import http.client
import json
import os
import signal
import socket
import time
from urllib.parse import urlparse

import pytest

HANDLERS = """
    import json, os, time

    HERE = os.path.dirname(os.path.abspath(__file__))

    def _log(name, line):
        with open(os.path.join(HERE, name), "a") as f:
            f.write(line + "\\n")

    def fanout(p):
        # Asya's compiled fan-out router (platform.md §4.2): slice 0 = p, slice k = the
        # k-th call's argument; every slice names the fan-in and the same continuation.
        origin = yield "GET", ".id"
        n = p["n"]

        def header(k):
            return {"actor": "fanin-x", "origin_id": origin, "slice_index": k,
                    "slice_count": n + 1, "aggregation_key": "/out/results"}

        yield "SET", ".route.next", ["fanin-x", "finish"]
        yield "SET", ".headers.x-asya-fan-in", header(0)
        yield p
        for k in range(1, n + 1):
            yield "SET", ".route.next", ["worker", "fanin-x", "finish"]
            yield "SET", ".headers.x-asya-fan-in", header(k)
            yield {"i": p["i"], "k": k, "drop": p.get("drop")}

    def work(p):
        time.sleep(0.003)
        if p.get("drop") == p["k"]:
            return None  # zero frames: this slice never reaches the fan-in
        return {"k": p["k"], "sq": p["k"] * p["k"]}

    def finish(p):
        origin = yield "GET", ".id"
        _log("finish.log", origin)
        p["done"] = True
        yield p
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mesh_file(timeout):
    # A fixed port: envelopes carry the gateway URL they were created under
    # (x-asya-gateway-url), so a mesh restarted on another port could not report them.
    return f"""
        gateway: {{listen: "127.0.0.1:{free_port()}"}}
        actors:
          - actor: fanout
            handler: h.fanout
            scaling: {{maxReplicaCount: 2}}
          - actor: worker
            handler: h.work
            scaling: {{maxReplicaCount: 3}}
          - actor: finish
            handler: h.finish
            scaling: {{maxReplicaCount: 2}}
          - actor: fanin-x
            crew: fan-in
            fanIn: {{timeout: {timeout}}}
    """


def kill_all(mesh):
    """kill -9 of `troupe up` and of every runtime it started."""
    pids = mesh.runtime_pids()
    mesh.kill9()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def fmesh(mesh):
    yield mesh
    mesh.stop()
    mesh.kill_runtimes()


def create_all(mesh, payloads):
    """Creates one task per payload at `fanout` through the mesh API; returns the ids."""
    url = urlparse(mesh.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    ids = []
    for p in payloads:
        body = json.dumps({"actor": "fanout", "payload": p}).encode()
        conn.request("POST", "/troupe/v1/tasks", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        reply = json.loads(resp.read())
        assert resp.status == 201, reply
        ids.append(reply["id"])
    conn.close()
    return ids


def expected(p):
    return {**p, "out": {"results": [{"k": k, "sq": k * k} for k in range(1, p["n"] + 1)]},
            "done": True}


def test_every_origin_completes_once_under_kill_9_of_the_mesh(fmesh):
    total = 300
    fmesh.write("troupe.yaml", mesh_file("10m"))
    fmesh.write("h.py", HANDLERS)
    fmesh.start()
    # 1 to 12 results per origin: 10 and more slices check the numeric merge order.
    payloads = [{"i": i, "n": 1 + i % 12} for i in range(total)]
    ids = create_all(fmesh, payloads)
    succeeded = fmesh.state_dir / "succeeded"

    def done():
        return len(os.listdir(succeeded)) if succeeded.exists() else 0

    kills = []
    for fraction in (0.15, 0.4, 0.7):
        fmesh.wait_for(lambda: done() >= total * fraction, timeout=120, interval=0.01,
                       what=f"{fraction:.0%} of the origins at x-sink")
        kills.append(done())
        kill_all(fmesh)
        fmesh.start()
    assert kills[-1] < total, f"killed too late to prove anything: {kills}"

    fmesh.wait_for(lambda: done() >= total, timeout=180, interval=0.2,
                   what="every origin at x-sink")
    # Nothing else may arrive: let stragglers (redeliveries) settle, then look.
    time.sleep(1)
    results = fmesh.results("succeeded")
    assert set(results) == set(ids), "succeeded/ holds exactly the origins"
    assert not fmesh.results("failed"), fmesh.results("failed")
    for task_id, p in zip(ids, payloads):
        env = results[task_id]
        assert env["id"] == task_id
        assert env["payload"] == expected(p), (task_id, env["payload"])
        assert env["status"]["phase"] == "succeeded"
        assert env["route"]["prev"][-2:] == ["fanin-x", "finish"]
        assert env["headers"]["x-asya-origin-id"] == task_id
        assert "x-asya-fan-in" not in env["headers"]
        code, task = fmesh.task(task_id)
        assert code == 200, task
        assert task["status"] == "succeeded", task
        assert task["data"]["result"] == expected(p), task
    # The merged envelope continued as the origin: `finish` saw each origin id, and saw it
    # twice only where a kill landed between its send and its ack (at-least-once).
    finished = (fmesh.root / "finish.log").read_text().split()
    assert set(finished) == set(ids)
    duplicates = len(finished) - total
    print(f"\nkill -9 at {kills} of {total} origins at x-sink; "
          f"merged envelopes seen twice downstream: {duplicates}")
    assert duplicates <= 4 * len(kills), f"{duplicates} duplicate merges for {len(kills)} kills"
    # Every origin emitted: only the markers remain, no pending timeout.
    fanin = fmesh.state_dir / "fanin"
    assert not list((fanin / ".pending").glob("*.json"))
    assert not list(fanin.glob("*/slice-*.json"))
    assert fmesh.stop() == 0


def test_a_missing_slice_fails_the_origin_with_the_timeout(fmesh):
    # Long enough for the runtimes' cold start (the first origin must not time out).
    fmesh.write("troupe.yaml", mesh_file("6s"))
    fmesh.write("h.py", HANDLERS)
    fmesh.start()
    [ok] = create_all(fmesh, [{"i": 1, "n": 3}])
    assert fmesh.wait_result(ok)["payload"] == expected({"i": 1, "n": 3})
    [lost] = create_all(fmesh, [{"i": 2, "n": 3, "drop": 2}])

    failed = fmesh.wait_result(lost, kind="failed", timeout=30)
    message = "fan-in fanin-x: 3 of 4 slices arrived within 6s (missing 2)"
    status = failed["status"]
    assert status["phase"] == "failed"
    assert status["reason"] == "Timeout"
    assert status["actor"] == "fanin-x"
    assert status["error"]["type"] == "FanInTimeout"
    assert status["error"]["message"] == message
    assert failed["payload"]["details"]["missing"] == [2]
    assert failed["payload"]["original_payload"] == {"i": 2, "n": 3, "drop": 2}

    res = fmesh.cli("result", lost, check=True)
    assert json.loads(res.stdout)["status"]["error"]["message"] == message
    code, task = fmesh.task(lost)
    assert code == 200, task
    assert task["status"] == "failed", task
    assert message in json.dumps(task["data"]), task
    assert not (fmesh.state_dir / "succeeded" / f"{lost}.json").exists()
    assert fmesh.stop() == 0
