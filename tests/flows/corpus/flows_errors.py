"""Corpus: try/except with typed, tuple, dotted and bare excepts, nested try, finally,
raise (in the flow, inside except, bare re-raise), errors raised by routers.

`risky`, `risky_b`, `risky_c` fail when the payload asks them to: `p["fail"][name]` is an
error kind of handlers.ERRORS (`rate`, `timeout`, `quota`, `openai`, `value`, `key`, ...),
optionally `{"kind", "mod", "rem"}` to fail only when `p["x"] % mod == rem`.
Error classes are imported, as a user's flow would; `openai.APITimeoutError` is only named
in an except clause (matched by name: the mesh never imports openai).
"""

import handlers
from handlers import QuotaError, RateLimitError, RetryableError


def try_typed(p):
    try:
        p = risky(p)
    except RateLimitError:
        p = on_rate(p)
    p = finish(p)
    return p


def try_clauses_in_order(p):
    try:
        p = a(p)
        p = risky(p)
        p = b(p)
    except RateLimitError:
        p = on_rate(p)
    except ValueError:
        p = on_value(p)
    except Exception:
        p = on_any(p)
    p = finish(p)
    return p


def try_tuple(p):
    try:
        p = risky(p)
    except (RateLimitError, KeyError):
        p = on_rate(p)
    except (ValueError, TypeError):
        p = on_value(p)
    return p


def try_dotted(p):
    try:
        p = risky(p)
    except handlers.UpstreamTimeout:
        p = on_rate(p)
    except openai.APITimeoutError:
        p = on_value(p)
    return p


def try_base_class(p):
    try:
        p = risky(p)
    except RetryableError:
        p = recover(p)
    except LookupError:
        p = on_value(p)
    return p


def try_bare(p):
    try:
        p = risky(p)
    except:  # noqa: E722 - the bare except is the construct under test
        p = fallback(p)
    p = finish(p)
    return p


def try_finally(p):
    try:
        p = risky(p)
    except ValueError:
        p = on_value(p)
    finally:
        p = cleanup(p)
    p = finish(p)
    return p


def nested_try(p):
    try:
        p = a(p)
        try:
            p = risky(p)
        except ValueError:
            p = on_value(p)
        p = risky_b(p)
    except RateLimitError:
        p = on_rate(p)
    p = finish(p)
    return p


def nested_try_finally(p):
    try:
        try:
            p = risky(p)
        except ValueError:
            p = on_value(p)
            p = risky_b(p)
        finally:
            p = cleanup(p)
    except Exception:
        p = on_any(p)
    finally:
        p = c(p)
    return p


def raise_in_except(p):
    try:
        p = risky(p)
    except ValueError:
        p = on_value(p)
        raise RuntimeError("gave up")
    p = finish(p)
    return p


def raise_caught_by_outer(p):
    try:
        try:
            p = risky(p)
        except ValueError:
            p = on_value(p)
            raise QuotaError("escalated")
        p = b(p)
    except QuotaError:
        p = recover(p)
    p = finish(p)
    return p


def bare_reraise(p):
    try:
        p = risky(p)
    except ValueError:
        p = on_value(p)
        raise
    return p


def raise_plain(p):
    p = a(p)
    if p["x"] < 0:
        raise ValueError("negative x")
    if p["x"] == 0:
        raise QuotaError
    p = b(p)
    return p


def raise_in_try_caught(p):
    try:
        if p["x"] < 0:
            raise ValueError("negative")
        p = a(p)
    except ValueError:
        p = on_value(p)
    return p


def failed_call_keeps_input(p):
    try:
        p["before"] = 1
        p = half_then_fail(p)
        p["after"] = 1
    except ValueError:
        p = recover(p)
    return p


def except_body_fails(p):
    try:
        try:
            p = risky(p)
        except ValueError:
            p = on_value(p)
            p = risky_b(p)
    except RateLimitError:
        p = on_rate(p)
    return p


def same_actor_two_tries(p):
    try:
        p = risky(p)
    except ValueError:
        p = on_value(p)
    p = bump_x(p)
    try:
        p = risky(p)
    except RateLimitError:
        p = on_rate(p)
    return p


def retry_loop(p):
    p["tries"] = 0
    while p["tries"] < 5:
        p["tries"] += 1
        try:
            p = risky(p)
            break
        except RateLimitError:
            p = on_rate(p)
            p = bump_x(p)
    p = finish(p)
    return p


def loop_in_try(p):
    try:
        while p["x"] < 6:
            p = bump_x(p)
            p = risky(p)
    except ValueError:
        p = recover(p)
    return p


def continue_in_try(p):
    p["i"] = 0
    while p["i"] < 4:
        p["i"] += 1
        try:
            if p["i"] == 2:
                continue
            p = risky(p)
        except ValueError:
            p = on_value(p)
        finally:
            p = cleanup(p)
        p = bump_x(p)
    return p


def return_in_try(p):
    try:
        p = a(p)
        if p["x"] > 0:
            return p
        p = risky(p)
    except ValueError:
        p = on_value(p)
        return p
    p = finish(p)
    return p


def return_in_try_finally(p):
    try:
        p = a(p)
        if p["x"] > 0:
            return p
        p = risky(p)
    except ValueError:
        p = on_value(p)
    finally:
        p = cleanup(p)
    p = finish(p)
    return p


def try_spec_example(p):
    try:
        p = write(p)
    except (RateLimitError, openai.APITimeoutError):
        p = apologize(p)
    p["done"] = True
    return p


def router_error_caught(p):
    try:
        p["y"] = p["missing"] + 1
    except KeyError:
        p = recover(p)
    return p


def router_error_uncaught(p):
    p = a(p)
    p["y"] = p["x"] / p["d"]
    p = b(p)
    return p


FAIL_KINDS = ["rate", "timeout", "quota", "openai", "value", "key", "type", "zero"]

INPUTS = {
    "try_typed": [{}, {"fail": {"risky": "rate"}}, {"fail": {"risky": "value"}}],
    "try_clauses_in_order": [{}] + [{"fail": {"risky": k}} for k in FAIL_KINDS],
    "try_tuple": [{}] + [{"fail": {"risky": k}} for k in ("rate", "key", "value", "type", "quota")],
    "try_dotted": [{}] + [{"fail": {"risky": k}} for k in ("timeout", "openai", "rate")],
    "try_base_class": [{}] + [{"fail": {"risky": k}} for k in ("rate", "timeout", "key", "quota")],
    "try_bare": [{}] + [{"fail": {"risky": k}} for k in ("quota", "zero", "openai")],
    "try_finally": [{}] + [{"fail": {"risky": k}} for k in ("value", "rate")],
    "nested_try": [{}, {"fail": {"risky": "value"}}, {"fail": {"risky": "rate"}},
                   {"fail": {"risky_b": "value"}}, {"fail": {"risky_b": "rate"}},
                   {"fail": {"risky": "value", "risky_b": "rate"}}],
    "nested_try_finally": [{}, {"fail": {"risky": "value"}}, {"fail": {"risky": "quota"}},
                           {"fail": {"risky": "value", "risky_b": "key"}}],
    "raise_in_except": [{}, {"fail": {"risky": "value"}}, {"fail": {"risky": "rate"}}],
    "raise_caught_by_outer": [{}, {"fail": {"risky": "value"}}],
    "bare_reraise": [{}, {"fail": {"risky": "value"}}],
    "raise_plain": [{"x": 1}, {"x": -1}, {"x": 0}],
    "raise_in_try_caught": [{"x": 1}, {"x": -1}],
    "failed_call_keeps_input": [{}],
    "except_body_fails": [{}, {"fail": {"risky": "value"}}, {"fail": {"risky": "value", "risky_b": "rate"}},
                          {"fail": {"risky": "value", "risky_b": "quota"}}],
    "same_actor_two_tries": [{"x": 0}, {"x": 0, "fail": {"risky": {"kind": "rate", "mod": 2, "rem": 1}}},
                             {"x": 0, "fail": {"risky": {"kind": "value", "mod": 2, "rem": 1}}},
                             {"x": 1, "fail": {"risky": {"kind": "value", "mod": 2, "rem": 1}}}],
    "retry_loop": [{"x": 0, "fail": {"risky": {"kind": "rate", "mod": 3, "rem": 1}}},
                   {"x": 1, "fail": {"risky": {"kind": "rate", "mod": 3, "rem": 1}}},
                   {"x": 0, "fail": {"risky": "rate"}},
                   {"x": 1, "fail": {"risky": {"kind": "value", "mod": 3, "rem": 1}}}],
    "loop_in_try": [{"x": 0}, {"x": 0, "fail": {"risky": {"kind": "value", "mod": 4, "rem": 3}}},
                    {"x": 0, "fail": {"risky": {"kind": "key", "mod": 4, "rem": 3}}}],
    "continue_in_try": [{"x": 0}, {"x": 0, "fail": {"risky": {"kind": "value", "mod": 2, "rem": 1}}}],
    "return_in_try": [{"x": 1}, {"x": 0}, {"x": 0, "fail": {"risky": "value"}}],
    "return_in_try_finally": [{"x": 1}, {"x": 0}, {"x": 0, "fail": {"risky": "value"}}],
    "try_spec_example": [{"topic": "t"}, {"topic": "t", "fail": {"write": "rate"}},
                         {"topic": "t", "fail": {"write": "openai"}}, {"topic": "t", "fail": {"write": "quota"}}],
    "router_error_caught": [{"missing": 1}, {}],
    "router_error_uncaught": [{"x": 1, "d": 2}, {"x": 1, "d": 0}, {"x": 1.5, "d": 0.0}],
}
