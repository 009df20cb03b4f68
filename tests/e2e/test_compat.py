"""Asya compatibility details (issue 9, items 16, 17, 19, 20), driven through the real
`troupe` binary: older Asya settings, Asya's AMQP URL forms, a runtime that does not
speak HTTP, another runtime file under `troupe up`, and resume payload validation."""

import asyncio
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from brokers import Group, RabbitSpace, Service, envelope, unique_namespace, wait_until


@pytest.fixture(scope="module")
def rabbitmq_service(tmp_path_factory):
    svc = Service("rabbitmq", tmp_path_factory.mktemp("rabbitmq"))
    svc.start(env={"RABBITMQ_TEST_OWNER_PID": str(os.getpid())})
    yield svc
    svc.stop()


@pytest.fixture
def group(troupe_bin, tmp_path):
    g = Group(troupe_bin, tmp_path)
    yield g
    g.stop_all()


def rabbit_port(svc):
    return re.search(r"@127\.0\.0\.1:(\d+)/", svc.url).group(1)


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- item 17: amqp://host:5672/ is the default vhost ----------------------------------------

@pytest.mark.parametrize("tail", ["/", ""])
def test_amqp_url_with_or_without_a_trailing_slash_is_the_default_vhost(
        rabbitmq_service, group, tmp_path, tail):
    """Asya's env files write `amqp://guest:guest@host:5672/`; amqp091-go and pika read
    vhost `/` there. Before: vhost "" and exit 2."""
    ns = unique_namespace()
    url = f"amqp://guest:guest@127.0.0.1:{rabbit_port(rabbitmq_service)}{tail}"
    tenv = {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": url,
            "ASYA_RABBITMQ_EXCHANGE": f"ex-{ns}"}
    mount = tmp_path / "results"
    sink = group.crew("x-sink", ns, tenv, mount=mount)
    sink.wait_ready(60)
    client = RabbitSpace(rabbitmq_service.url, ns, f"ex-{ns}")
    try:
        ts = now_rfc3339()
        tid = f"{ns}-vhost"
        client.wait_queue("x-sink")
        client.publish("x-sink", envelope(tid, "", [], {"ok": True}, prev=["a"], status={
            "phase": "succeeded", "reason": "Completed", "actor": "a", "attempt": 1,
            "max_attempts": 1, "created_at": ts, "updated_at": ts}))
    finally:
        client.close()
    path = mount / "succeeded" / f"{tid}.json"
    wait_until(path.exists, 30, "x-sink to persist", details=sink.tail)


# -- item 16: older Asya settings --------------------------------------------------------------

@pytest.mark.parametrize("name,value,needle", [
    ("ASYA_ACTOR_HAPPY_END", "happy-end", "ASYA_ACTOR_SINK"),
    ("ASYA_HANDLER_MODE", "envelope", "envelope mode is not supported"),
    ("ASYA_RESILIENCY_RETRY_BACKOFF_COEFFICIENT", "3", "ASYA_RESILIENCY_POLICIES"),
])
def test_older_asya_settings_without_equivalent_fail_fast(rabbitmq_service, group, name, value, needle):
    ns = unique_namespace()
    env = group.sidecar_env("a", ns, {"ASYA_TRANSPORT": "rabbitmq",
                                      "ASYA_RABBITMQ_URL": rabbitmq_service.url}, {name: value})
    sc = group.sidecar("a", env)
    assert sc.wait_exit(15) == 2, sc.tail()
    log = sc.log()
    assert f"{name}={value}" in log and needle in log, log


def test_older_asya_settings_with_an_equivalent_are_honoured_with_a_warning(
        rabbitmq_service, group, tmp_path):
    """ASYA_RUNTIME_TIMEOUT is the actor timeout; the flat retry variables become the
    default policy; ASYA_LOG_LEVEL (§15) sets the sidecar's level."""
    ns = unique_namespace()
    env = group.sidecar_env("x-sink", ns, {
        "ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": rabbitmq_service.url,
        "ASYA_RABBITMQ_EXCHANGE": f"ex-{ns}"}, {
        "TROUPE_CREW": "x-sink", "ASYA_PERSISTENCE_MOUNT": str(tmp_path / "r"),
        "ASYA_RUNTIME_TIMEOUT": "42s", "ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS": "5",
        "ASYA_LOG_LEVEL": "WARN"})
    sc = group.sidecar("x-sink", env)
    (timeout_line,) = sc.wait_log(r"ASYA_RUNTIME_TIMEOUT=42s is deprecated", 20)
    assert "WARN" in timeout_line and "ASYA_RESILIENCY_ACTOR_TIMEOUT" in timeout_line
    (retry_line,) = sc.wait_log(r"ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS are deprecated", 20)
    assert '"maxAttempts":5' in retry_line, retry_line
    time.sleep(2)
    assert sc.alive(), sc.tail()
    assert " INFO " not in sc.log(), f"ASYA_LOG_LEVEL=WARN was ignored:\n{sc.tail()}"


# -- item 16: a runtime that does not speak HTTP -----------------------------------------------

def _old_asya_runtime(path, stop):
    """Asya's pre-HTTP runtime: a 4-byte big-endian length, then that many bytes of JSON."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(8)
    srv.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        conns.append(conn)
        conn.settimeout(0.2)
        try:
            conn.recv(4)  # b"GET " = a 1.2 GB frame: it waits for the rest
        except OSError:
            pass
    for c in conns:
        c.close()
    srv.close()


def test_a_runtime_that_does_not_speak_http_is_named_not_waited_for(rabbitmq_service, group, tmp_path):
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir()
    stop = threading.Event()
    t = threading.Thread(target=_old_asya_runtime, args=(sock_dir / "asya-runtime.sock", stop),
                         daemon=True)
    t.start()
    try:
        ns = unique_namespace()
        env = group.sidecar_env("a", ns, {"ASYA_TRANSPORT": "rabbitmq",
                                          "ASYA_RABBITMQ_URL": rabbitmq_service.url,
                                          "ASYA_RABBITMQ_EXCHANGE": f"ex-{ns}"},
                                {"ASYA_SOCKET_DIR": str(sock_dir),
                                 "ASYA_RUNTIME_READY_TIMEOUT": "5m"})
        sc = group.sidecar("a", env)
        started = time.monotonic()
        rc = sc.wait_exit(40)
        assert rc not in (0, None), sc.tail()
        assert time.monotonic() - started < 30, "it waited for ASYA_RUNTIME_READY_TIMEOUT"
        log = sc.log()
        assert "does not speak HTTP" in log and "length-prefixed" in log, log
    finally:
        stop.set()
        t.join(5)


# -- item 20: a resume payload is checked against the pause's fields ---------------------------

PAUSE_MESH = """
    gateway:
      mcp:
        tools:
          - {name: review, actor: draft, description: Drafts and waits for approval, timeout: 60}
      a2a:
        agents:
          - name: reviewer
            actor: draft
            description: Drafts and waits for approval
            timeout: 60
            skills: [{id: review, name: Review, description: Approve a draft, tags: [hitl]}]
    actors:
      - {actor: draft, handler: hitl.draft}
      - {actor: finalize, handler: hitl.finalize}
    crew:
      pause_metadata:
        prompt: "Send it?"
        fields:
          - {name: approved, type: boolean, prompt: "Send it?", required: true}
          - {name: note, type: string, required: false}
"""

PAUSE_HANDLERS = """
    def draft(p):
        yield "SET", ".route.next", ["x-pause", "finalize"]
        yield {"draft": "hello"}

    def finalize(p):
        return {"sent": p["approved"], "note": p.get("note")}
"""

REFUSED_TYPE = "field 'approved' must be a boolean (true or false), got the string \"yes-please\""
REFUSED_MISSING = "field 'approved' is required"


def _paused(mesh, task):
    code, t = mesh.task(task)
    return code == 200 and t["status"] == "paused"


def _a2a(base, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": params}).encode()
    req = urllib.request.Request(base + "/a2a/", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _a2a_message(data, task_id=None):
    msg = {"kind": "message", "role": "user", "messageId": f"m-{time.monotonic_ns()}",
           "parts": [{"kind": "data", "data": data}]}
    if task_id:
        msg["taskId"] = task_id
    return {"message": msg}


def test_resume_payload_is_checked_against_the_pause_fields_everywhere(mesh):
    mesh.write("troupe.yaml", PAUSE_MESH)
    mesh.write("hitl.py", PAUSE_HANDLERS)
    mesh.start()

    # CLI: wrong type and no payload at all are refused, non-zero, the task stays paused.
    task = mesh.send("draft")
    mesh.wait_for(lambda: _paused(mesh, task), what="task paused")
    r = mesh.cli("resume", task, '{"approved":"yes-please"}')
    assert r.returncode != 0 and REFUSED_TYPE in r.stderr, r.stderr
    r = mesh.cli("resume", task)
    assert r.returncode != 0 and REFUSED_MISSING in r.stderr, r.stderr
    assert _paused(mesh, task)
    assert (mesh.state_dir / "paused" / f"{task}.json").exists()

    # Mesh API: 400 with the same message.
    code, body = mesh.http("POST", f"/api/v1/mesh/{task}/resume",
                           {"payload": {"approved": "yes-please"}})
    assert code == 400 and REFUSED_TYPE in body["error"], (code, body)
    assert _paused(mesh, task)
    # A valid resume goes through.
    mesh.cli("resume", task, '{"approved": true, "note": "ok"}', check=True)
    assert mesh.wait_result(task)["payload"] == {"sent": True, "note": "ok"}

    # A2A: the reply on an input-required task is refused as invalid params.
    base = mesh.url
    started = _a2a(base, _a2a_message({"q": 1}))["result"]
    assert started["status"]["state"] == "input-required", started
    a2a_task = started["id"]
    refused = _a2a(base, _a2a_message({"approved": "yes-please"}, a2a_task))
    assert refused["error"]["code"] == -32602, refused
    assert REFUSED_TYPE in refused["error"]["message"], refused
    got = _a2a_get(base, a2a_task)
    assert got["status"]["state"] == "input-required", got
    done = _a2a(base, _a2a_message({"approved": False}, a2a_task))["result"]
    assert done["status"]["state"] == "completed", done

    # MCP: a tool call that pauses returns the id; resuming it is checked the same way.
    paused = asyncio.run(asyncio.wait_for(_mcp_call(base, "review"), 60))
    assert paused["status"] == "paused", paused
    code, body = mesh.http("POST", f"/api/v1/mesh/{paused['id']}/resume", {"payload": {}})
    assert code == 400 and REFUSED_MISSING in body["error"], (code, body)
    assert _paused(mesh, paused["id"])
    assert mesh.stop() == 0


def _a2a_get(base, task_id):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
                       "params": {"id": task_id}}).encode()
    req = urllib.request.Request(base + "/a2a/", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["result"]


async def _mcp_call(base, tool):
    from mcp import Client

    async with Client(base + "/mcp") as client:
        res = await client.call_tool(tool, {})
        return json.loads(res.content[0].text)


# -- item 19b: `runtime:` runs another runtime file ---------------------------------------------

BUILT_IN_RUNTIME = Path(__file__).resolve().parents[2] / "crates/troupe-runtime/python/troupe_runtime.py"


def _marked_runtime(tag):
    """A copy of the runtime that leaves `{MARKER_DIR}/{tag}-{pid}` when it starts."""
    text = BUILT_IN_RUNTIME.read_text()
    marker = ("import os as _os\n"
              f"open(_os.path.join(_os.environ['MARKER_DIR'], '{tag}-%d' % _os.getpid()), 'w').close()\n")
    return marker + text


def test_runtime_setting_runs_another_runtime_file_mesh_wide_and_per_actor(mesh, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    mesh.write("rt/mesh_runtime.py", _marked_runtime("mesh"))
    mesh.write("rt/own_runtime.py", _marked_runtime("own"))
    mesh.write("troupe.yaml", f"""
        runtime: rt/mesh_runtime.py
        actors:
          - actor: upper
            handler: steps.upper
            env: [{{name: MARKER_DIR, value: "{markers}"}}]
          - actor: exclaim
            handler: steps.exclaim
            runtime: rt/own_runtime.py
            env: [{{name: MARKER_DIR, value: "{markers}"}}]
    """)
    mesh.write("steps.py", """
        def upper(p):
            return {"text": p["text"].upper()}

        def exclaim(p):
            return {"text": p["text"] + "!"}
    """)
    mesh.start(timeout=60)
    res = mesh.cli("send", "upper", '{"text": "hi"}', "--route", "exclaim", "--wait",
                   "--timeout", "30s")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{mesh.log()[-3000:]}"
    assert json.loads(res.stdout) == {"text": "HI!"}
    tags = sorted({p.name.split("-")[0] for p in markers.iterdir()})
    assert tags == ["mesh", "own"], tags
    assert mesh.stop() == 0


def test_runtime_setting_naming_a_missing_file_fails_at_start_with_its_position(mesh):
    mesh.write("troupe.yaml", """
        actors:
          - actor: upper
            handler: steps.upper
            runtime: rt/missing.py
    """)
    mesh.write("steps.py", "def upper(p):\n    return p\n")
    mesh.start(wait=False)
    assert mesh.proc.wait(30) == 2
    log = mesh.log()
    assert re.search(r"troupe\.yaml:\d+:\d+: actors\[0\]\.runtime: runtime file .*missing\.py does not exist", log), log
