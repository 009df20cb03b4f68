"""Gateway security against a real `troupe up` with MCP and A2A `api_key` set (issue 9,
items 1, 2 and 6; docs/security.md): the audit's attacks are refused on the shared
listener, and the legitimate paths (the CLI with a key, the sidecar token) still work.
The official MCP and A2A SDK clients with keys are covered by test_mcp.py / test_a2a.py."""

import http.client
import json
import os
import urllib.parse

MCP_KEY = "mcp-e2e-key"
A2A_KEY = "a2a-e2e-key"

MESH = f"""
    gateway:
      mcp:
        api_key: {MCP_KEY}
        tools: [{{name: slow, actor: slow, description: Sleeps}}]
      a2a:
        api_key: {A2A_KEY}
        agents: [{{name: slow, actor: slow, description: Sleeps}}]
    actors:
      - {{actor: slow, handler: h.slow, replicas: 1, scaling: {{enabled: false}}}}
"""

HANDLERS = """
    import time

    def slow(p):
        time.sleep(p.get("sleep", 0))
        return {"done": True, "echo": p.get("secret")}
"""

SECRET = "payload-s3cr3t"


def start(mesh):
    mesh.write("troupe.yaml", MESH)
    mesh.write("h.py", HANDLERS)
    mesh.start()
    return json.loads((mesh.state_dir / "mesh.json").read_text())


def raw(mesh, method, path, body=None, headers=None):
    """A request with exactly these headers (no key, no default Content-Type)."""
    u = urllib.parse.urlparse(mesh.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        return resp.status, json.loads(text) if text else None
    except ValueError:
        return resp.status, text


JSON = {"Content-Type": "application/json"}


def create(mesh, payload):
    code, reply = raw(mesh, "POST", "/api/v1/mesh/?actor=slow", {"payload": payload},
                      {**JSON, "X-API-Key": A2A_KEY})
    assert code == 201, reply
    return reply["id"]


def status_of(mesh, tid):
    code, task = raw(mesh, "GET", f"/api/v1/mesh/{tid}", headers={"X-API-Key": MCP_KEY})
    assert code == 200, task
    return task


def test_forged_and_unauthenticated_requests_are_refused(mesh):
    info = start(mesh)
    tid = create(mesh, {"sleep": 3, "secret": SECRET})

    # Forge the task's result, with no credential and with a client key.
    forged = {"type": "status", "status": "succeeded", "data": {"result": {"forged": True}}}
    for hdrs in ({}, {"X-API-Key": MCP_KEY}, {"Authorization": f"Bearer {A2A_KEY}"}):
        code, reply = raw(mesh, "POST", f"/api/v1/mesh/{tid}/events", forged, {**JSON, **hdrs})
        assert code == 401, (hdrs, reply)
    code, _ = raw(mesh, "POST", f"/api/v1/mesh/{tid}/children", {"id": "evil-child", "parent_id": tid}, JSON)
    assert code == 401
    code, _ = raw(mesh, "POST", "/troupe/v1/queues/slow", b'{"id": "x"}', JSON)
    assert code == 401

    # Cancel, pause, list with payloads, read: all want the key.
    assert raw(mesh, "DELETE", f"/api/v1/mesh/{tid}")[0] == 401
    assert raw(mesh, "POST", f"/api/v1/mesh/{tid}/pause", headers=JSON)[0] == 401
    for path in ("/api/v1/mesh/", "/api/v1/mesh", f"/api/v1/mesh/{tid}", "/troupe/v1/status",
                 f"/troupe/v1/results/{tid}"):
        code, reply = raw(mesh, "GET", path)
        assert code == 401, (path, reply)
        assert SECRET not in json.dumps(reply)
    code, _ = raw(mesh, "POST", "/troupe/v1/tasks", {"actor": "slow"}, JSON)
    assert code == 401

    # Nothing forged landed: the real handler's result wins.
    assert status_of(mesh, tid)["status"] in ("pending", "running")
    result = mesh.wait_result(tid, timeout=30)
    assert result["payload"] == {"done": True, "echo": SECRET}
    mesh.wait_for(lambda: status_of(mesh, tid)["status"] == "succeeded", what="succeeded")
    task = json.dumps(status_of(mesh, tid))
    assert "forged" not in task and SECRET in task, task

    # Raw publishing: an operator with a client key may replay an envelope.
    env = {"id": "replayed-1", "route": {"prev": [], "curr": "slow", "next": []}, "payload": {"secret": "r"}}
    code, _ = raw(mesh, "POST", "/troupe/v1/queues/slow", json.dumps(env).encode(), {**JSON, "X-API-Key": MCP_KEY})
    assert code == 202
    assert mesh.wait_result("replayed-1")["payload"] == {"done": True, "echo": "r"}

    # The sidecar token (held by the mesh's own sidecars) is accepted on the sidecar routes.
    code, _ = mesh.http("POST", f"/api/v1/mesh/{tid}/events",
                        {"type": "status", "status": "running", "data": {}}, sidecar=True)
    assert code == 204

    # mesh.json names the endpoints a client pastes, and holds no secret.
    assert info["mcp_url"] == mesh.url + "/mcp"
    assert info["a2a_url"] == mesh.url + "/a2a/"
    text = (mesh.state_dir / "mesh.json").read_text()
    assert MCP_KEY not in text and A2A_KEY not in text and mesh.token not in text


def test_cross_site_requests_are_refused(mesh):
    start(mesh)
    evil = {"Origin": "http://evil.example"}
    plain = {"Content-Type": "text/plain"}
    body = {"payload": {"from": "a web page"}}
    # The audit's attack: text/plain + a foreign Origin (a browser "simple" request).
    for hdrs in ({**plain, **evil}, {**plain, **evil, "X-API-Key": A2A_KEY}):
        code, reply = raw(mesh, "POST", "/api/v1/mesh/?actor=slow", body, hdrs)
        assert code in (403, 415), (hdrs, reply)
    code, reply = raw(mesh, "POST", "/api/v1/mesh/?actor=slow", body, {**plain, "X-API-Key": A2A_KEY})
    assert code == 415 and "application/json" in reply["error"], reply
    code, reply = raw(mesh, "POST", "/api/v1/mesh/?actor=slow", body, {**JSON, **evil, "X-API-Key": A2A_KEY})
    assert code == 403, reply
    # The adapters refuse them too.
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tasks/list", "params": {}}
    assert raw(mesh, "POST", "/a2a/", rpc, {**plain, "X-API-Key": A2A_KEY})[0] == 415
    assert raw(mesh, "POST", "/a2a/", rpc, {**JSON, **evil, "X-API-Key": A2A_KEY})[0] == 403
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    assert raw(mesh, "POST", "/mcp", init, {**plain, "Authorization": f"Bearer {MCP_KEY}",
                                            "Accept": "application/json, text/event-stream"})[0] == 415
    # A preflight from a foreign origin gets no CORS grant.
    code, _ = raw(mesh, "OPTIONS", "/api/v1/mesh/", headers={**evil, "Access-Control-Request-Method": "POST"})
    assert code == 403
    # DNS rebinding: the loopback listener answers only loopback Host names.
    port = urllib.parse.urlparse(mesh.url).port
    code, _ = raw(mesh, "GET", "/api/v1/mesh/", headers={"Host": f"evil.example:{port}", "X-API-Key": A2A_KEY})
    assert code == 421
    code, _ = raw(mesh, "GET", "/api/v1/mesh/", headers={"Host": f"localhost:{port}", "X-API-Key": A2A_KEY})
    assert code == 200
    # No task was created by any of it.
    code, page = raw(mesh, "GET", "/api/v1/mesh/", headers={"X-API-Key": A2A_KEY})
    assert code == 200 and page["total"] == 0, page


def test_cli_works_against_a_mesh_with_auth(mesh):
    start(mesh)
    # The key from the mesh file (the CLI runs in the project folder).
    res = mesh.cli("send", "slow", json.dumps({"secret": "cli"}), "--wait", timeout=60)
    assert res.returncode == 0, res.stderr
    assert '"echo": "cli"' in res.stdout, res.stdout
    tid = mesh.cli("send", "slow", "{}", check=True).stdout.strip()
    mesh.wait_result(tid)
    assert mesh.cli("result", tid, check=True).returncode == 0
    assert "slow" in mesh.cli("status", check=True).stdout
    # TROUPE_API_KEY wins; a wrong one is refused with a hint.
    env = dict(os.environ, TROUPE_API_KEY="wrong")
    res = mesh.cli("status", env=env)
    assert res.returncode != 0 and "TROUPE_API_KEY" in res.stderr, res.stderr
    # With --url (another machine: no mesh file), the key comes from the environment.
    env = dict(os.environ, TROUPE_API_KEY=MCP_KEY)
    res = mesh.cli("status", "--url", mesh.url, env=env)
    assert res.returncode == 0, res.stderr
    res = mesh.cli("status", "--url", mesh.url, env={k: v for k, v in os.environ.items() if k != "TROUPE_API_KEY"})
    assert res.returncode != 0 and "401" in res.stderr, res.stderr
