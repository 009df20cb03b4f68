"""Troupe on real brokers, as separate processes, checked with the brokers' plain clients.

Each actor is a pod of two real processes, `troupe runtime` (the Python handler) and
`troupe sidecar` (configured only by the environment, protocol.md §15); crew actors are
native `troupe sidecar` processes (TROUPE_CREW). Envelopes are published and read with
plain clients (pika for RabbitMQ, boto3 for SQS, the REST API of the Pub/Sub emulator,
RESP for Redis, the NATS text protocol for JetStream) exactly as Asya's gateway and
sidecars do, so these tests also check wire compatibility (protocol.md §1-§4,
platform.md §1).

One broker per kind for the whole module (scripts/services/*.sh); every test works in a
namespace of its own (and, on RabbitMQ, an exchange of its own, since routing keys are
bare actor names), and stops every process it started.
"""

import datetime
import json
import os
import re
import time

import pytest

from brokers import (
    ENVELOPE_KEYS, REQUIRED_KEYS, STATUS_KEYS, TIMESTAMP, Group, NatsSpace, PubSubSpace,
    RabbitSpace, RedisSpace, Service, SqsSpace, envelope, results, unique_namespace, wait_until,
)

# RabbitMQ's max_message_size and Redis's proto-max-bulk-len for the module's servers
# (their defaults are 128 and 512 MiB): small, so that a handler can exceed them cheaply.
RABBIT_MAX_MESSAGE = 1024 * 1024
REDIS_MAX_BULK = 1024 * 1024
# Message size limits of the brokers (data plus attributes/headers).
LIMITS = {"rabbitmq": RABBIT_MAX_MESSAGE, "sqs": 256 * 1024, "pubsub": 10_000_000,
          "nats": 1024 * 1024,  # nats-server's default max_payload
          "redis": REDIS_MAX_BULK}
ALL = ["rabbitmq", "sqs", "pubsub", "redis", "nats"]
# Transports Asya has too: their wire format is Asya's.
ASYA = ["rabbitmq", "sqs", "pubsub"]
SPACES = {"rabbitmq": RabbitSpace, "sqs": SqsSpace, "pubsub": PubSubSpace,
          "redis": RedisSpace, "nats": NatsSpace}


# -- brokers, one per module ------------------------------------------------------------------

def start_service(factory, name, *args, env=None):
    svc = Service(name, factory.mktemp(name))
    svc.start(*args, env=env)
    return svc


@pytest.fixture(scope="module")
def rabbitmq_service(tmp_path_factory):
    svc = start_service(tmp_path_factory, "rabbitmq",
                        env={"RABBITMQ_TEST_MAX_MESSAGE_SIZE": str(RABBIT_MAX_MESSAGE),
                             "RABBITMQ_TEST_OWNER_PID": str(os.getpid())})
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def sqs_service(tmp_path_factory):
    svc = start_service(tmp_path_factory, "sqs", str(os.getpid()))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def pubsub_service(tmp_path_factory):
    svc = start_service(tmp_path_factory, "pubsub", str(os.getpid()))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def redis_service(tmp_path_factory):
    svc = start_service(tmp_path_factory, "redis", "--proto-max-bulk-len", str(REDIS_MAX_BULK))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def nats_service(tmp_path_factory):
    svc = start_service(tmp_path_factory, "nats")
    yield svc
    svc.stop()


def make_space(request, kind, exchange=None, ns=None):
    """A namespace (fresh unless given) on the module's broker of `kind`, with a plain
    client."""
    ns = ns or unique_namespace()
    svc = request.getfixturevalue(f"{kind}_service")
    if kind == "rabbitmq":
        space = RabbitSpace(svc.url, ns, exchange or f"ex-{ns}")
    else:
        space = SPACES[kind](svc.url, ns)
    request.addfinalizer(space.close)
    return space


@pytest.fixture(params=ALL)
def space(request):
    return make_space(request, request.param)


@pytest.fixture(params=ASYA)
def asya_space(request):
    """As `space`, on Asya's transports; on RabbitMQ through Asya's default exchange."""
    return make_space(request, request.param, exchange="asya")


@pytest.fixture
def group(troupe_bin, tmp_path):
    g = Group(troupe_bin, tmp_path)
    yield g
    g.stop_all()


def now_rfc3339(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_payload(i):
    """What a → b → c (tests/e2e/brokers/handlers.py) make of {"i": i}."""
    return {"i": i, "trail": ["a", "b", "c"], "v": (i * 2 + 1) * 10}


def publish_batch(space, ns, tag, indexes):
    ids = {}
    for i in indexes:
        tid = f"{ns}-{tag}-{i}"
        space.publish("a", envelope(tid, "a", ["b", "c"], {"i": i}))
        ids[tid] = i
    return ids


def wait_all_succeeded(group, folder, ids, timeout):
    def done():
        got = results(folder)
        missing = [t for t in ids if t not in got]
        return got if not missing else None

    return wait_until(done, timeout, f"{len(ids)} envelopes in {folder}", interval=0.25,
                      details=lambda: f"missing {sum(1 for t in ids if t not in results(folder))}\n"
                                      + group.logs())


# -- 1. multi-process pipeline, with a sidecar killed mid-run ----------------------------------

# Envelopes in the first batch and in the one during which a sidecar is killed. The
# emulators (moto, the Pub/Sub emulator) are slower, so they get smaller batches.
BATCHES = {"sqs": (100, 80), "pubsub": (100, 80)}
DEFAULT_BATCHES = (200, 150)


def test_pipeline_of_separate_processes_loses_nothing_when_a_sidecar_is_killed(space, group, tmp_path):
    ns, tenv = space.ns, space.env()
    batch1, batch2 = BATCHES.get(space.kind, DEFAULT_BATCHES)
    mount = tmp_path / "results"
    sink = group.crew("x-sink", ns, tenv, mount=mount)
    sump = group.crew("x-sump", ns, tenv, mount=mount)
    # b is a little slow so that the second batch is still in flight when it is killed.
    pods = {a: group.pod(a, f"handlers.{a}", ns, tenv,
                         runtime_env={"HANDLER_DELAY": "0.01"} if a == "b" else None)
            for a in "abc"}
    sidecars = [sink, sump] + [p.sidecar for p in pods.values()]
    for sc in sidecars:
        sc.wait_ready()
    for actor in ("a", "b", "c", "x-sink"):
        space.wait_queue(actor)

    # Batch 1: everything arrives, transformed by each actor in turn.
    ids1 = publish_batch(space, ns, "one", range(batch1))
    got = wait_all_succeeded(group, mount / "succeeded", ids1, timeout=120)
    for tid, i in ids1.items():
        env = got[tid]
        assert env["payload"] == expected_payload(i), env
        assert env["route"] == {"prev": ["a", "b", "c"], "curr": "", "next": []}, env
        assert env["status"]["phase"] == "succeeded" and env["status"]["reason"] == "Completed", env

    # Batch 2: b's sidecar is killed with SIGKILL while messages flow, then restarted
    # (its runtime keeps running, as in a pod whose sidecar container restarts).
    b = pods["b"]
    ids2 = publish_batch(space, ns, "two", range(batch1, batch1 + batch2))
    wait_until(lambda: len(b.calls()) >= batch1 + batch2 // 5, 60, "b to be mid-batch",
               interval=0.02, details=group.logs)
    b.sidecar.kill9()
    calls_at_kill = len(b.calls())
    assert calls_at_kill < batch1 + batch2, "b finished the batch before the kill: nothing was tested"
    time.sleep(0.5)
    b.sidecar.start()
    b.sidecar.wait_ready()
    got = wait_all_succeeded(group, mount / "succeeded", ids2, timeout=120)
    for tid, i in ids2.items():
        assert got[tid]["payload"] == expected_payload(i), got[tid]

    # Nothing lost, nothing failed; duplicates (redeliveries after the kill) are allowed.
    c_calls = group.calls("c")
    assert set(c_calls) == set(range(batch1 + batch2))
    duplicates = len(c_calls) - len(set(c_calls))
    b_calls = group.calls("b")
    print(f"\n[{space.kind}] c handled {len(c_calls)} messages for {batch1 + batch2} ids "
          f"({duplicates} duplicates); b had {calls_at_kill - batch1}/{batch2} calls at the kill, "
          f"{len(b_calls) - len(set(b_calls))} redelivered to b")
    assert duplicates <= 10, f"{duplicates} duplicates for one killed sidecar"
    assert results(mount / "failed") == {}
    assert set(results(mount / "succeeded")) == set(ids1) | set(ids2)

    # The restarted sidecar did real work: it consumed what its predecessor left.
    assert b.sidecar.metric("asya_actor_messages_received_total", queue="b", transport=space.kind) >= 1

    # §6.1 metrics of a sidecar that ran throughout.
    total = batch1 + batch2
    a_sc, c_sc = pods["a"].sidecar, pods["c"].sidecar
    assert a_sc.metric("asya_actor_messages_received_total", queue="a", transport=space.kind) >= total
    assert a_sc.metric("asya_actor_messages_processed_total", queue="a", status="success") >= total
    assert a_sc.metric("asya_actor_messages_sent_total", destination_queue=space.queue("b"),
                       message_type="routing") >= total
    assert a_sc.metric("asya_actor_processing_duration_seconds_count", queue="a") >= total
    assert a_sc.metric("asya_actor_runtime_execution_duration_seconds_count", queue="a") >= total
    assert a_sc.metric("asya_actor_message_size_bytes_count", direction="received") >= total
    assert a_sc.metric("asya_actor_messages_failed_total", queue="a") == 0
    assert c_sc.metric("asya_actor_messages_sent_total", destination_queue=space.queue("x-sink"),
                       message_type="sink") >= total
    wait_until(lambda: a_sc.metric("asya_actor_active_messages") == 0, 10, "a idle")
    assert sink.metric("asya_actor_messages_processed_total", queue="x-sink",
                       status="end_consumed") >= total
    assert sump.metric("asya_actor_messages_received_total", queue="x-sump") == 0
    for sc in sidecars:
        assert sc.alive(), sc.tail()
        assert sc.http("/readyz")[0] == 200, sc.name
        assert sc.http("/healthz")[0] == 200, sc.name


# -- 2. wire interop with plain clients ------------------------------------------------------

def test_wire_format_matches_asya_both_ways(asya_space, group, tmp_path):
    space = asya_space
    ns, tenv = space.ns, space.env()
    mount = tmp_path / "results"
    sink = group.crew("x-sink", ns, tenv, mount=mount)
    pods = [group.pod(a, f"handlers.{a}", ns, tenv) for a in ("a", "b")]  # no c: its queue fills
    for sc in [sink] + [p.sidecar for p in pods]:
        sc.wait_ready()
    space.wait_queue("a")
    deadline = now_rfc3339(600)

    # In: an envelope as Asya's gateway publishes it (partial status: deadline only).
    id1 = f"{ns}-in"
    space.publish("a", envelope(id1, "a", ["b"], {"i": 7}, headers={"x-custom": "kept"},
                                status={"deadline_at": deadline}))
    wait_until(lambda: (mount / "succeeded" / f"{id1}.json").exists(), 30, "x-sink to persist",
               details=group.logs)
    env = json.loads((mount / "succeeded" / f"{id1}.json").read_text())
    assert env["id"] == id1
    assert env["payload"] == {"i": 7, "trail": ["a", "b"], "v": 15}
    assert env["route"] == {"prev": ["a", "b"], "curr": "", "next": []}
    assert env["headers"]["x-custom"] == "kept"
    assert env["status"]["phase"] == "succeeded"
    assert env["status"]["deadline_at"] == deadline

    # Out: what b's sidecar puts on c's queue, read with the plain client.
    id2 = f"{ns}-out"
    space.publish("a", envelope(id2, "a", ["b", "c"], {"i": 8}, headers={"x-custom": "kept"},
                                status={"deadline_at": deadline}))
    msg = space.get(space.queue("c"), timeout=30)
    assert msg is not None, f"nothing on {space.queue('c')}\n{group.logs()}"
    body = msg.body
    assert body.startswith(b"{") and body.rstrip().endswith(b"}"), body[:100]
    body.decode("utf-8")  # UTF-8, no other encoding
    out = msg.json()
    assert isinstance(out, dict)
    assert REQUIRED_KEYS | {"status", "headers"} <= set(out) <= ENVELOPE_KEYS, sorted(out)
    assert "parent_id" not in out  # frame 0 keeps the input's (absent) parent_id
    assert out["id"] == id2
    assert out["route"] == {"prev": ["a", "b"], "curr": "c", "next": []}
    assert out["payload"] == {"i": 8, "trail": ["a", "b"], "v": 17}
    assert out["headers"]["x-custom"] == "kept"
    st = out["status"]
    assert set(st) <= STATUS_KEYS, sorted(st)
    assert (st["phase"], st["actor"], st["attempt"], st["max_attempts"]) == ("pending", "c", 1, 1), st
    assert TIMESTAMP.match(st["created_at"]) and TIMESTAMP.match(st["updated_at"]), st
    assert st["deadline_at"] == deadline
    assert "reason" not in st and "error" not in st, st
    if space.kind == "rabbitmq":
        m = msg.meta
        assert (m["exchange"], m["routing_key"]) == ("asya", "c"), m
        assert m["content_type"] == "application/json", m
        assert m["delivery_mode"] == 2, m  # persistent
        assert all(k.startswith("x-troupe-") for k in m["headers"]), m["headers"]
    else:  # SQS message attributes, Pub/Sub attributes
        assert all(k.startswith("x-troupe-") for k in msg.meta["attributes"]), msg.meta
    # Exactly one message for one envelope.
    assert space.get(space.queue("c"), timeout=1) is None


# -- 3. troupe up on a broker ------------------------------------------------------------------

def mesh_transport_url(kind, svc, ns):
    """The mesh file's `transport:` for the module's broker of `kind`."""
    if kind == "rabbitmq":
        return f"{svc.url}?exchange=ex-{ns}"
    if kind == "sqs":
        return f"sqs://us-east-1?endpoint={svc.url}"
    if kind == "pubsub":
        return f"pubsub://{PubSubSpace.project}?endpoint={svc.url.split('://', 1)[-1]}"
    return svc.url


# On Pub/Sub (no backlog count) the autoscaler keeps one replica per actor running.
@pytest.mark.parametrize("kind", ALL)
def test_troupe_up_runs_a_mesh_on_a_broker(kind, mesh, request, monkeypatch):
    ns = unique_namespace()
    svc = request.getfixturevalue(f"{kind}_service")
    if kind == "sqs":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    mesh.write("troupe.yaml", f"""
        namespace: {ns}
        transport: "{mesh_transport_url(kind, svc, ns)}"
        actors:
          - actor: upper
            handler: pipe.upper
          - actor: exclaim
            handler: pipe.Exclaim.run
    """)
    mesh.write("pipe.py", """
        def upper(p):
            p["text"] = p["text"].upper()
            return p

        class Exclaim:
            def __init__(self):
                self.suffix = "!"

            def run(self, p):
                p["text"] += self.suffix
                return p
    """)
    mesh.start(timeout=60)
    res = mesh.cli("send", "upper", '{"text": "hi"}', "--route", "exclaim", "--wait",
                   "--timeout", "30s")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{mesh.log()[-4000:]}"
    assert json.loads(res.stdout) == {"text": "HI!"}
    assert "Processing in upper" in res.stderr

    # It ran on the broker: the actor queues live there, and no embedded queue was made.
    client = make_space(request, kind, exchange=f"ex-{ns}", ns=ns)
    for actor in ("upper", "exclaim", "x-sink"):
        assert client.exists(client.queue(actor)), actor
    queues = mesh.state_dir / "queues"
    assert not queues.exists() or not any(queues.iterdir()), list(queues.iterdir())
    assert mesh.stop() == 0


# -- 4. faults ---------------------------------------------------------------------------------

def test_unreachable_broker_is_retried_with_backoff_until_it_comes_up(rabbitmq_service, group, tmp_path):
    """The sidecar starts before the broker: it waits (WARNs naming the URL, growing gaps,
    no crash loop), then consumes once the broker is up."""
    svc = rabbitmq_service
    port = re.search(r"@127\.0\.0\.1:(\d+)/", svc.url).group(1)
    ns = unique_namespace()
    tenv = {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": svc.url,
            "ASYA_RABBITMQ_EXCHANGE": f"ex-{ns}"}
    mount = tmp_path / "results"
    svc.stop()
    try:
        sink = group.crew("x-sink", ns, tenv, mount=mount)
        shown = f"amqp://guest:***@127.0.0.1:{port}/"
        lines = sink.wait_log(r"WARN.*cannot connect to the broker; retrying", timeout=60, count=2)
        assert all(shown in ln for ln in lines), lines
        assert "guest:guest" not in sink.log()
        retry_in = [re.search(r"retry_in=(\S+)", ln).group(1) for ln in lines]
        assert retry_in[:2] == ["1s", "2s"], lines  # the wait between attempts grows
        warns = [ln for ln in sink.log().splitlines() if " WARN " in ln]
        assert all(shown in ln for ln in warns), warns
        assert len(warns) <= 8, f"too many WARNs for two attempts (a hot loop?):\n{sink.tail()}"
        assert sink.alive()
        assert sink.http("/healthz")[0] == 200
        assert sink.http("/readyz")[0] == 503
    finally:
        svc.restart()
    sink.wait_log(r"sidecar consuming", timeout=90)
    sink.wait_ready(30)
    client = RabbitSpace(svc.url, ns, f"ex-{ns}")
    try:
        ts = now_rfc3339()
        tid = f"{ns}-late"
        client.wait_queue("x-sink")
        client.publish("x-sink", envelope(tid, "", [], {"ok": True}, prev=["a"], status={
            "phase": "succeeded", "reason": "Completed", "actor": "a", "attempt": 1,
            "max_attempts": 1, "created_at": ts, "updated_at": ts}))
    finally:
        client.close()
    path = mount / "succeeded" / f"{tid}.json"
    wait_until(path.exists, 30, "x-sink to persist after the broker came up", details=sink.tail)
    assert json.loads(path.read_text())["payload"] == {"ok": True}


@pytest.mark.parametrize("user,password", [("guest", "wrong-secret"), ("nobody", "wrong-secret")])
def test_bad_credentials_exit_at_once_with_a_clear_message(rabbitmq_service, group, user, password):
    port = re.search(r"@127\.0\.0\.1:(\d+)/", rabbitmq_service.url).group(1)
    ns = unique_namespace()
    url = f"amqp://{user}:{password}@127.0.0.1:{port}/%2f"
    sc = group.sidecar("a", group.sidecar_env("a", ns, {"ASYA_TRANSPORT": "rabbitmq",
                                                         "ASYA_RABBITMQ_URL": url}))
    started = time.monotonic()
    rc = sc.wait_exit(20)
    assert rc not in (0, None), sc.tail()
    assert time.monotonic() - started < 15, "bad credentials must not be retried"
    log = sc.log()
    assert "refused the credentials" in log and "check the user name and password" in log, log
    assert f"127.0.0.1:{port}" in log
    assert password not in log, "the password leaked into the log"


def test_output_over_the_broker_limit_requeues_the_input(space, group, tmp_path):
    """A handler returns more than the broker takes: the send fails with a clear error,
    the input is redelivered (then dead-lettered by the transport), x-sink gets nothing."""
    ns, tenv = space.ns, space.env()
    limit = LIMITS[space.kind]
    mount = tmp_path / "results"
    sink = group.crew("x-sink", ns, tenv, mount=mount)
    pod = group.pod("big", "handlers.big", ns, tenv)
    sink.wait_ready()
    pod.wait_ready()
    space.wait_queue("big")
    tid = f"{ns}-big"
    payload = {"i": 1, "size": limit + 10_000}
    body = envelope(tid, "big", [], payload)
    space.publish("big", body)

    sc = pod.sidecar
    # One WARN when sends start failing; the retries after it (with backoff) log at DEBUG.
    lines = sc.wait_log(r"send failed; the input is requeued", timeout=60, count=1)
    assert all("exceeds" in ln and "limit" in ln for ln in lines), lines
    wait_until(lambda: len(pod.calls()) >= 2, 30, "the input to be redelivered", details=sc.tail)
    # The second call is recorded when it starts; its failed send is counted after it returns.
    wait_until(lambda: sc.metric("asya_actor_messages_failed_total", queue="big",
                                 reason="transport_error") >= 2,
               30, "the second failed send to be counted", details=sc.tail)

    # Not lost: after its last delivery the transport moves the input, unchanged, to the DLQ.
    dlq = f"asya-{ns}-big-dlq" if space.kind == "rabbitmq" else f"asya-{ns}-dlq"
    msg = space.get(dlq, timeout=60)
    assert msg is not None, f"the input is neither on its queue nor in {dlq}\n{sc.tail()}"
    dead = msg.json()
    assert dead["id"] == tid and dead["payload"] == payload, dead
    calls = len(pod.calls())
    assert 2 <= calls <= 4, calls
    print(f"\n[{space.kind}] the handler ran {calls} times before the input was dead-lettered")

    # x-sink never saw a broken (or any) envelope.
    assert results(mount / "succeeded") == {} and results(mount / "failed") == {}
    assert sink.metric("asya_actor_messages_received_total", queue="x-sink") == 0
    assert space.depth(space.queue("x-sink")) == 0
    assert sc.alive() and sc.http("/readyz")[0] == 200


def test_non_json_message_goes_to_the_sump(space, group, tmp_path):
    ns, tenv = space.ns, space.env()
    mount = tmp_path / "results"
    sump = group.crew("x-sump", ns, tenv, mount=mount, extra={"TROUPE_LOG_FORMAT": "json"})
    pod = group.pod("a", "handlers.a", ns, tenv)
    sump.wait_ready()
    pod.wait_ready()
    space.wait_queue("a")
    raw = b"this is not JSON {"
    space.publish("a", raw)

    def sump_records():
        out = []
        for line in sump.log().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("message") == "envelope reached the sump":
                out.append(rec)
        return out

    recs = wait_until(sump_records, 30, "x-sump to log the envelope", details=group.logs)
    assert len(recs) == 1, recs
    assert recs[0]["level"] == "ERROR"
    env = json.loads(recs[0]["envelope"])
    assert env["id"], "a generated id"
    assert env["route"] == {"prev": [], "curr": "x-sump", "next": []}
    st = env["status"]
    assert (st["phase"], st["reason"], st["actor"]) == ("failed", "ParseError", "a"), st
    assert env["payload"]["error"].startswith("Failed to parse message: "), env
    assert env["payload"]["original_body"] == raw.decode()
    # Stored under its generated id (protocol.md §8 step 1).
    stored = wait_until(lambda: results(mount / "failed"), 10, "x-sump to store it", details=group.logs)
    assert stored == {env["id"]: env}
    assert pod.calls() == [], "the handler must not see a poison message"
    sc = pod.sidecar
    assert sc.metric("asya_actor_messages_failed_total", queue="a", reason="parse_error") == 1
    assert sc.metric("asya_actor_messages_sent_total", destination_queue=space.queue("x-sump"),
                     message_type="sump") == 1
    # Acked, not redelivered.
    time.sleep(1)
    assert space.depth(space.queue("a")) == 0
    assert len(sump_records()) == 1


# -- 5. a Kubernetes-style deployment: troupe gateway + sidecar pods on a broker -------------

def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sse_statuses(base, path, timeout=60):
    import http.client
    import urllib.parse
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    out, event, data = [], None, []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and event:
            out.append((event, json.loads("\n".join(data))))
            event, data = None, []
    conn.close()
    return out


def test_standalone_gateway_and_sidecar_pods_on_rabbitmq(request, group, tmp_path, troupe_bin):
    import subprocess
    import urllib.request
    space = make_space(request, "rabbitmq", exchange="asya")
    ns, tenv = space.ns, space.env()
    ext, internal = _free_port(), _free_port()
    gw_env = dict(clean_env_for_gateway(), TROUPE_GATEWAY_BIND="127.0.0.1",
                  ASYA_MESH_EXTERNAL_PORT=str(ext), ASYA_MESH_INTERNAL_PORT=str(internal),
                  ASYA_INTERNAL_URL=f"http://127.0.0.1:{internal}", ASYA_NAMESPACE=ns,
                  ASYA_QUEUE_TRANSPORT="rabbitmq", ASYA_RABBITMQ_URL=tenv["ASYA_RABBITMQ_URL"],
                  TROUPE_GATEWAY_ACTORS="a,x-sink,x-sump", TROUPE_MCP_PORT="off", TROUPE_A2A_PORT="off")
    log = open(tmp_path / "gateway.log", "ab")
    gw = subprocess.Popen([str(troupe_bin), "gateway"], env=gw_env, stdout=log, stderr=subprocess.STDOUT)
    request.addfinalizer(lambda: (gw.poll() is None and gw.kill(), gw.wait()))
    base = f"http://127.0.0.1:{ext}"
    sink = group.crew("x-sink", ns, tenv, mount=tmp_path / "results")
    group.crew("x-sump", ns, tenv, mount=tmp_path / "results")
    pod = group.pod("a", "handlers.a", ns, tenv)
    sink.wait_ready()
    pod.sidecar.wait_ready()

    def health():
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(health, 20, "troupe gateway to listen", details=lambda: (tmp_path / "gateway.log").read_text())

    def post(path, body):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    assert post("/api/v1/mesh/?actor=nope", {})[0] == 404
    code, reply = post("/api/v1/mesh/?actor=a", {"payload": {"i": 7}, "timeout": 60})
    assert code == 201, reply
    events = _sse_statuses(base, f"/api/v1/mesh/{reply['id']}/events")
    statuses = [d["status"] for e, d in events if e == "status"]
    # the sidecars reported over HTTP to the gateway named in x-asya-gateway-url
    assert "running" in statuses and statuses[-1] == "succeeded", events
    final = events[-1][1]
    assert final["result"] == {"i": 7, "trail": ["a"], "v": 14}, final
    assert final["progress"] == 100
    stored = results(tmp_path / "results" / "succeeded")[reply["id"]]
    assert stored["headers"]["x-asya-gateway-url"] == f"http://127.0.0.1:{internal}"
    gw.terminate()
    assert gw.wait(20) == 0


def clean_env_for_gateway():
    return {k: v for k, v in os.environ.items() if not k.startswith(("ASYA_", "TROUPE_"))}
