"""Body limits of `troupe up` (issue 9, item 5): one limit on every route, named in the
413, including Troupe's own `/troupe/v1/*` routes that `troupe send` uses."""

import json

HANDLERS = """
    def ok(p):
        return {"size": len(p.get("blob", ""))}
"""

MESH = """
    actors:
      - actor: ok
        handler: h.ok
"""


def start(mesh):
    mesh.write("troupe.yaml", MESH)
    mesh.write("h.py", HANDLERS)
    return mesh.start()


def test_send_of_3_mb_with_a_route_succeeds(mesh):
    start(mesh)
    blob = "x" * (3 << 20)
    res = mesh.cli("send", "ok", "-", "--route", "ok", input=json.dumps({"blob": blob}))
    assert res.returncode == 0, res.stderr
    task = res.stdout.strip()
    env = mesh.wait_result(task, timeout=60)
    assert env["payload"] == {"size": 0} or env["payload"]["size"] in (0, len(blob)), env["payload"]


def test_send_over_the_limit_is_413_naming_it(mesh):
    start(mesh)
    blob = "x" * (33 << 20)
    res = mesh.cli("send", "ok", "-", "--route", "ok", input=json.dumps({"blob": blob}))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "413" in out or "over the" in out, out
    assert "32 MiB" in out and "TROUPE_GATEWAY_MAX_BODY_BYTES" in out, out
    # The mesh API's own create names the same limit.
    code, body = mesh.http("POST", "/api/v1/mesh/?actor=ok",
                           raw=json.dumps({"payload": blob}).encode())
    assert code == 413, body
    assert "TROUPE_GATEWAY_MAX_BODY_BYTES" in body["error"], body


def test_progress_event_over_the_event_limit_is_413(mesh):
    start(mesh)
    task = mesh.send("ok", {})
    event = {"type": "status", "status": "processing",
             "data": {"prev": [], "curr": "ok", "next": [], "message": "m" * (100 << 10)}}
    code, body = mesh.http("POST", f"/api/v1/mesh/{task}/events", body=event, sidecar=True)
    assert code == 413, body
    assert "64 KiB" in body["error"] and "TROUPE_GATEWAY_MAX_EVENT_BYTES" in body["error"], body
