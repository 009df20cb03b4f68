"""Celery side: tasks a, b, c in queues {prefix}a, {prefix}b, {prefix}c, run as
`chain(a.s(p), b.s(), c.s())`. No result backend: the chain travels in the messages and the
last task signals completion through `work.done`.

Environment: BENCH_BROKER_URL, BENCH_QUEUE_PREFIX, BENCH_WORK (noop|cpu1ms), BENCH_DONE_SOCK.
"""

import os

from celery import Celery, chain

import work

PREFIX = os.environ.get("BENCH_QUEUE_PREFIX", "bench_")
STEP = work.step_function()

app = Celery("bench", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    # worker_prefetch_multiplier: Celery's default (4) is kept.
    task_ignore_result=True,
    result_backend=None,
    task_routes={
        "bench.a": {"queue": PREFIX + "a"},
        "bench.b": {"queue": PREFIX + "b"},
        "bench.c": {"queue": PREFIX + "c"},
    },
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.a")
def a(p):
    return STEP(p)


@app.task(name="bench.b")
def b(p):
    return STEP(p)


@app.task(name="bench.c")
def c(p):
    p = STEP(p)
    work.done(p["id"])
    return p


def publish(p):
    """Starts one pipeline."""
    chain(a.s(p), b.s(), c.s()).apply_async()


def queues():
    return [PREFIX + q for q in "abc"]


def worker_command(python, queue, pool):
    return [
        python, "-m", "celery", "-A", "celery_app", "worker",
        "-Q", queue, "-P", pool, "-c", "1",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-l", "WARNING", "-n", f"{queue}@bench",
    ]
