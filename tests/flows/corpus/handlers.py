"""Plain handlers for the differential flow corpus (no Troupe import).

Every handler makes its effect visible in the payload, so that comparing the final
payloads of the two runs (plain Python, `troupe up`) shows which branch or except clause
ran, how often a loop went round and in which order fan-out results came back:

- state handlers take the flow state `p` (a dict), append their name to `p["trace"]` and
  return it;
- the `risky*` handlers fail on demand: `p["fail"][name]` names the error to raise (a key
  of ERRORS), optionally only when `p["x"] % mod == rem` (`{"kind": .., "mod": .., "rem": ..}`)
  so that a failure can depend on the loop iteration;
- per-item workers (fan-out) take one item and return a transformed value.

Every public function here is an actor: the mesh file maps actor `name-with-dashes` to
`handlers.name_with_underscores`, and `tools.shout` (a method-style call) to `tools_shout`.
"""

import time


class RetryableError(Exception):
    """Base of the retryable errors: `except RetryableError` catches its subclasses."""


class RateLimitError(RetryableError):
    """A rate limit (caught by name, through its base, or in a tuple)."""


class UpstreamTimeout(RetryableError):
    """Caught dotted, as `handlers.UpstreamTimeout`."""


class QuotaError(Exception):
    """Not retryable: only a matching clause, `Exception` or a bare except catches it."""


class APITimeoutError(Exception):
    """Stands in for `openai.APITimeoutError` (platform.md §4.1's example)."""


# The mesh reports an error's type by its module-qualified name; the flow catches it as
# `openai.APITimeoutError`, so it must carry that module name.
APITimeoutError.__module__ = "openai"

ERRORS = {
    "rate": RateLimitError,
    "timeout": UpstreamTimeout,
    "quota": QuotaError,
    "openai": APITimeoutError,
    "value": ValueError,
    "key": KeyError,
    "type": TypeError,
    "runtime": RuntimeError,
    "zero": ZeroDivisionError,
}

EXCEPTION_CLASSES = [RetryableError, RateLimitError, UpstreamTimeout, QuotaError, APITimeoutError]


def _mark(p, name):
    p.setdefault("trace", []).append(name)
    return p


def _maybe_fail(p, name):
    spec = (p.get("fail") or {}).get(name)
    if not spec:
        return
    if isinstance(spec, str):
        spec = {"kind": spec}
    mod = spec.get("mod")
    if mod and p.get("x", 0) % mod != spec.get("rem", 0):
        return
    # Changes made before the error must not show: the except path gets the input.
    p["touched_by_" + name] = True
    raise ERRORS[spec["kind"]](f"{name} failed at x={p.get('x')}")


# -- state handlers: markers -----------------------------------------------------------

def a(p):
    return _mark(p, "a")


def b(p):
    return _mark(p, "b")


def c(p):
    return _mark(p, "c")


def d(p):
    return _mark(p, "d")


def e(p):
    return _mark(p, "e")


def inc(p):
    """Counts calls in `p["n"]` (loop counts)."""
    p["n"] = p.get("n", 0) + 1
    return _mark(p, "inc")


def bump_x(p):
    p["x"] = p.get("x", 0) + 1
    return _mark(p, "bump_x")


def double(p):
    p["x"] = p.get("x", 0) * 2
    return _mark(p, "double")


def plan(p):
    p["needs_search"] = bool(p.get("queries"))
    return _mark(p, "plan")


def write(p):
    _maybe_fail(p, "write")
    p["draft"] = "draft of " + str(p.get("topic", "?"))
    return _mark(p, "write")


def apologize(p):
    p["draft"] = "sorry"
    return _mark(p, "apologize")


def recover(p):
    p["recovered"] = p.get("recovered", 0) + 1
    return _mark(p, "recover")


def fallback(p):
    return _mark(p, "fallback")


def on_rate(p):
    return _mark(p, "on_rate")


def on_value(p):
    return _mark(p, "on_value")


def on_any(p):
    return _mark(p, "on_any")


def cleanup(p):
    p["cleaned"] = p.get("cleaned", 0) + 1
    return _mark(p, "cleanup")


def finish(p):
    p["done"] = True
    return _mark(p, "finish")


def tools_shout(p):
    """Called as `await tools.shout(p)` (actor `tools-shout`)."""
    p["s"] = str(p.get("s", "")).upper()
    return _mark(p, "tools.shout")


# -- state handlers that fail on demand -------------------------------------------------

def risky(p):
    _maybe_fail(p, "risky")
    return _mark(p, "risky")


def risky_b(p):
    _maybe_fail(p, "risky_b")
    return _mark(p, "risky_b")


def risky_c(p):
    _maybe_fail(p, "risky_c")
    return _mark(p, "risky_c")


# More failing actors for generated flows, which give each failing actor one call site.
def risky_d(p):
    _maybe_fail(p, "risky_d")
    return _mark(p, "risky_d")


def risky_e(p):
    _maybe_fail(p, "risky_e")
    return _mark(p, "risky_e")


def risky_f(p):
    _maybe_fail(p, "risky_f")
    return _mark(p, "risky_f")


def risky_g(p):
    _maybe_fail(p, "risky_g")
    return _mark(p, "risky_g")


def half_then_fail(p):
    """Changes the payload, then fails: the except path must not see the change."""
    p["half"] = True
    raise ValueError("half done")


# -- per-item workers (fan-out) ----------------------------------------------------------

def search(q):
    """One query of the research example (fan-out by comprehension)."""
    return {"q": q, "hits": len(str(q))}


def square(x):
    return x * x


def add_ten(x):
    return x + 10


def slow_square(x):
    """Later items finish first: results must still come back in call order."""
    time.sleep(max(0, 5 - x) * 0.05)
    return x * x


def upper(s):
    return str(s).upper()


def length(s):
    return len(s)


def tag(x):
    return {"item": x, "tag": "t"}


def summarize(p):
    """Takes the whole state (fan-out with `p` as argument), returns a digest."""
    return {"keys": sorted(k for k in p if k != "trace"), "trace": len(p.get("trace", []))}


def count_trace(p):
    return len(p.get("trace", []))
