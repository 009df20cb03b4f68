"""The MCP adapter of gateway.md §3 against the real binary, driven by the official MCP
Python SDK (`mcp`, pinned in tests/requirements.txt): tools listed from a registry folder
and the mesh file, a call streaming progress and FLY log notifications before its result,
a failing handler as a tool error, the legacy HTTP+SSE transport, and the bearer key."""

import asyncio
import json
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

MESH = """
    gateway:
      mcp:
        tools_dir: tools
        poll_interval: 1s
        {api_key}
        tools:
          - name: explode
            actor: boom
            description: Always fails
            timeout: 30
    actors:
      - {{actor: story, handler: mcp_handlers.story, replicas: 1, scaling: {{enabled: false}}}}
      - {{actor: boom, handler: mcp_handlers.boom, replicas: 1, scaling: {{enabled: false}}}}
"""

TOOLS = """
    tools:
      - name: tell
        actor: story
        description: Streams words as FLY events, then returns the story
        timeout: 30
        progress: true
        inputSchema:
          type: object
          properties:
            words: {type: integer, description: How many words}
          required: [words]
"""

HANDLERS = """
    import time

    def story(payload):
        words = [f"w{i}" for i in range(payload["words"])]
        for w in words:
            time.sleep(0.02)
            yield "FLY", {"partial": True, "text": w}
        yield {"story": " ".join(words), "words": len(words)}

    def boom(payload):
        raise ValueError("kaboom: " + str(payload.get("why", "no reason")))
"""


def start(mesh, api_key=None):
    mesh.write("troupe.yaml", MESH.format(api_key=f"api_key: {api_key}" if api_key else ""))
    mesh.write("tools/tools.yaml", TOOLS)
    mesh.write("mcp_handlers.py", HANDLERS)
    mesh.start()
    info = json.loads((mesh.state_dir / "mesh.json").read_text())
    # mesh.json names the endpoint a client pastes (issue 9 item 6)
    assert info["mcp_url"].endswith("/mcp"), info
    return info["mcp_url"][:-len("/mcp")]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_tools_call_progress_fly_logs_and_errors(mesh):
    base = start(mesh)
    logs, progress = [], []

    async def on_log(params):
        logs.append(params)

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async def scenario():
        async with Client(base + "/mcp", logging_callback=on_log) as client:
            assert client.server_info.name == "asya-mcp-adapter"
            listed = await client.list_tools()
            tools = {t.name: t for t in listed.tools}
            assert set(tools) == {"tell", "explode"}
            assert tools["tell"].input_schema["required"] == ["words"]
            assert tools["tell"].input_schema["properties"]["words"]["type"] == "integer"
            assert tools["explode"].input_schema == {"type": "object"}

            ok = await client.call_tool("tell", {"words": 5}, progress_callback=on_progress)
            failed = await client.call_tool("explode", {"why": "testing"})
            missing = await client.call_tool("tell", {})
            return client.protocol_version, ok, failed, missing

    version, ok, failed, missing = run(scenario())
    assert version == "2025-11-25"

    assert not ok.is_error, ok
    assert json.loads(ok.content[0].text) == {"story": "w0 w1 w2 w3 w4", "words": 5}
    # FLY events arrive as info log notifications, in order, before the result.
    assert [(m.level, m.logger) for m in logs] == [("info", "tell")] * 5
    assert [m.data for m in logs] == [{"partial": True, "text": f"w{i}"} for i in range(5)]
    # Progress: out of 100, increasing.
    assert progress, "no progress notification"
    values = [p[0] for p in progress]
    assert values == sorted(values) and len(set(values)) == len(values), progress
    assert all(total == 100 and 0 <= v <= 100 for v, total, _ in progress), progress

    assert failed.is_error
    assert "kaboom: testing" in failed.content[0].text
    assert missing.is_error and "words" in missing.content[0].text


def test_legacy_sse_transport(mesh):
    base = start(mesh)

    async def scenario():
        async with Client(sse_client(base + "/mcp/sse"), mode="legacy") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("tell", {"words": 2})
            return names, result

    names, result = run(scenario())
    assert sorted(names) == ["explode", "tell"]
    assert json.loads(result.content[0].text)["story"] == "w0 w1"


def test_bearer_key(mesh):
    base = start(mesh, api_key="s3cret")

    # Without the key: 401 with the challenge, before any MCP processing.
    req = urllib.request.Request(
        base + "/mcp", method="POST",
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "t", "version": "1"}}}).encode(),
        headers={"Content-Type": "application/json",
                 "Accept": "application/json, text/event-stream"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"] == 'Bearer realm="asya-gateway"'

    async def connect(headers):
        http = httpx2.AsyncClient(headers=headers)
        async with http:
            async with Client(streamable_http_client(base + "/mcp", http_client=http)) as client:
                return [t.name for t in (await client.list_tools()).tools]

    # The SDK client is refused too.
    with pytest.raises(Exception):
        run(connect({}))
    with pytest.raises(Exception):
        run(connect({"Authorization": "Bearer wrong"}))
    # With the key it works.
    assert sorted(run(connect({"Authorization": "Bearer s3cret"}))) == ["explode", "tell"]
