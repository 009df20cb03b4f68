"""A message that arrives while a pod stops is never lost (RabbitMQ, no x-sump consumer).

The kubelet sends SIGTERM to the sidecar and the runtime at the same instant. A message
the sidecar received just before (or while) it stops must come back to the actor's queue
at once — or, if its call did run, its result must be in the next queue — and the sidecar
must exit well within the grace period. Seen once on Kubernetes (tests/kube/test_keda_e2e.py):
the message was never ready again. Each iteration here publishes one message and stops
the pod between 5 ms before and 20 ms after it, to land in that window.

TROUPE_STOP_RACE_ITERATIONS sets the number of iterations (default 20).
"""

import os
import signal
import time

from collections import Counter

import pytest

from brokers import Group, RabbitSpace, Service, envelope, unique_namespace, wait_until

ITERATIONS = int(os.environ.get("TROUPE_STOP_RACE_ITERATIONS", "20"))
# The sidecar must be gone this long after SIGTERM (its grace is 5 s; nothing is slow).
EXIT_WITHIN = 4.0
# How each iteration ended (printed with -s): the call ran, or the message came back.
OUTCOMES = Counter()


@pytest.fixture(scope="module")
def rabbitmq_service(tmp_path_factory):
    svc = Service("rabbitmq", tmp_path_factory.mktemp("rabbitmq"))
    svc.start(env={"RABBITMQ_TEST_OWNER_PID": str(os.getpid())})
    yield svc
    svc.stop()
    print(f"\nstop race outcomes over {ITERATIONS} iterations: {dict(OUTCOMES)}")


def stop(pod):
    """SIGTERM to both containers at once, as the kubelet does; returns when."""
    at = time.monotonic()
    for p in (pod.runtime, pod.sidecar):
        os.kill(p.pid, signal.SIGTERM)
    return at


def where_is(space, ns):
    """{queue: ready count} of the queues the message may be in after the stop."""
    names = [space.queue(a) for a in ("a", "x-sink", "x-sump")] + [f"asya-{ns}-a-dlq"]
    return {q: space.depth(q) for q in names}


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_message_arriving_during_the_stop_is_requeued_and_the_sidecar_exits(
        rabbitmq_service, troupe_bin, tmp_path, iteration):
    ns = unique_namespace()
    space = RabbitSpace(rabbitmq_service.url, ns, f"ex-{ns}")
    group = Group(troupe_bin, tmp_path)
    try:
        pod = group.pod("a", "handlers.a", ns, space.env())
        pod.wait_ready()
        # /readyz turns 200 before the first receive declares and binds the queue: a
        # publish before that would come back unroutable.
        space.wait_queue("a")
        # From 5 ms before the publish (the message lands in a stopping sidecar) to 20 ms
        # after it (the call may be running when the runtime stops).
        delay = ((iteration * 0.7) % 25 - 5) / 1000.0
        body = envelope(f"{ns}-1", "a", [], {"i": 1, "trail": []})
        if delay < 0:
            stopped = stop(pod)
            time.sleep(-delay)
            space.publish("a", body)
        else:
            space.publish("a", body)
            time.sleep(delay)
            stopped = stop(pod)
        pod.sidecar.wait_exit(EXIT_WITHIN + 1)
        took = time.monotonic() - stopped
        assert took < EXIT_WITHIN, f"sidecar took {took:.1f}s to exit\n{pod.sidecar.tail()}"
        pod.runtime.wait_exit(10)

        # With the sidecar gone, nothing holds the message unacked: it is ready somewhere.
        def found():
            at = where_is(space, ns)
            return at if sum(at.values()) >= 1 else None

        at = wait_until(found, 5, f"the message (delay {delay * 1000:.0f} ms) to be ready in a queue",
                        details=lambda: f"{pod.sidecar.tail()}\n{pod.runtime.tail(2000)}\n"
                                        f"calls={pod.calls()}")
        calls = pod.calls()
        if calls:
            # The call ran: its result went on (to x-sink), or the input came back.
            assert at[space.queue("x-sink")] + at[space.queue("a")] == 1, (at, calls)
        else:
            assert at[space.queue("a")] == 1, (at, pod.sidecar.tail())
        assert sum(at.values()) == 1, at
        # A clean stop logs no ERROR (lapin used to log a connection error at each close).
        errors = [ln for ln in pod.sidecar.log().splitlines() if " ERROR " in ln]
        assert errors == [], pod.sidecar.tail()
        OUTCOMES["ran" if calls else "requeued"] += 1
    finally:
        group.stop_all()
        space.close()


def test_sends_to_queues_nobody_declared_are_kept_not_dropped(rabbitmq_service, troupe_bin, tmp_path):
    """No `ghost` actor, x-sink or x-sump ran: the sidecar declares the queue it sends to
    (as Asya's does) and publishes with `mandatory` and a confirm, so the result, the
    failed task and the unparseable body wait there instead of being dropped by the
    exchange, and the inputs are acked only after that."""
    ns = unique_namespace()
    space = RabbitSpace(rabbitmq_service.url, ns, f"ex-{ns}")
    group = Group(troupe_bin, tmp_path)
    try:
        pod = group.pod("a", "handlers.a", ns, space.env())
        pod.wait_ready()
        for q in ("ghost", "x-sink", "x-sump"):
            assert not space.exists(space.queue(q)), q
        space.publish("a", envelope(f"{ns}-ok", "a", ["ghost"], {"i": 1, "trail": []}))
        # No "i": the handler raises KeyError, and the failed task goes to x-sink.
        space.publish("a", envelope(f"{ns}-bad", "a", ["ghost"], {"trail": []}))
        # Not an envelope: it goes to x-sump.
        space.publish("a", b"not json")
        got = space.get(space.queue("ghost"))
        assert got is not None, pod.sidecar.tail()
        assert got.json()["payload"]["v"] == 2, got
        failed = space.get(space.queue("x-sink"))
        assert failed is not None, pod.sidecar.tail()
        assert failed.json()["id"] == f"{ns}-bad", failed
        unparsed = space.get(space.queue("x-sump"))
        assert unparsed is not None, pod.sidecar.tail()
        wait_until(lambda: space.depth(space.queue("a")) == 0, 10, "the inputs to be acked")
    finally:
        group.stop_all()
        space.close()
