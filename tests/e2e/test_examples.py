"""Every project under examples/ runs as its README says, with the outcomes it promises."""

import json
import re
import subprocess
import time
import urllib.request

QUESTION = "How does the embedded queue handle retries and backoff after a crash?"


def send_wait(mesh, actor, payload, route=None, timeout="20s", merge=False):
    """`troupe send ACTOR PAYLOAD --wait`; returns (CompletedProcess, task id).

    With merge=True stderr is folded into stdout, so the relative order of the live
    progress (stderr) and the result (stdout) can be checked.
    """
    args = [str(mesh.binary), "send", actor, json.dumps(payload), "--wait", "--timeout", timeout]
    if route:
        args += ["--route", ",".join(route)]
    res = subprocess.run(
        args, cwd=mesh.root, capture_output=not merge, text=True, timeout=60,
        stdout=subprocess.PIPE if merge else None, stderr=subprocess.STDOUT if merge else None,
    )
    text = res.stdout if merge else res.stderr
    m = re.search(r"^task ([0-9a-f-]{36})$", text, re.M)
    assert m, f"no task id in output (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res, m.group(1)


def create(mesh, actor, payload, route=()):
    """Creates a task over the mesh API (what `troupe send --route` does) and returns its id."""
    code, body = mesh.http("POST", "/troupe/v1/tasks",
                           {"actor": actor, "route_next": list(route), "payload": payload})
    assert code == 201, body
    return body["id"]


# -- (a) text-pipeline -------------------------------------------------------------------

def test_text_pipeline_result_and_model_loaded_once_per_replica(mesh):
    mesh.copy_example("text-pipeline")
    mesh.start()
    text = "<p>The new   release is <b>great</b>: fast and reliable.</p> We love it. Docs are still poor."
    res, first = send_wait(mesh, "clean", {"text": text}, route=["analyse", "summarize"])
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["text"] == "The new release is great: fast and reliable. We love it. Docs are still poor."
    assert out["analysis"]["words"] == 15
    # great, fast, reliable, love (+1 each) and poor (-1): (4 - 1) / 5
    assert out["analysis"]["sentiment"] == 0.6
    assert out["summary"] == {
        "label": "positive",
        "headline": "The new release is great: fast and reliable.",
        "about": "new, release, great",
    }

    # Eleven more messages, all queued at once.
    ids = [create(mesh, "clean", {"text": f"Message {i} is good."}, ["analyse", "summarize"])
           for i in range(11)]
    results = [mesh.wait_result(i) for i in ids] + [mesh.wait_result(first)]
    assert len(results) == 12
    models = [r["payload"]["model"] for r in results]
    # Every replica process loaded the model exactly once ...
    assert all(m["loads_in_process"] == 1 for m in models), models
    load_ids = {m["load_id"] for m in models}
    pids = {m["pid"] for m in models}
    assert len(load_ids) == len(pids) <= 2, models  # one load per process, maxReplicaCount 2
    # ... and served many messages with it: per instance, calls count up 1, 2, 3, ...
    for lid in load_ids:
        calls = sorted(m["calls"] for m in models if m["load_id"] == lid)
        assert calls == list(range(1, len(calls) + 1)), (lid, calls)
    assert max(m["calls"] for m in models) >= 6
    for r, i in zip(results, range(11)):
        assert r["payload"]["summary"]["label"] == "positive"
        assert r["payload"]["text"] == f"Message {i} is good."
        assert r["route"]["prev"] == ["clean", "analyse", "summarize"]
    assert mesh.stop() == 0


# -- (b) llm-judge -------------------------------------------------------------------------

def test_llm_judge_reroutes_by_score(mesh):
    mesh.copy_example("llm-judge")
    mesh.start()
    good = ("The embedded queue writes every message to a segmented log, schedules retries with "
            "exponential backoff, and replays the log after a crash so nothing acknowledged is lost.")
    weak = "The embedded queue keeps retries in a log."
    hopeless = "It retries."

    res, good_id = send_wait(mesh, "judge", {"question": QUESTION, "answer": good})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["verdict"] == "published"
    weak_id = create(mesh, "judge", {"question": QUESTION, "answer": weak})
    capped_id = create(mesh, "judge", {"question": QUESTION, "answer": hopeless, "max_rewrites": 1})
    looped_id = create(mesh, "judge", {"question": QUESTION, "answer": hopeless})

    # High score: straight to publish (read through `troupe result`).
    r = mesh.cli("result", good_id, check=True)
    stored = json.loads(r.stdout)
    assert stored["id"] == good_id
    assert stored["route"]["prev"] == ["judge", "publish"]
    assert stored["payload"]["rewrites"] == 0

    # Low score: one rewrite -> judge loop, then publish.
    weak_env = mesh.wait_result(weak_id)
    assert weak_env["route"]["prev"] == ["judge", "rewrite", "judge", "publish"]
    p = weak_env["payload"]
    assert p["verdict"] == "published" and p["rewrites"] == 1
    assert p["scores"][0] < 0.75 <= p["scores"][1]
    assert p["answer"] == weak + " It also covers backoff and crash."

    # Two loops are needed for a worse answer ...
    looped = mesh.wait_result(looped_id)
    assert looped["route"]["prev"] == ["judge", "rewrite", "judge", "rewrite", "judge", "publish"]
    assert looped["payload"]["verdict"] == "published"
    # ... and the attempt counter in the payload stops the loop when the budget is spent.
    capped = mesh.wait_result(capped_id)
    assert capped["route"]["prev"] == ["judge", "rewrite", "judge", "publish"]
    assert capped["payload"]["verdict"] == "needs_review"
    assert capped["payload"]["score"] < 0.75
    assert mesh.stop() == 0


# -- (c) fan-out ---------------------------------------------------------------------------

def test_fan_out_children_reach_sink_with_parent_id(mesh):
    mesh.copy_example("fan-out")
    mesh.start()
    words = [f"w{i}" for i in range(14)]
    res, parent = send_wait(mesh, "split", {"name": "notes.txt", "text": " ".join(words), "chunk_words": 3})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"document": "notes.txt", "chunks": 5}
    manifest = mesh.wait_result(parent)
    assert "parent_id" not in manifest
    assert manifest["route"]["prev"] == ["split"]

    def children_on_disk():
        kids = [e for e in mesh.results("succeeded").values() if e.get("parent_id") == parent]
        return kids if len(kids) == 5 else None

    kids = mesh.wait_for(children_on_disk, what="5 children in .troupe/succeeded")
    ids = {k["id"] for k in kids}
    assert len(ids) == 5 and parent not in ids
    assert sorted(k["payload"]["index"] for k in kids) == [0, 1, 2, 3, 4]
    for k in kids:
        assert k["route"]["prev"] == ["split", "embed"]
        assert k["status"]["phase"] == "succeeded"
        assert k["payload"]["document_task"] == parent
        assert k["payload"]["text"] == " ".join(words[3 * k["payload"]["index"]:][:3])
        assert len(k["payload"]["vector"]) == 4

    def listed():
        code, body = mesh.http("GET", f"/api/v1/mesh/?parent_id={parent}")
        assert code == 200, body
        done = [m for m in body["messages"] if m["status"] == "succeeded"]
        return body if len(done) == 5 else None

    body = mesh.wait_for(listed, what="5 succeeded children listed by parent_id")
    assert body["total"] == 5
    assert {m["id"] for m in body["messages"]} == ids
    assert all(m["data"]["parent_id"] == parent for m in body["messages"])
    assert mesh.stop() == 0


# -- (d) retries ---------------------------------------------------------------------------

def test_retries_flaky_succeeds_after_backoff(mesh):
    mesh.copy_example("retries")
    mesh.start()
    res, task = send_wait(mesh, "fetch", {"url": "https://example.com/report"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["succeeded_on_attempt"] == 3
    attempts = out["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
    # exponential backoff from initialDelay 500ms, no jitter: >= 0.5 s, then >= 1 s
    # (times are rounded to the millisecond by the handler).
    assert gaps[0] >= 0.5 - 0.002, gaps
    assert gaps[1] >= 1.0 - 0.002, gaps
    assert gaps[1] < 5, gaps
    env = mesh.wait_result(task)
    assert env["status"]["phase"] == "succeeded"
    assert env["status"]["attempt"] == 3
    assert (mesh.root / "state" / "fetch" / f"{task}.json").exists()
    assert mesh.status()["fetch"]["retried"] == 2

    # An error no rule matches (and no default policy) is not retried.
    res, other = send_wait(mesh, "fetch", {"url": "u", "fail_first": "not a number"})
    assert res.returncode == 1
    assert "task failed: ValueError: invalid literal for int()" in res.stderr
    st = mesh.wait_result(other, kind="failed")["status"]
    assert (st["reason"], st["attempt"], st["max_attempts"]) == ("RuntimeError", 1, 1)
    assert mesh.status()["fetch"]["retried"] == 2
    assert mesh.stop() == 0


def test_retries_always_failing_exhausts_into_failed(mesh):
    mesh.copy_example("retries")
    mesh.start()
    payload = {"card": "4000-0000-0000-0002", "amount": 12.5}
    res, task = send_wait(mesh, "charge", payload)
    assert res.returncode == 1, res.stdout
    assert "task failed: flaky.PaymentDeclined: card 4000-0000-0000-0002 declined for 12.5" in res.stderr
    assert "Traceback" in res.stderr
    assert res.stdout == ""

    env = mesh.wait_result(task, kind="failed")
    st = env["status"]
    assert st["phase"] == "failed"
    assert st["reason"] == "PolicyExhausted"
    assert st["actor"] == "charge"
    assert st["attempt"] == 3 and st["max_attempts"] == 3
    err = st["error"]
    assert err["type"] == "flaky.PaymentDeclined"
    assert err["mro"] == ["ValueError", "Exception"]
    assert "declined for 12.5" in err["message"]
    assert 'flaky.py", line' in err["traceback"] and "raise PaymentDeclined" in err["traceback"]
    assert env["payload"]["error"] == "processing_error"
    assert env["payload"]["original_payload"] == payload
    assert not (mesh.state_dir / "succeeded" / f"{task}.json").exists()
    code, t = mesh.task(task)
    assert code == 200 and t["status"] == "failed"
    assert mesh.stop() == 0


# -- (e) pause-resume ----------------------------------------------------------------------

def test_pause_then_resume_from_cli(mesh):
    mesh.copy_example("pause-resume")
    mesh.start()
    res, task = send_wait(mesh, "draft", {"ticket": 4521, "question": "Can I get a refund?"},
                          route=["x-pause", "finalize"])
    assert res.returncode == 3, res.stderr
    assert "paused: Review the drafted reply: approve it?" in res.stderr
    meta = json.loads(res.stdout)
    assert meta["prompt"] == "Review the drafted reply: approve it?"
    assert [f["name"] for f in meta["fields"]] == ["approved", "note"]

    paused_file = mesh.state_dir / "paused" / f"{task}.json"
    assert paused_file.exists()
    saved = json.loads(paused_file.read_text())
    assert saved["route"]["next"] == ["x-resume", "finalize"]
    assert saved["payload"]["draft"].startswith("Hello, thanks for reaching out about ticket #4521.")
    assert mesh.task(task)[1]["status"] == "paused"
    assert not (mesh.state_dir / "succeeded" / f"{task}.json").exists()

    r = mesh.cli("resume", task, '{"approved": true, "note": "Refund issued."}', check=True)
    assert r.stdout.strip() == task
    env = mesh.wait_result(task)
    assert env["payload"]["status"] == "sent"
    assert env["payload"]["reply"] == saved["payload"]["draft"] + " Refund issued."
    assert env["route"]["prev"][-1] == "finalize"
    mesh.wait_for(lambda: not paused_file.exists(), what="paused file removed")
    assert mesh.task(task)[1]["status"] == "succeeded"
    assert mesh.stop() == 0


def test_pause_then_reject_with_resume_wait(mesh):
    mesh.copy_example("pause-resume")
    mesh.start()
    res, task = send_wait(mesh, "draft", {"ticket": 7, "question": "Where is my order?"},
                          route=["x-pause", "finalize"])
    assert res.returncode == 3, res.stderr
    r = mesh.cli("resume", task, '{"approved": false}', "--wait")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ticket": 7, "status": "discarded", "reply": None}
    assert not (mesh.state_dir / "paused" / f"{task}.json").exists()
    # A finished task cannot be resumed again.
    again = mesh.cli("resume", task, '{"approved": true}')
    assert again.returncode != 0
    assert "only paused tasks can be resumed" in again.stderr
    assert mesh.stop() == 0


def test_paused_task_survives_a_restart(mesh):
    mesh.copy_example("pause-resume")
    mesh.start()
    res, task = send_wait(mesh, "draft", {"ticket": 9, "question": "Can I get a refund?"},
                          route=["x-pause", "finalize"])
    assert res.returncode == 3, res.stderr
    assert mesh.stop() == 0
    mesh.start()
    # The task store lives in memory; the paused task is re-registered from paused/.
    code, body = mesh.task(task)
    assert code == 200 and body["status"] == "paused", body
    r = mesh.cli("resume", task, '{"approved": true, "note": "Done."}', "--wait")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "sent"
    assert not (mesh.state_dir / "paused" / f"{task}.json").exists()
    assert mesh.stop() == 0


# -- (f) streaming -------------------------------------------------------------------------

HAIKU = "Messages wait in line / a replica wakes to serve / the queue drains to calm."


def test_streaming_tokens_before_result(mesh):
    mesh.copy_example("streaming")
    mesh.start()
    res, _ = send_wait(mesh, "generate", {"prompt": "Write a haiku about queues"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"prompt": "Write a haiku about queues", "text": HAIKU, "tokens": 16}
    # Tokens are printed as they arrive, concatenated: the whole text, in order, on one
    # line of stderr, before the final progress line.
    assert HAIKU in res.stderr.splitlines()
    assert res.stderr.index(HAIKU) < res.stderr.index("Completed processing")

    # Folded into one stream: tokens come before the result JSON.
    merged, _ = send_wait(mesh, "generate", {"prompt": "haiku please"}, merge=True)
    assert merged.returncode == 0
    out = merged.stdout
    assert out.index(HAIKU) < out.index('"prompt": "haiku please"')
    assert mesh.stop() == 0


def test_streaming_tokens_arrive_live_over_sse(mesh):
    """The FLY events reach an SSE client one by one while the handler still runs."""
    mesh.copy_example("streaming")
    mesh.start()
    task = create(mesh, "generate", {"prompt": "a haiku"})
    tokens, stamps, final = [], [], None
    with urllib.request.urlopen(f"{mesh.url}/api/v1/mesh/{task}/events", timeout=20) as resp:
        event = None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "fly":
                    tokens.append(data["payload"]["text"])
                    stamps.append(time.monotonic())
                elif event == "status" and data.get("status") == "succeeded":
                    final = data["result"]
                    break
    assert "".join(tokens) == HAIKU
    assert len(tokens) == 16
    # 16 tokens 50 ms apart: spread over time, not delivered in one burst at the end.
    assert stamps[-1] - stamps[0] >= 0.5, stamps
    assert final == {"prompt": "a haiku", "text": HAIKU, "tokens": 16}
    assert mesh.stop() == 0
