"""The `troupe` CLI: status, result, errors before start, logs, shutdown."""

import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

TWO_ACTORS = """
    actors:
      - actor: ok
        handler: h.ok
      - actor: bad
        handler: h.bad
"""

HANDLERS = """
    import os
    import time

    def ok(p):
        time.sleep(p.get("sleep", 0))
        p["pid"] = os.getpid()
        return p

    def bad(p):
        raise ValueError("bad input: " + str(p.get("n")))
"""

STATUS_KEYS = {"actor", "crew", "ready", "delayed", "in_flight", "replicas_running",
               "replicas_desired", "succeeded", "failed", "retried", "unacked", "restarts", "last_error"}


def two_actor_mesh(mesh, *extra):
    mesh.write("troupe.yaml", TWO_ACTORS)
    mesh.write("h.py", HANDLERS)
    return mesh.start(*extra)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def table_rows(text):
    """`troupe status` table rows by actor: the columns after ACTOR, last error joined."""
    lines = text.strip().splitlines()
    assert lines[0].split()[:10] == ["ACTOR", "QUEUED", "DELAYED", "INFLIGHT", "REPLICAS",
                                     "SUCCEEDED", "FAILED", "RETRIED", "UNACKED", "RESTARTS"], lines[0]
    rows = {}
    for line in lines[1:]:
        cols = line.split()
        # Last error at [7] as before; UNACKED and RESTARTS after it.
        rows[cols[0]] = cols[1:8] + [" ".join(cols[10:]), cols[8], cols[9]]
    return rows


# -- status / result ---------------------------------------------------------------------

def test_status_counts_after_traffic(mesh):
    two_actor_mesh(mesh)
    for i in range(3):
        mesh.send("ok", {"n": i})
    bad = mesh.send("bad", {"n": 7})
    mesh.wait_result(bad, kind="failed")

    def settled():
        s = mesh.status()
        return s if s["x-sink"]["succeeded"] == 3 and s["x-sink"]["failed"] == 1 else None

    mesh.wait_for(settled, what="x-sink counts")

    res = mesh.cli("status", check=True)
    rows = table_rows(res.stdout)
    assert list(rows) == ["ok", "bad", "x-sink", "x-sump", "x-pause", "x-resume"]
    #                     QUEUED DELAYED INFLIGHT REPLICAS SUCCEEDED FAILED RETRIED
    assert rows["ok"][:7] == ["0", "0", "0", "1/1", "3", "0", "0"]
    assert rows["bad"][:7] == ["0", "0", "0", "1/1", "0", "1", "0"]
    assert "ValueError: bad input: 7" in rows["bad"][7]
    assert rows["ok"][9] == rows["bad"][9] == "0", "no runtime restarts"
    assert rows["x-sink"][:7] == ["0", "0", "0", "native", "3", "1", "0"]
    assert rows["x-sump"][4:6] == ["0", "0"]

    res = mesh.cli("status", "--json", check=True)
    body = json.loads(res.stdout)
    assert list(body) == ["actors", "flows"] and body["flows"] == []  # no flows: in this mesh
    actors = {a["actor"]: a for a in body["actors"]}
    assert [a["actor"] for a in body["actors"]] == ["ok", "bad", "x-sink", "x-sump", "x-pause", "x-resume"]
    for a in body["actors"]:
        assert set(a) == STATUS_KEYS, a
    assert actors["ok"]["crew"] is False and actors["x-sink"]["crew"] is True
    assert actors["ok"]["succeeded"] == 3 and actors["ok"]["last_error"] is None
    assert actors["bad"]["failed"] == 1 and "bad input: 7" in actors["bad"]["last_error"]
    assert actors["ok"]["replicas_running"] == 1 and actors["ok"]["replicas_desired"] == 1
    assert mesh.stop() == 0


def test_result_prints_stored_envelope(mesh):
    two_actor_mesh(mesh)
    ok = mesh.send("ok", {"n": 1})
    bad = mesh.send("bad", {"n": 2})
    on_disk = mesh.wait_result(ok)
    failed_on_disk = mesh.wait_result(bad, kind="failed")

    res = mesh.cli("result", ok, check=True)
    assert json.loads(res.stdout) == on_disk
    assert on_disk["payload"]["n"] == 1 and on_disk["status"]["phase"] == "succeeded"

    res = mesh.cli("result", bad, check=True)
    assert json.loads(res.stdout) == failed_on_disk
    assert failed_on_disk["status"]["reason"] == "RuntimeError"  # no policy: fails at once
    assert failed_on_disk["status"]["error"]["type"] == "ValueError"

    missing = "3f1b0c1e-0000-4000-8000-000000000000"
    res = mesh.cli("result", missing)
    assert res.returncode != 0
    assert res.stdout == ""
    assert f"no stored result for task {missing}" in res.stderr
    assert mesh.stop() == 0


def test_send_errors_are_clear(mesh):
    two_actor_mesh(mesh)
    res = mesh.cli("send", "nosuch", "{}")
    assert res.returncode == 1 and "actor not found" in res.stderr
    res = mesh.cli("send", "ok", "{bad")
    assert res.returncode == 1 and "payload is not valid JSON" in res.stderr
    res = mesh.cli("send", "ok", "{}", "--timeout", "5 minutes")
    assert res.returncode == 1 and "--timeout" in res.stderr and "invalid duration" in res.stderr
    # The payload may come from stdin.
    res = mesh.cli("send", "ok", "-", "--wait", input='{"from": "stdin"}')
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["from"] == "stdin"
    assert mesh.stop() == 0


# -- no running mesh -------------------------------------------------------------------

def test_cli_without_running_mesh(mesh):
    mesh.write("troupe.yaml", TWO_ACTORS)
    mesh.write("h.py", HANDLERS)
    for args in (["status"], ["send", "ok", "{}"], ["result", "x"], ["resume", "x", "{}"]):
        res = mesh.cli(*args)
        assert res.returncode == 1, args
        assert "no running mesh" in res.stderr, (args, res.stderr)
        assert "troupe up" in res.stderr


def test_cli_after_clean_stop_says_no_running_mesh(mesh):
    two_actor_mesh(mesh)
    assert mesh.stop() == 0
    res = mesh.cli("status")
    assert res.returncode == 1
    assert "no running mesh" in res.stderr


def test_cli_after_crash_says_no_running_mesh(mesh):
    two_actor_mesh(mesh)
    mesh.kill9()
    assert (mesh.state_dir / "mesh.json").exists()
    res = mesh.cli("status")
    assert res.returncode == 1
    assert "no running mesh" in res.stderr, res.stderr


def test_second_up_in_same_folder_is_refused(mesh):
    two_actor_mesh(mesh)
    res = mesh.cli("up", ".", timeout=30)
    assert res.returncode == 1
    assert "a mesh is already running here" in res.stderr
    assert f"pid {mesh.proc.pid}" in res.stderr
    # The running mesh is untouched.
    assert json.loads((mesh.state_dir / "mesh.json").read_text())["pid"] == mesh.proc.pid
    assert mesh.status()["ok"]["actor"] == "ok"
    assert mesh.stop() == 0


# -- mesh file errors: exit 2 before anything starts ----------------------------------------

BAD_MESH_FILES = {
    "unknown field": ("""
        actors:
          - actor: a
            handler: h.ok
            colour: red
        """, "troupe.yaml:5:5: actors[0].colour: unknown field 'colour'"),
    "bad handler string": ("""
        actors:
          - actor: a
            handler: "h..ok"
        """, "troupe.yaml:4:5: actors[0].handler: invalid handler 'h..ok'"),
    "bad duration": ("""
        actors:
          - actor: a
            handler: h.ok
            resiliency:
              actorTimeout: 5 minutes
        """, "troupe.yaml:6:7: actors[0].resiliency.actorTimeout: invalid duration '5 minutes'"),
    "duplicate actor": ("""
        actors:
          - actor: a
            handler: h.ok
          - actor: a
            handler: h.ok
        """, "troupe.yaml:5:5: actors[1].actor: duplicate actor 'a' (first defined at line 3)"),
}


@pytest.mark.parametrize("case", list(BAD_MESH_FILES))
def test_mesh_file_error_exits_2_before_start(mesh, case):
    text, expected = BAD_MESH_FILES[case]
    mesh.write("troupe.yaml", "# a mesh file with a mistake\n" + textwrap.dedent(text).lstrip("\n"))
    mesh.write("h.py", HANDLERS)
    res = mesh.cli("up", ".", timeout=30)
    assert res.returncode == 2, res.stderr
    assert "invalid mesh file" in res.stderr
    assert expected in res.stderr, res.stderr
    # Nothing started: no state folder, no runtime.
    assert not mesh.state_dir.exists()


def test_mesh_file_errors_are_all_reported(mesh):
    mesh.write("troupe.yaml", """
        actors:
          - actor: a
            handler: h.ok
            colour: red
          - actor: b
            handler: "h..ok"
          - actor: c
            handler: h.ok
            resiliency:
              actorTimeout: 5 minutes
          - actor: a
            handler: h.ok
    """)
    mesh.write("h.py", HANDLERS)
    res = mesh.cli("up", ".", timeout=30)
    assert res.returncode == 2
    for field in ("actors[0].colour", "actors[1].handler", "actors[2].resiliency.actorTimeout",
                  "actors[3].actor: duplicate actor 'a'"):
        assert field in res.stderr, (field, res.stderr)
    assert not mesh.state_dir.exists()


BROKEN_MODULES = {
    "ImportError": ("raise ImportError('libfoo is required: pip install foo')\n",
                    "ImportError: libfoo is required: pip install foo"),
    "missing dependency": ("import troupe_example_not_installed_xyz\n",
                           "ModuleNotFoundError: No module named 'troupe_example_not_installed_xyz'"),
    "SyntaxError": ("def handle(p) return p\n", "SyntaxError"),
}


@pytest.mark.parametrize("case", list(BROKEN_MODULES))
def test_handler_import_failure_exits_2(mesh, case):
    source, expected = BROKEN_MODULES[case]
    mesh.write("troupe.yaml", """
        actors:
          - actor: fine
            handler: h.ok
          - actor: broken
            handler: brokenmod.handle
    """)
    mesh.write("h.py", HANDLERS)
    mesh.write("brokenmod.py", source)
    res = mesh.cli("up", ".", timeout=60)
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert re.search(r"troupe\.yaml:6: actors\[1\]\.handler: handler 'brokenmod\.handle' cannot be loaded", err), err
    assert "importing module 'brokenmod' failed" in err
    assert expected in err
    assert "brokenmod.py" in err  # the traceback points at the module
    assert "actors[0]" not in err  # the good actor is not blamed
    assert not (mesh.state_dir / "mesh.json").exists()


# -- logging -------------------------------------------------------------------------------

def test_log_format_json(mesh):
    two_actor_mesh(mesh, "--log-format", "json")
    mesh.send("ok", {})
    mesh.send("bad", {})
    mesh.wait_for(lambda: len(mesh.results("succeeded")) == 1 and len(mesh.results("failed")) == 1,
                  what="both results")
    assert mesh.stop() == 0
    records = []
    for line in mesh.log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records, mesh.log()
    for r in records:
        assert {"timestamp", "level", "message", "target"} <= set(r), r
        assert r["level"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
    messages = [r["message"] for r in records]
    assert "mesh up" in messages and "mesh stopped" in messages
    up = next(r for r in records if r["message"] == "mesh up")
    assert up["url"].startswith("http://127.0.0.1:") and up["actors"] == 2
    # Runtime output is carried as structured fields too.
    assert any(r.get("handler") == "h.ok" and isinstance(r.get("pid"), int) for r in records)
    # No ANSI colour codes in JSON mode.
    assert "\x1b[" not in mesh.log()


def test_bad_log_options_exit_2(mesh):
    mesh.write("troupe.yaml", TWO_ACTORS)
    res = mesh.cli("--log-level", "loud", "status")
    assert res.returncode == 2 and "invalid --log-level 'loud'" in res.stderr
    res = mesh.cli("--log-format", "xml", "status")
    assert res.returncode == 2 and "xml" in res.stderr


# -- shutdown ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(mesh, sig):
    two_actor_mesh(mesh)
    first = mesh.wait_result(mesh.send("ok", {}))
    runtime_pid = first["payload"]["pid"]
    assert pid_alive(runtime_pid)
    # A message still in flight when the signal arrives finishes within the grace period.
    slow = mesh.send("ok", {"sleep": 2.5})
    mesh.wait_for(lambda: mesh.status()["ok"]["in_flight"] == 1, what="slow message in flight")
    started = time.monotonic()
    assert mesh.stop(sig) == 0
    assert time.monotonic() - started >= 0.5
    assert not (mesh.state_dir / "mesh.json").exists()
    done = mesh.results("succeeded")
    assert slow in done and done[slow]["payload"]["sleep"] == 2.5
    assert not pid_alive(runtime_pid), "runtime process outlived troupe up"
    assert "mesh stopped" in mesh.log()
    # The CLI now knows nothing is running.
    res = mesh.cli("status")
    assert res.returncode == 1 and "no running mesh" in res.stderr


def test_restart_after_stop_keeps_results(mesh):
    two_actor_mesh(mesh)
    task = mesh.send("ok", {"n": 5})
    mesh.wait_result(task)
    assert mesh.stop() == 0
    mesh.start()
    res = mesh.cli("result", task, check=True)
    assert json.loads(res.stdout)["payload"]["n"] == 5
    assert mesh.stop() == 0


def test_closed_stdout_pipe_does_not_panic(mesh):
    two_actor_mesh(mesh)
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run([str(mesh.binary), "status", "--json"], cwd=mesh.root, stdout=w,
                          stderr=subprocess.PIPE, text=True, timeout=30)
    os.close(w)
    assert "panicked" not in proc.stderr, proc.stderr
    assert proc.returncode != 101


def test_terminal_ctrl_c_lets_in_flight_messages_finish(mesh):
    """A terminal's Ctrl-C goes to the whole foreground process group; the runtimes must
    not die with it while troupe up drains in-flight messages."""
    two_actor_mesh(mesh)
    mesh.proc.send_signal(signal.SIGTERM)
    mesh.proc.wait(30)
    # Restart in a session of its own, so the group signal below cannot reach pytest.
    log = open(mesh.log_path, "ab")
    mesh.proc = subprocess.Popen([str(mesh.binary), "up", str(mesh.root)], cwd=mesh.root,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    mesh.wait_up()
    slow = mesh.send("ok", {"sleep": 2.0})
    mesh.wait_for(lambda: mesh.status()["ok"]["in_flight"] == 1, what="slow message in flight")
    os.killpg(mesh.proc.pid, signal.SIGINT)
    assert mesh.proc.wait(60) == 0
    done = mesh.results("succeeded")
    assert slow in done, f"in-flight message did not finish:\n{mesh.log()[-3000:]}"
    assert not mesh.results("failed")


def test_unknown_actors_in_a_route_are_reported_not_lost(mesh):
    mesh.write("troupe.yaml", """
        actors:
          - actor: hop
            handler: r.hop
    """)
    mesh.write("r.py", """
        def hop(p):
            yield "SET", ".route.next", [p["to"]]
            yield p
    """)
    mesh.start()
    # --route is checked when the task is created.
    res = mesh.cli("send", "hop", '{"to": "x-sink"}', "--route", "nowhere")
    assert res.returncode == 1
    assert "actor 'nowhere' in route_next not found" in res.stderr
    # A handler that routes to a missing actor: the frame ends in x-sump with the reason,
    # instead of waiting forever on a queue nobody reads.
    task = mesh.send("hop", {"to": "nowhere"})
    dumped = mesh.wait_result(task, "failed")
    assert dumped["status"]["reason"] == "RuntimeError"
    assert "Unknown actor 'nowhere' in route" in dumped["payload"]["error"]
    assert dumped["route"]["curr"] == "nowhere"
    res = mesh.cli("send", "hop", '{"to": "nowhere"}', "--wait", "--timeout", "20s")
    assert res.returncode == 1 and "Unknown actor 'nowhere'" in res.stderr


@pytest.mark.parametrize("level,per_message", [("info", False), ("debug", True)])
def test_per_message_logs_only_at_debug(mesh, level, per_message):
    mesh.write("troupe.yaml", TWO_ACTORS)
    mesh.write("h.py", HANDLERS)
    mesh.start(log_level=level)
    task = mesh.send("ok", {})
    mesh.wait_result(task)
    assert mesh.stop() == 0
    lines = [l for l in mesh.log().splitlines() if task in l]
    if per_message:
        assert any("frame dispatched" in l for l in lines), mesh.log()[-3000:]
        assert any("task reached the end actor" in l for l in lines), mesh.log()[-3000:]
    else:
        assert lines == [], lines
    # Lifecycle events are logged at both levels.
    assert "actor scaled" in mesh.log() and "mesh up" in mesh.log()


def test_result_of_a_running_task_says_it_is_not_finished(mesh):
    two_actor_mesh(mesh)
    task = mesh.send("ok", {"sleep": 2.0})
    res = mesh.cli("result", task)
    assert res.returncode == 1
    assert "has no stored result yet (status: " in res.stderr, res.stderr
    mesh.wait_result(task)
    assert mesh.cli("result", task).returncode == 0
