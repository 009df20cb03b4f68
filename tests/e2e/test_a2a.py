"""The A2A adapter of gateway.md §4 against the real binary, driven by the official A2A
Python SDK (`a2a-sdk`, pinned to the last A2A v0.3 release in tests/requirements.txt):
the agent card, message/send to completion with the result artifact, message/stream with
FLY tokens as `fly-stream` chunks, a flow through x-pause reaching input-required and a
reply resuming it, cancel, and tasks kept apart between callers (API key vs JWT subjects
verified against a JWKS served by the test)."""

import asyncio
import http.server
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientHTTPError, A2AClientJSONRPCError
from a2a.types import DataPart, Message, Part, Role, TaskIdParams, TaskQueryParams, TextPart
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

FIXTURES = Path(__file__).parent / "a2a"
API_KEY = "e2e-secret"
ISSUER = "https://issuer.e2e.test"
AUDIENCE = "troupe-a2a-e2e"
KID = "e2e-key"

MESH = """
    gateway:
      a2a:
        agents_dir: agents
        poll_interval: 1s
        name: Troupe e2e agents
        description: A2A adapter end-to-end test
        version: 9.9.9
        provider_org: Troupe tests
        provider_url: https://troupe.invalid
        api_key: {api_key}
        {jwt}
        agents:
          - name: writer
            actor: generate
            description: Streams a reply word by word
            streaming: true
            timeout: 60
            skills: [{{id: write, name: Write, description: Streams a reply, tags: [text]}}]
    actors:
      - {{actor: generate, handler: a2a_handlers.generate, replicas: 1, scaling: {{enabled: false}}}}
      - {{actor: review, handler: a2a_handlers.review, replicas: 1, scaling: {{enabled: false}}}}
      - {{actor: finalize, handler: a2a_handlers.finalize, replicas: 1, scaling: {{enabled: false}}}}
      - {{actor: sleeper, handler: a2a_handlers.sleeper, replicas: 1, scaling: {{enabled: false}}}}
    crew:
      pause_metadata:
        prompt: "Approve the draft?"
        fields:
          - {{name: approved, type: boolean, prompt: "Send it?", required: true}}
          - {{name: note, type: string, prompt: "Note for the customer", required: false}}
"""


class Jwks:
    """An RSA key and a JWKS endpoint for it on 127.0.0.1."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [dict(public, kid=KID, alg="RS256", use="sig")]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub, issuer=ISSUER, audience=AUDIENCE, ttl=600):
        now = int(time.time())
        claims = {"sub": sub, "iss": issuer, "aud": audience, "iat": now, "nbf": now - 5,
                  "exp": now + ttl}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks():
    j = Jwks()
    yield j
    j.close()


def start(mesh, jwks=None):
    jwt_cfg = ""
    if jwks is not None:
        jwt_cfg = (f"jwt_jwks_url: {jwks.url}\n        jwt_issuer: {ISSUER}\n"
                   f"        jwt_audience: {AUDIENCE}")
    mesh.write("troupe.yaml", MESH.format(api_key=API_KEY, jwt=jwt_cfg))
    mesh.write("agents/agents.yaml", (FIXTURES / "agents" / "agents.yaml").read_text())
    mesh.write("a2a_handlers.py", (FIXTURES / "a2a_handlers.py").read_text())
    mesh.start()
    info = json.loads((mesh.state_dir / "mesh.json").read_text())
    # mesh.json names the endpoint a client pastes (issue 9 item 6)
    assert info["a2a_url"].endswith("/a2a/"), info
    return info["a2a_url"][:-len("/a2a/")]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def message(*parts, task_id=None, context_id=None):
    wrapped = [Part(root=TextPart(text=p) if isinstance(p, str) else DataPart(data=p))
               for p in parts]
    return Message(role=Role.user, parts=wrapped, message_id=str(uuid.uuid4()),
                   task_id=task_id, context_id=context_id)


def snapshot(event):
    """The SDK updates one Task object in place: copy it as it was at this event."""
    task, update = event
    return task.model_copy(deep=True), update


class Caller:
    """An SDK client for the adapter with one identity (its HTTP headers)."""

    def __init__(self, base, headers):
        self.base = base
        self.headers = headers

    async def card(self):
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            return await A2ACardResolver(http, self.base).get_agent_card()

    async def _client(self, http, streaming, polling=False):
        card = await A2ACardResolver(http, self.base).get_agent_card()
        return ClientFactory(ClientConfig(httpx_client=http, streaming=streaming,
                                          polling=polling)).create(card)

    async def send(self, msg, skill=None, streaming=False, polling=False):
        """All events of one message: [(task, update)] (a single item when not streaming)."""
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            client = await self._client(http, streaming, polling)
            meta = {"skill": skill} if skill else None
            return [snapshot(ev) async for ev in client.send_message(msg, request_metadata=meta)]

    async def get(self, task_id):
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            client = await self._client(http, streaming=False)
            return await client.get_task(TaskQueryParams(id=task_id))

    async def cancel(self, task_id):
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            client = await self._client(http, streaming=False)
            return await client.cancel_task(TaskIdParams(id=task_id))

    async def resubscribe(self, task_id):
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            client = await self._client(http, streaming=True)
            return [snapshot(ev) async for ev in client.resubscribe(TaskIdParams(id=task_id))]

    async def rpc(self, method, params):
        """A raw JSON-RPC call (methods the SDK has no helper for)."""
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            r = await http.post(self.base + "/a2a/", json={"jsonrpc": "2.0", "id": 1,
                                                           "method": method, "params": params})
            r.raise_for_status()
            return r.json()


def result_of(task):
    arts = [a for a in task.artifacts or [] if a.artifact_id == "result"]
    assert len(arts) == 1, task
    assert arts[0].name == "Task result"
    return json.loads(arts[0].parts[0].root.text)


def rpc_error_code(excinfo):
    return excinfo.value.error.code


def test_card_send_and_stream(mesh):
    base = start(mesh)
    keyed = Caller(base, {"X-API-Key": API_KEY})

    card = run(Caller(base, {}).card())  # public: no credentials
    assert card.name == "Troupe e2e agents"
    assert card.version == "9.9.9"
    assert card.protocol_version == "0.3.0"
    assert card.url == base + "/a2a/"
    assert card.capabilities.streaming is True
    assert card.capabilities.push_notifications is False
    assert card.provider.organization == "Troupe tests"
    assert {s.id for s in card.skills} == {"write", "review", "sleeper"}
    assert "apiKey" in card.security_schemes
    legacy = httpx.get(base + "/.well-known/agent.json", timeout=30)
    assert legacy.status_code == 200 and legacy.json()["name"] == card.name

    # JSON-RPC needs credentials.
    r = httpx.post(base + "/a2a/", json={"jsonrpc": "2.0", "id": 1, "method": "tasks/list"},
                   timeout=30)
    assert r.status_code == 401
    with pytest.raises(A2AClientHTTPError) as e:
        run(Caller(base, {"X-API-Key": "wrong"}).send(message("x"), skill="write"))
    assert e.value.status_code == 401

    # message/send blocks until the task completes; the result is an artifact.
    [(task, update)] = run(keyed.send(message("hello mesh world"), skill="write"))
    assert update is None
    assert task.status.state.value == "completed"
    assert result_of(task) == {"text": "hello mesh world", "words": 3, "task": task.id}
    got = run(keyed.get(task.id))
    assert got.status.state.value == "completed"
    assert result_of(got)["words"] == 3
    assert got.context_id == task.context_id

    # message/stream relays the FLY tokens as chunks of the fly-stream artifact.
    words = "one two three four five".split()
    events = run(keyed.send(message(" ".join(words)), skill="write", streaming=True))
    updates = [u for _, u in events if u is not None]
    assert events[0][1] is None, "the Task comes first"
    assert events[0][0].status.state.value == "submitted"
    chunks = [u for u in updates
              if u.kind == "artifact-update" and u.artifact.artifact_id == "fly-stream"]
    tokens = [json.loads(c.artifact.parts[0].root.text) for c in chunks if c.artifact.parts]
    assert tokens == [{"partial": True, "text": w} for w in words]
    assert [bool(c.append) for c in chunks] == [False] + [True] * len(words)
    assert chunks[-1].last_chunk is True and chunks[-1].artifact.parts == []
    states = [u.status.state.value for u in updates if u.kind == "status-update"]
    assert states[0] == "working" and states[-1] == "completed"
    assert updates[-1].final is True
    final_task = events[-1][0]
    assert final_task.status.state.value == "completed"
    assert result_of(final_task)["text"] == " ".join(words)
    # The SDK's task tracker joined the chunks into one fly-stream artifact.
    fly = [a for a in final_task.artifacts if a.artifact_id == "fly-stream"][0]
    assert len(fly.parts) == len(words)

    # Resubscribing to the finished task replays its end.
    again = run(keyed.resubscribe(task.id))
    assert again[-1][0].status.state.value == "completed"


def test_pause_resume_cancel_and_owners(mesh, jwks):
    base = start(mesh, jwks)
    alice = Caller(base, {"Authorization": f"Bearer {jwks.token('alice')}"})
    bob = Caller(base, {"Authorization": f"Bearer {jwks.token('bob')}"})
    keyed = Caller(base, {"X-API-Key": API_KEY})

    # Tokens with the wrong issuer or audience, or expired, are refused.
    for token in (jwks.token("alice", issuer="https://evil.test"),
                  jwks.token("alice", audience="other"),
                  jwks.token("alice", ttl=-3600)):
        r = httpx.post(base + "/a2a/", headers={"Authorization": f"Bearer {token}"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tasks/list"}, timeout=30)
        assert r.status_code == 401, token

    # A flow through x-pause stops at input-required with the pause metadata.
    [(task, _)] = run(alice.send(message("Can I get a refund?"), skill="review"))
    assert task.status.state.value == "input-required"
    parts = [p.root for p in task.status.message.parts]
    assert parts[1].data["pause_metadata"]["prompt"] == "Approve the draft?"
    assert run(alice.get(task.id)).status.state.value == "input-required"

    # Other callers cannot see, resume or cancel it.
    for other in (bob, keyed):
        with pytest.raises(A2AClientJSONRPCError) as e:
            run(other.get(task.id))
        assert rpc_error_code(e) == -32001
        with pytest.raises(A2AClientJSONRPCError) as e:
            run(other.send(message({"approved": True}, task_id=task.id,
                                   context_id=task.context_id)))
        assert rpc_error_code(e) == -32001
        with pytest.raises(A2AClientJSONRPCError) as e:
            run(other.cancel(task.id))
        assert rpc_error_code(e) == -32001
        listed = run(other.rpc("tasks/list", {}))["result"]["tasks"]
        assert task.id not in [t["id"] for t in listed]
    listed = run(alice.rpc("tasks/list", {}))["result"]["tasks"]
    assert [t["id"] for t in listed] == [task.id]

    # A reply on the task resumes it; the stream follows it to the end.
    reply = message({"approved": True, "note": "Refund issued."}, task_id=task.id,
                    context_id=task.context_id)
    events = run(alice.send(reply, streaming=True))
    assert events[0][0].status.state.value == "working"
    final = events[-1][0]
    assert final.id == task.id
    assert final.status.state.value == "completed"
    assert result_of(final) == {"draft": "Re: Can I get a refund?", "approved": True,
                                "note": "Refund issued."}
    assert result_of(run(alice.get(task.id)))["approved"] is True

    # Cancel: a long task is canceled; a second cancel is refused as not cancelable.
    [(slow, _)] = run(keyed.send(message("zzz"), skill="sleeper", polling=True))
    assert slow.status.state.value in ("submitted", "working")
    mesh.wait_for(lambda: run(keyed.get(slow.id)).status.state.value == "working",
                  what="sleeper working")
    canceled = run(keyed.cancel(slow.id))
    assert canceled.status.state.value == "canceled"
    assert run(keyed.get(slow.id)).status.state.value == "canceled"
    with pytest.raises(A2AClientJSONRPCError) as e:
        run(keyed.cancel(slow.id))
    assert rpc_error_code(e) == -32002
    with pytest.raises(A2AClientJSONRPCError) as e:
        run(alice.get(slow.id))
    assert rpc_error_code(e) == -32001
