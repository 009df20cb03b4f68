"""Pod-grade shutdown of `troupe runtime` and `troupe sidecar` (issue 10 item 4).

The kubelet stops a pod by sending SIGTERM to every container at once and SIGKILL after
terminationGracePeriodSeconds. These tests do the same to the real binaries on a real
Redis: a call in progress finishes and its result is routed; a call that outlives the
runtime's grace is redelivered, not lost; a killed launcher leaves no Python process
behind; a stopped sidecar leaves the messages it did not start in the queue.
"""

import os
import signal
import time
from pathlib import Path

import pytest

from brokers import Group, RedisSpace, Service, envelope, results, unique_namespace, wait_until


@pytest.fixture(scope="module")
def redis_service(tmp_path_factory):
    svc = Service("redis", tmp_path_factory.mktemp("redis"))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def space(redis_service):
    s = RedisSpace(redis_service.url, unique_namespace())
    yield s
    s.close()


@pytest.fixture
def group(troupe_bin, tmp_path):
    g = Group(troupe_bin, tmp_path)
    yield g
    g.stop_all()


# A dead consumer's messages come back after this window (the default is 30 s).
FAST_REDELIVERY = {"TROUPE_VISIBILITY_TIMEOUT": "2s"}
# RedisSpace's 3 s actor timeout would end the slow calls these tests stop.
SLOW_CALLS = {"ASYA_RESILIENCY_ACTOR_TIMEOUT": "60s"}


def runtime_processes(marker):
    """Pids of live processes whose command line names `marker` (the runtime's folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def start_pod(group, space, actor="a", delay="3", runtime_env=None, extra=None):
    tenv = space.env()
    pod = group.pod(actor, f"handlers.{actor}", space.ns, tenv,
                    extra={**FAST_REDELIVERY, **SLOW_CALLS, **(extra or {})},
                    runtime_env={"HANDLER_DELAY": delay, **(runtime_env or {})})
    pod.wait_ready()
    return pod


def sink(group, space, tmp_path):
    mount = tmp_path / "results"
    s = group.crew("x-sink", space.ns, space.env(), mount=mount, extra=FAST_REDELIVERY)
    s.wait_ready()
    return s, mount / "succeeded"


def publish(space, tid, i):
    space.publish("a", envelope(tid, "a", [], {"i": i, "trail": []}))


def stop_like_the_kubelet(pod):
    """SIGTERM to both containers at once."""
    for p in (pod.runtime, pod.sidecar):
        os.kill(p.pid, signal.SIGTERM)


def test_sigterm_lets_the_call_in_progress_finish_and_routes_its_result(space, group, tmp_path):
    _, done = sink(group, space, tmp_path)
    pod = start_pod(group, space, delay="3")
    marker = str(pod.sock)
    assert runtime_processes(marker) == [pod.runtime.pid], "troupe runtime must be the Python process"
    tid = f"{space.ns}-1"
    publish(space, tid, 1)
    wait_until(lambda: pod.calls() == [1], 30, "the handler to start", details=pod.sidecar.tail)

    stop_like_the_kubelet(pod)
    assert pod.runtime.wait_exit(15) == 0, pod.runtime.tail()
    assert pod.sidecar.wait_exit(15) == 0, pod.sidecar.tail()
    assert runtime_processes(marker) == [], "a runtime process outlived its pod"

    got = wait_until(lambda: results(done).get(tid), 20, "the result at x-sink",
                     details=pod.sidecar.tail)
    assert got["payload"]["v"] == 2, got
    assert pod.calls() == [1]
    assert "finishing the call in progress" in pod.runtime.log()


def test_a_call_past_the_grace_is_killed_and_redelivered(space, group, tmp_path):
    _, done = sink(group, space, tmp_path)
    pod = start_pod(group, space, delay="6", runtime_env={"TROUPE_SHUTDOWN_GRACE": "1s"})
    marker = str(pod.sock)
    tid = f"{space.ns}-2"
    publish(space, tid, 2)
    wait_until(lambda: pod.calls() == [2], 30, "the handler to start", details=pod.sidecar.tail)

    started = time.monotonic()
    stop_like_the_kubelet(pod)
    # Ended by its own grace (SIGALRM), long before the 6 s handler would have returned.
    assert pod.runtime.wait_exit(10) == -signal.SIGALRM, pod.runtime.tail()
    assert time.monotonic() - started < 4
    assert pod.sidecar.wait_exit(15) == 0, pod.sidecar.tail()
    assert runtime_processes(marker) == []
    assert results(done) == {}

    # The next pod gets the message again (not x-sump: the stop was not its fault).
    again = start_pod(group, space, delay="0")
    got = wait_until(lambda: results(done).get(tid), 30, "the redelivered result at x-sink",
                     details=again.sidecar.tail)
    assert got["payload"]["v"] == 4, got
    assert group.calls("a") == [2, 2]
    assert "requeued for the next consumer" in pod.sidecar.log()


def test_sigkill_of_the_launcher_leaves_no_python_process(space, group):
    pod = start_pod(group, space, delay="0")
    marker = str(pod.sock)
    assert runtime_processes(marker), "no runtime process found"
    pod.sidecar.stop()
    pod.runtime.kill9()
    wait_until(lambda: runtime_processes(marker) == [], 5, "the Python runtime to exit")


def test_sigterm_to_the_sidecar_finishes_in_flight_and_leaves_the_rest_queued(space, group, tmp_path):
    _, done = sink(group, space, tmp_path)
    pod = start_pod(group, space, delay="2")
    tids = [f"{space.ns}-{i}" for i in range(3)]
    for i, tid in enumerate(tids):
        publish(space, tid, i)
    wait_until(lambda: len(pod.calls()) == 1, 30, "the first call", details=pod.sidecar.tail)

    os.kill(pod.sidecar.pid, signal.SIGTERM)
    assert pod.sidecar.wait_exit(15) == 0, pod.sidecar.tail()
    first = pod.calls()
    assert len(first) == 1, first
    wait_until(lambda: len(results(done)) == 1, 20, "the in-flight result at x-sink")
    assert pod.runtime.alive()

    # A new sidecar container beside the same runtime takes the rest, each exactly once.
    pod.sidecar.start()
    pod.sidecar.wait_ready()
    wait_until(lambda: set(results(done)) == set(tids), 60, "every result at x-sink",
               details=pod.sidecar.tail)
    assert sorted(pod.calls()) == [0, 1, 2], pod.calls()
