"""Dramatiq side: actors a, b, c in queues {prefix}a, {prefix}b, {prefix}c, run as
`pipeline([a.message(p), b.message(), c.message()])`. Default middleware, no result
backend; the last actor signals completion through `work.done`.

Environment: BENCH_BROKER_URL, BENCH_QUEUE_PREFIX, BENCH_WORK (noop|cpu1ms), BENCH_DONE_SOCK.
"""

import os

import dramatiq

import work

URL = os.environ["BENCH_BROKER_URL"]
PREFIX = os.environ.get("BENCH_QUEUE_PREFIX", "bench_")
STEP = work.step_function()

if URL.startswith(("amqp://", "amqps://")):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=URL)
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_a", queue_name=PREFIX + "a")
def a(p):
    return STEP(p)


@dramatiq.actor(actor_name="bench_b", queue_name=PREFIX + "b")
def b(p):
    return STEP(p)


@dramatiq.actor(actor_name="bench_c", queue_name=PREFIX + "c")
def c(p):
    p = STEP(p)
    work.done(p["id"])
    return p


def publish(p):
    """Starts one pipeline."""
    dramatiq.pipeline([a.message(p), b.message(), c.message()]).run()


def queues():
    return [PREFIX + q for q in "abc"]


def worker_command(python, queue, threads):
    return [
        python, "-m", "dramatiq", "dramatiq_app",
        "--processes", "1", "--threads", str(threads), "--queues", queue,
    ]
