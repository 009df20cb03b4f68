"""The pipeline step every system runs, and the completion signal of its last step.

Troupe's runtimes load `work.noop` / `work.spin` as handlers; the Celery and Dramatiq apps
call the same functions (`step()` picks one from BENCH_WORK). The last step of a Celery
chain or Dramatiq pipeline calls `done(id)`, which sends the pipeline id as one datagram to
the harness's Unix socket (BENCH_DONE_SOCK): the harness timestamps it on arrival, as
troupe-bench timestamps an envelope reaching x-sink.
"""

import os
import socket
import time

SPIN_NS = 1_000_000


def noop(p):
    return p


def spin(p):
    # ~1 ms of this thread's CPU time (not wall time: a preempted step still burns 1 ms).
    end = time.thread_time_ns() + SPIN_NS
    while time.thread_time_ns() < end:
        pass
    return p


def step_function():
    work = os.environ.get("BENCH_WORK", "noop")
    if work == "noop":
        return noop
    if work == "cpu1ms":
        return spin
    raise ValueError(f"BENCH_WORK must be noop or cpu1ms, not {work!r}")


_sock = None


def done(pipeline_id):
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    _sock.sendto(pipeline_id.encode(), os.environ["BENCH_DONE_SOCK"])
