"""Plain Python handlers for the broker end-to-end tests (test_brokers.py).

Every call appends the payload's index `i` to {CALLS_DIR}/{actor}.calls (one O_APPEND
write per line), so a test can count calls, redeliveries and duplicates.
"""

import json
import os
import time


def _note(actor, p):
    folder = os.environ.get("CALLS_DIR")
    if not folder:
        return
    line = (json.dumps(p.get("i") if isinstance(p, dict) else None) + "\n").encode()
    fd = os.open(os.path.join(folder, actor + ".calls"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    delay = float(os.environ.get("HANDLER_DELAY", "0") or 0)
    if delay:
        time.sleep(delay)


def a(p):
    _note("a", p)
    p["trail"] = p.get("trail", []) + ["a"]
    p["v"] = p["i"] * 2
    return p


def b(p):
    _note("b", p)
    p["trail"].append("b")
    p["v"] += 1
    return p


def c(p):
    _note("c", p)
    p["trail"].append("c")
    p["v"] *= 10
    return p


def big(p):
    """Returns a payload of `size` bytes or more: above the broker's message limit."""
    _note("big", p)
    p["blob"] = "x" * int(p["size"])
    return p
