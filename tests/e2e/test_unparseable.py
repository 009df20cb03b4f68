"""Messages that cannot be parsed at all become failed tasks under a generated id: stored
in failed/ by x-sump, counted by `troupe status`, listed by the mesh API, each with the
reason and the raw bytes (issue 9, item 11)."""

import json
import uuid

import pytest

ECHO = """
    import json, os

    HERE = os.path.dirname(os.path.abspath(__file__))

    def echo(p):
        with open(os.path.join(HERE, "calls.log"), "a") as f:
            f.write(json.dumps(p) + "\\n")
        return p
"""

# body -> how the stored reason starts
BODIES = {
    b"this is not json": "Failed to parse message: ",
    b"": "Failed to parse message: ",
    b'{"route": {"prev": [], "curr": "a", "next": []}, "payload": {"k": 1}}': "",
    b'[{"id": "x1"}, 2, 3]': "Failed to parse message: ",
}


@pytest.fixture
def started(mesh):
    mesh.write("troupe.yaml", """
        actors:
          - actor: a
            handler: h.echo
    """)
    mesh.write("h.py", ECHO)
    mesh.start()
    yield mesh
    mesh.stop()


def stored_failures(mesh):
    """failed/ envelopes keyed by their raw body."""
    return {env["payload"].get("original_body"): env for env in mesh.results("failed").values()}


def test_unparseable_messages_are_stored_counted_and_listed(started):
    mesh = started
    for body in BODIES:
        mesh.publish_raw("a", body)
    mesh.wait_for(lambda: len(mesh.results("failed")) == len(BODIES), timeout=30,
                  what="one failed/ file per unparseable message")
    stored = stored_failures(mesh)
    assert set(stored) == {b.decode() for b in BODIES}, stored
    assert not (mesh.root / "calls.log").exists(), "the handler never sees them"

    ids = {}
    for body, reason in BODIES.items():
        env = stored[body.decode()]
        task_id = env["id"]
        uuid.UUID(task_id)  # a generated id
        ids[body] = task_id
        assert (mesh.state_dir / "failed" / f"{task_id}.json").exists()
        assert env["status"]["phase"] == "failed"
        assert env["status"]["reason"] == "ParseError"
        assert env["status"]["actor"] == "a"
        error = env["payload"]["error"]
        if reason:
            assert error.startswith(reason), error
        else:
            assert error.startswith("Failed to parse message: ") or error == "Message missing required 'id' field", error

        # The mesh API has a record of it: failed, with the reason and the raw bytes.
        def failed_record():
            code, task = mesh.task(task_id)
            return task if code == 200 and task.get("status") == "failed" else None
        task = mesh.wait_for(failed_record, timeout=10, what=f"mesh API record of {task_id}")
        assert task["data"]["error"] == error, task
        assert task["data"]["payload"]["original_body"] == body.decode(), task

        # `troupe result ID` prints the stored envelope.
        res = mesh.cli("result", task_id)
        assert res.returncode == 0, res.stderr
        printed = json.loads(res.stdout)
        assert printed["payload"]["original_body"] == body.decode()
        assert printed["status"]["reason"] == "ParseError"

    # The listing shows every one of them.
    code, page = mesh.http("GET", "/api/v1/mesh/")
    assert code == 200, page
    listed = {t["id"]: t for t in page["messages"]}
    for task_id in ids.values():
        assert task_id in listed, (task_id, page)
        assert listed[task_id]["status"] == "failed"

    # `troupe status`: the actor counts every failure and names the last one by id.
    mesh.wait_for(lambda: mesh.status()["x-sump"]["failed"] == len(BODIES), timeout=10,
                  what="x-sump count")
    row = mesh.status()["a"]
    assert row["failed"] == len(BODIES), row
    assert row["last_error"].split(": ", 1)[0] in ids.values(), row
    res = mesh.cli("status")
    assert res.returncode == 0, res.stderr
    line = next(l for l in res.stdout.splitlines() if l.split()[:1] == ["a"])
    assert line.split()[6] == str(len(BODIES)), line
    assert row["last_error"].split(": ", 1)[0] in line, line


def test_unparseable_message_sent_straight_to_x_sump_is_stored(started):
    mesh = started
    mesh.publish_raw("x-sump", b"\x00garbage")
    mesh.wait_for(lambda: len(mesh.results("failed")) == 1, timeout=30, what="failed/ file")
    (task_id, env), = mesh.results("failed").items()
    uuid.UUID(task_id)
    assert env["status"]["reason"] == "ParseError"
    assert env["payload"]["original_body"] == "\x00garbage"
    code, task = mesh.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(mesh.task(task_id)),
                               timeout=10, what="mesh API record")
    assert task["status"] == "failed", task
