"""The mesh API of gateway.md §2 over plain HTTP against the real binary: create → SSE →
final, cancel and external pause diverted by the next sidecar's pre-flight, the SLA
backstop, bad input, `troupe gateway` on its own (sidecars report to it over HTTP), the
SSRF rule on `x-asya-gateway-url`, and `troupe up --no-gateway`."""

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

MESH = """
    gateway: {backstop_interval: 200ms}
    actors:
      - {actor: fast, handler: gw.step, replicas: 1, scaling: {enabled: false}}
      - {actor: slow, handler: gw.slow, replicas: 1, scaling: {enabled: false}}
      - {actor: mark, handler: gw.mark, replicas: 1, scaling: {enabled: false}}
"""

HANDLERS = """
    import time

    def step(p):
        p["stepped"] = True
        return p

    def slow(p):
        time.sleep(p.get("sleep", 1.0))
        p["slept"] = True
        return p

    def mark(p):
        # Proves this actor ran: the tests assert the file is absent when the task was
        # diverted before it.
        with open(p["marker"], "w") as f:
            f.write("ran")
        return p
"""


def start(mesh, *extra):
    mesh.write("troupe.yaml", MESH)
    mesh.write("gw.py", HANDLERS)
    return mesh.start(*extra)


def sse(base_url, path, timeout=30):
    """Yields (event, data) from an SSE stream until the server closes it. Also returns the
    response headers through the first item: ('headers', dict)."""
    u = urllib.parse.urlparse(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", path)
    resp = conn.getresponse()
    yield "headers", {"status": resp.status, **{k.lower(): v for k, v in resp.getheaders()}}
    if resp.status != 200:
        return
    event, data = None, []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and event:
            yield event, json.loads("\n".join(data))
            event, data = None, []
    conn.close()


def create(mesh, actor, body=None):
    code, reply = mesh.http("POST", f"/api/v1/mesh/?actor={actor}", body or {})
    assert code == 201, reply
    return reply["id"]


def create_routed(mesh, actor, route_next, payload):
    code, reply = mesh.http("POST", "/troupe/v1/tasks",
                            {"actor": actor, "route_next": route_next, "payload": payload})
    assert code == 201, reply
    return reply["id"]


def wait_status(mesh, task_id, status, timeout=20):
    def check():
        code, t = mesh.task(task_id)
        return t if code == 200 and t["status"] == status else None
    return mesh.wait_for(check, timeout=timeout, what=f"task {task_id} {status}")


RANK = {"pending": 0, "running": 1, "paused": 2, "succeeded": 3, "failed": 3, "canceled": 3}


def test_create_then_sse_catch_up_live_and_final(mesh):
    start(mesh)
    tid = create(mesh, "slow", {"payload": {"sleep": 0.8, "q": 1}})
    stream = sse(mesh.url, f"/api/v1/mesh/{tid}/events")
    _, headers = next(stream)
    assert headers["status"] == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    events = list(stream)
    kinds = [e for e, _ in events]
    assert set(kinds) == {"status"}, events
    statuses = [d["status"] for _, d in events]
    # catch-up first, live updates after, the stream closes after the terminal event
    assert statuses[0] in ("pending", "running"), statuses
    assert statuses[-1] == "succeeded", statuses
    assert len(events) >= 2
    assert [RANK[s] for s in statuses] == sorted(RANK[s] for s in statuses)
    final = events[-1][1]
    assert final["result"] == {"sleep": 0.8, "q": 1, "slept": True}
    assert final["progress"] == 100
    running = [d for _, d in events if d["status"] == "running"]
    # "Completed processing" of the last actor maps to 100 % while still running (§2.4)
    assert running and all(0 <= d["progress"] <= 100 for d in running), running
    assert running[0]["progress"] < 100
    progress = [d["progress"] for _, d in events if "progress" in d]
    assert progress == sorted(progress), progress

    code, task = mesh.task(tid)
    assert code == 200 and task["status"] == "succeeded" == task["data"]["status"]
    assert task["data"]["actor"] and task["created_at"] <= task["updated_at"]
    # a finished task's stream is the catch-up event alone
    again = list(sse(mesh.url, f"/api/v1/mesh/{tid}/events"))[1:]
    assert [d["status"] for _, d in again] == ["succeeded"]
    assert mesh.stop() == 0


def test_cancel_while_running_is_diverted_at_the_next_preflight(mesh, tmp_path):
    start(mesh)
    marker = tmp_path / "mark-ran"
    tid = create_routed(mesh, "slow", ["mark"], {"sleep": 1.5, "marker": str(marker)})
    wait_status(mesh, tid, "running")
    code, _ = mesh.http("DELETE", f"/api/v1/mesh/{tid}")
    assert code == 204
    assert mesh.task(tid)[1]["status"] == "canceled"
    # slow finishes its call; mark's pre-flight sees "canceled" and diverts to x-sink
    # x-sink keeps diverted envelopes under checkpoint/ (protocol.md §14.1)
    stored = mesh.wait_result(tid, kind="checkpoint", timeout=15)
    assert stored["status"]["phase"] == "canceled", stored
    assert mesh.status()["slow"]["succeeded"] == 1
    assert mesh.status()["mark"]["succeeded"] == 0
    assert not marker.exists(), "the actor after the cancel ran anyway"
    assert mesh.task(tid)[1]["status"] == "canceled"
    # cancel is idempotent on a terminal task
    assert mesh.http("DELETE", f"/api/v1/mesh/{tid}")[0] == 204
    assert mesh.stop() == 0


def test_external_pause_stops_at_the_next_preflight_and_can_only_be_canceled(mesh, tmp_path):
    start(mesh)
    marker = tmp_path / "mark-ran"
    tid = create_routed(mesh, "slow", ["mark"], {"sleep": 1.5, "marker": str(marker)})
    wait_status(mesh, tid, "running")
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/pause")
    assert code == 202, reply
    task = mesh.task(tid)[1]
    assert task["status"] == "paused" and "pause_metadata" not in task["data"]
    stored = mesh.wait_result(tid, kind="checkpoint", timeout=15)
    assert stored["status"]["phase"] == "paused", stored
    assert not marker.exists()
    assert mesh.status()["mark"]["succeeded"] == 0
    assert mesh.task(tid)[1]["status"] == "paused"
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/resume", {"payload": {}})
    assert code == 409 and "no saved state" in reply["error"], reply
    assert mesh.http("DELETE", f"/api/v1/mesh/{tid}")[0] == 204
    assert mesh.task(tid)[1]["status"] == "canceled"
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/pause")
    assert code == 409, reply
    assert mesh.stop() == 0


def test_sla_timeout_fails_the_task_through_the_backstop(mesh):
    start(mesh)
    # The only `slow` replica is busy for 4 s, so the second task waits in the queue
    # where no sidecar can see its deadline: only the gateway's backstop can end it.
    busy = create(mesh, "slow", {"payload": {"sleep": 4}})
    wait_status(mesh, busy, "running")
    t0 = time.time()
    tid = create(mesh, "slow", {"payload": {"sleep": 0}, "timeout": 1})
    events = list(sse(mesh.url, f"/api/v1/mesh/{tid}/events"))[1:]
    elapsed = time.time() - t0
    final = events[-1][1]
    assert final["status"] == "failed" and final["error"] == "task timed out", events
    assert [d["status"] for _, d in events] == ["pending", "failed"], events
    assert elapsed < 3.0, elapsed
    assert final["deadline_at"].endswith("Z")
    # when the envelope is finally received, the sidecar's SLA check sends it to x-sink;
    # the task stays failed
    wait_status(mesh, busy, "succeeded")
    stored = mesh.wait_result(tid, kind="failed", timeout=15)
    assert stored["status"]["reason"] == "Timeout", stored
    assert mesh.task(tid)[1]["status"] == "failed"
    assert mesh.status()["slow"]["succeeded"] == 1
    assert mesh.stop() == 0


def test_bad_input_gets_clear_errors_and_stores_nothing(mesh):
    start(mesh)
    before = mesh.http("GET", "/api/v1/mesh/")[1]["total"]
    code, reply = mesh.http("POST", "/api/v1/mesh/?actor=nope", {"payload": {}})
    assert code == 404 and reply == {"error": "actor not found"}
    code, reply = mesh.http("POST", "/api/v1/mesh/?actor=fast", raw=b"{not json")
    assert code == 400 and "invalid JSON" in reply["error"]
    for field in ("route", "route_next", "next"):
        code, reply = mesh.http("POST", "/api/v1/mesh/?actor=fast", {field: ["x"], "payload": {}})
        assert code == 400 and "routing fields" in reply["error"], reply
    code, reply = mesh.http("POST", "/api/v1/mesh/", {"payload": {}})
    assert code == 400 and "actor" in reply["error"]
    assert mesh.http("GET", "/api/v1/mesh/")[1]["total"] == before
    assert mesh.http("GET", "/api/v1/mesh/no-such-id")[0] == 404
    head = next(sse(mesh.url, "/api/v1/mesh/no-such-id/events"))[1]
    assert head["status"] == 404

    tid = create(mesh, "fast", {"payload": {"a": 1}})
    wait_status(mesh, tid, "succeeded")
    # stale and unknown statuses are acknowledged but change nothing
    stale = {"type": "status", "status": "running",
             "data": {"prev": [], "curr": "fast", "next": [], "message": "late"}}
    assert mesh.http("POST", f"/api/v1/mesh/{tid}/events", stale, sidecar=True)[0] == 204
    assert mesh.http("POST", f"/api/v1/mesh/{tid}/events",
                     {"type": "status", "status": "bogus", "data": {}}, sidecar=True)[0] == 204
    task = mesh.task(tid)[1]
    assert task["status"] == "succeeded" and task["data"]["message"] != "late"
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/events", raw=b"[oops", sidecar=True)
    assert code == 400
    big = {"type": "fly", "data": {"payload": {"text": "x" * (1 << 20)}}}
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/events", big, sidecar=True)
    assert code == 413 and "1 MiB" in reply["error"], reply
    code, reply = mesh.http("POST", f"/api/v1/mesh/{tid}/children", {"id": "c1", "parent_id": "other"},
                            sidecar=True)
    assert code == 400
    code, reply = mesh.http("GET", "/api/v1/mesh/?limit=x")
    assert code == 400
    assert mesh.http("GET", "/health")[0] == 200
    assert mesh.http("GET", "/ready")[0] == 200
    assert mesh.stop() == 0


# -- troupe gateway on its own --------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standalone:
    """A `troupe gateway` process publishing into a running `troupe up`."""

    def __init__(self, binary, mesh_url, log_path, token=None, **extra):
        self.ext, self.int = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.ext}"
        env = dict(os.environ,
                   TROUPE_GATEWAY_BIND="127.0.0.1",
                   ASYA_MESH_EXTERNAL_PORT=str(self.ext),
                   ASYA_MESH_INTERNAL_PORT=str(self.int),
                   ASYA_INTERNAL_URL=f"http://127.0.0.1:{self.int}",
                   ASYA_NAMESPACE="default",
                   ASYA_QUEUE_TRANSPORT="embedded",
                   TROUPE_MESH_URL=mesh_url,
                   TROUPE_MCP_PORT="off",
                   TROUPE_A2A_PORT="off",
                   **({"TROUPE_GATEWAY_TOKEN": token} if token else {}),
                   **extra)
        self.log_path = log_path
        self.proc = subprocess.Popen([str(binary), "gateway"], env=env,
                                     stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"troupe gateway exited {self.proc.returncode}:\n{log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ext), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("troupe gateway did not start")

    def http(self, method, path, body=None):
        u = urllib.parse.urlparse(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        try:
            return resp.status, (json.loads(text) if text else None)
        except ValueError:
            return resp.status, text

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


def test_standalone_gateway_receives_sidecar_reports_over_http(mesh, troupe_bin, tmp_path):
    start(mesh)
    gw = Standalone(troupe_bin, mesh.url, tmp_path / "gateway.log", token=mesh.token)
    try:
        assert gw.http("GET", "/health")[0] == 200
        code, reply = gw.http("POST", "/api/v1/mesh/?actor=nope", {})
        assert code == 404, reply
        code, reply = gw.http("POST", "/api/v1/mesh/?actor=slow", {"payload": {"sleep": 0.5}})
        assert code == 201, reply
        tid = reply["id"]
        events = list(sse(gw.url, f"/api/v1/mesh/{tid}/events"))[1:]
        statuses = [d["status"] for _, d in events]
        assert statuses[-1] == "succeeded", events
        assert "running" in statuses, statuses
        assert events[-1][1]["result"] == {"sleep": 0.5, "slept": True}
        # the task lives on the standalone gateway only
        assert mesh.task(tid)[0] == 404
        assert gw.stop() == 0
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
    assert mesh.stop() == 0


def test_standalone_gateway_configuration_errors_exit_2(troupe_bin):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYA_", "TROUPE_"))}
    res = subprocess.run([str(troupe_bin), "gateway"], env=env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 2 and "ASYA_INTERNAL_URL is required" in res.stderr, res.stderr
    env.update(ASYA_INTERNAL_URL="http://127.0.0.1:1", ASYA_NAMESPACE="default",
               ASYA_QUEUE_TRANSPORT="embedded")
    res = subprocess.run([str(troupe_bin), "gateway"], env=env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 2 and "TROUPE_MESH_URL is required" in res.stderr, res.stderr


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in gateway that records what sidecars send it."""
    seen = []

    def _reply(self, code, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        Recorder.seen.append(("GET", self.path))
        self._reply(200, {"id": self.path.rsplit("/", 1)[-1], "status": "running"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        Recorder.seen.append(("POST", self.path))
        self._reply(204)

    def log_message(self, *args):
        pass


def test_gateway_url_header_must_be_http(mesh):
    start(mesh)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    Recorder.seen.clear()
    try:
        for tid, url in (("ok-http", f"http://127.0.0.1:{port}"),
                         ("bad-file", f"file://127.0.0.1:{port}/etc/passwd"),
                         ("bad-ftp", f"ftp://127.0.0.1:{port}")):
            env = {"id": tid, "route": {"prev": [], "curr": "fast", "next": []},
                   "headers": {"x-asya-gateway-url": url}, "payload": {"n": tid}}
            mesh.publish_raw("fast", json.dumps(env).encode())
        mesh.wait_for(lambda: len(mesh.results("succeeded")) == 3, what="three results")
        mesh.wait_for(lambda: any("/ok-http/events" in p for _, p in Recorder.seen),
                      what="reports for the http URL")
        time.sleep(0.5)
        paths = [p for _, p in Recorder.seen]
        assert any(p == "/api/v1/mesh/ok-http" for p in paths), paths  # pre-flight
        assert not any("bad-" in p for p in paths), paths
    finally:
        server.shutdown()
    assert mesh.stop() == 0


def test_a_dead_gateway_never_holds_messages_up(mesh):
    """Reports to a gateway that does not answer are dropped; routing goes on."""
    start(mesh)
    dead = free_port()  # nothing listens here
    t0 = time.time()
    for i in range(20):
        env = {"id": f"dead-gw-{i}", "route": {"prev": [], "curr": "fast", "next": []},
               "headers": {"x-asya-gateway-url": f"http://127.0.0.1:{dead}"}, "payload": {"i": i}}
        mesh.publish_raw("fast", json.dumps(env).encode())
    mesh.wait_for(lambda: len(mesh.results("succeeded")) == 20, timeout=20, what="20 results")
    # each pre-flight lookup fails fast (connection refused) and events are queued in the
    # background, so 20 messages take far less than 20 report timeouts
    assert time.time() - t0 < 10
    assert mesh.stop() == 0


def test_gateway_allow_list_limits_reported_hosts(mesh, monkeypatch):
    monkeypatch.setenv("TROUPE_GATEWAY_ALLOWED_HOSTS", "gateway.example.internal:8081")
    start(mesh)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen.clear()
    try:
        env = {"id": "not-listed", "route": {"prev": [], "curr": "fast", "next": []},
               "headers": {"x-asya-gateway-url": f"http://127.0.0.1:{server.server_address[1]}"},
               "payload": {}}
        mesh.publish_raw("fast", json.dumps(env).encode())
        mesh.wait_result("not-listed")
        time.sleep(0.5)
        assert Recorder.seen == []
    finally:
        server.shutdown()
    assert mesh.stop() == 0


def test_no_gateway_runs_the_mesh_without_the_mesh_api(mesh):
    start(mesh, "--no-gateway")
    code, _ = mesh.http("GET", "/api/v1/mesh/")
    assert code == 404
    assert mesh.http("GET", "/troupe/v1/status")[0] == 200
    env = {"id": "raw-1", "route": {"prev": [], "curr": "fast", "next": []}, "payload": {"a": 1}}
    mesh.publish_raw("fast", json.dumps(env).encode())
    result = mesh.wait_result("raw-1")
    assert result["payload"] == {"a": 1, "stepped": True}
    info = json.loads((mesh.state_dir / "mesh.json").read_text())
    assert "mcp_url" not in info and "a2a_url" not in info
    res = mesh.cli("send", "fast", "{}")
    assert res.returncode == 1 and "--no-gateway" in res.stderr, res.stderr
    assert mesh.stop() == 0


# -- two replicas on one PostgreSQL ------------------------------------------------------------

@pytest.fixture
def postgres_url():
    url = os.environ.get("TROUPE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("TROUPE_REQUIRE_POSTGRES") == "1":
            pytest.fail("TROUPE_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL)")
        pytest.skip("no PostgreSQL: set TROUPE_TEST_POSTGRES_URL (scripts/services/postgres.sh start DIR)")
    return url


def test_two_gateway_replicas_on_one_postgres_share_tasks_and_streams(mesh, troupe_bin, tmp_path, postgres_url):
    mesh.write("troupe.yaml", MESH.replace("gateway: {backstop_interval: 200ms}",
                                           f"gateway: {{store: '{postgres_url}'}}"))
    mesh.write("gw.py", HANDLERS)
    mesh.start()
    other = Standalone(troupe_bin, mesh.url, tmp_path / "gateway.log", token=mesh.token,
                       TROUPE_GATEWAY_STORE=postgres_url)
    try:
        # created on troupe up's gateway, streamed from the other replica
        a = create(mesh, "slow", {"payload": {"sleep": 1.0, "from": "up"}})
        events = list(sse(other.url, f"/api/v1/mesh/{a}/events"))
        assert events[0][1]["status"] == 200
        statuses = [d["status"] for _, d in events[1:]]
        assert statuses[-1] == "succeeded", statuses
        assert len(statuses) >= 2, statuses  # live events crossed replicas, not only catch-up
        assert events[-1][1]["result"] == {"sleep": 1.0, "from": "up", "slept": True}

        # created on the other replica, streamed from troupe up's gateway
        code, reply = other.http("POST", "/api/v1/mesh/?actor=slow", {"payload": {"sleep": 1.0}})
        assert code == 201, reply
        b = reply["id"]
        events = list(sse(mesh.url, f"/api/v1/mesh/{b}/events"))[1:]
        assert events[-1][1]["status"] == "succeeded", events
        # both replicas read the same record
        assert mesh.task(b)[1]["status"] == "succeeded"
        assert other.http("GET", f"/api/v1/mesh/{a}")[1]["status"] == "succeeded"
        # a cancel on one replica is seen by the other's stream
        code, reply = other.http("POST", "/api/v1/mesh/?actor=slow", {"payload": {"sleep": 3}})
        c = reply["id"]
        stream = sse(mesh.url, f"/api/v1/mesh/{c}/events")
        next(stream)
        first = next(stream)[1]
        assert first["status"] in ("pending", "running")
        assert other.http("DELETE", f"/api/v1/mesh/{c}")[0] == 204
        rest = [d["status"] for _, d in stream]
        assert rest[-1] == "canceled", rest
        assert other.stop() == 0
    finally:
        if other.proc.poll() is None:
            other.proc.kill()
    assert mesh.stop() == 0
