"""The CPython side of tests/differential.rs: reads JSON lines of native expressions and
statements (the wire forms of src/ast.rs) with their state `p`, turns each into Python
source, runs it, and prints the value or the exception (type name and message).

First line: {"int_overflow": ..., "max_items": ...}, the documented limits of the native
evaluator. The helpers below apply exactly those (and nothing else) on top of plain Python:
an int result outside 64 bits or a float result that is not finite raises OverflowError, a
complex result raises ValueError, `*` past max_items (nested values counted) raises
MemoryError, a dict key that is
not a str raises TypeError, an assigned value is a copy, and dict displays keep keys sorted.
Then one line per case: {"p": ..., "x": ..., "expr": NExpr} or {"p": ..., "stmt": NStmt}."""
import copy
import json
import math
import operator
import sys
import warnings

warnings.simplefilter("ignore")  # `1[0]` in generated source warns at compile time

# The contract is CPython 3.11 (3.12 changed messages, e.g. "float modulo by zero"): say
# which Python this is, for the test to check before it compares anything.
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3]}))
header = json.loads(sys.stdin.readline())
INT_OVERFLOW = header["int_overflow"]
MAX_ITEMS = header["max_items"]
NEG_FRAC = ("negative number cannot be raised to a fractional power "
            "(Python gives a complex number, which a JSON payload cannot hold)")

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
       "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
IOPS = {"+": operator.iadd, "-": operator.isub, "*": operator.imul, "/": operator.itruediv,
        "//": operator.ifloordiv, "%": operator.imod, "**": operator.ipow}


def _chk(r):
    if isinstance(r, complex):
        raise ValueError(NEG_FRAC)
    if type(r) is int and not (-2**63 <= r < 2**64):
        raise OverflowError(INT_OVERFLOW)
    if isinstance(r, float) and not math.isfinite(r):
        raise OverflowError(f"float result is {r!r}, which a JSON payload cannot hold")
    return r


def _is_int(v):
    return isinstance(v, int)  # bool included, as in Python


def _pre(op, a, b):
    """The checks that must come before Python computes something too big to hold."""
    if op == "**" and _is_int(a) and _is_int(b) and b > 128 and abs(a) > 1:
        raise OverflowError(INT_OVERFLOW)
    if op == "*":
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, (str, list)) and _is_int(n) and n < 2**63:
                weight = len(seq) if isinstance(seq, str) else sum(_size(v) for v in seq)
                if weight * max(n, 0) > MAX_ITEMS:
                    raise MemoryError(f"result would exceed {MAX_ITEMS} items, "
                                      "the native evaluator's limit")
                break


def _size(v):
    if isinstance(v, list):
        return 1 + sum(_size(x) for x in v)
    if isinstance(v, dict):
        return 1 + sum(_size(x) for x in v.values())
    return 1


def _bin(op, a, b):
    _pre(op, a, b)
    return _chk(OPS[op](a, b))


def _iop(op, a, b):
    _pre(op, a, b)
    return _chk(IOPS[op](a, b))


def _key_check(k):
    hash(k)  # raises "unhashable type" for a list or dict, as Python does
    if not isinstance(k, str):
        raise TypeError(f"dict keys must be str in a JSON payload, not {type(k).__name__} "
                        f"({k!r}); convert it with str()")


def _dict(*kv):
    pairs = list(zip(kv[0::2], kv[1::2]))
    for k, _ in pairs:
        _key_check(k)
    d = dict(pairs)
    return {k: d[k] for k in sorted(d)}


def _setitem(c, k, v):
    if isinstance(c, dict):
        _key_check(k)
    c[k] = v


def gen(e):
    (kind, v), = e.items()
    if kind == "const":
        return f"({v!r})"
    if kind == "name":
        return v
    if kind == "sub":
        return f"({gen(v[0])})[{gen(v[1])}]"
    if kind == "cmp":
        return "(" + gen(v[0]) + "".join(f" {op} {gen(r)}" for op, r in v[1]) + ")"
    if kind in ("and", "or"):
        return "(" + f" {kind} ".join(gen(x) for x in v) + ")"
    if kind == "not":
        return f"(not {gen(v)})"
    if kind == "bin":
        return f"_bin({v[0]!r}, {gen(v[1])}, {gen(v[2])})"
    if kind == "neg":
        return f"_chk(-{gen(v)})"
    if kind == "pos":
        return f"_chk(+{gen(v)})"
    if kind == "call":
        f, a = v
        return f"_chk({f}({gen(a)}))"
    if kind == "list":
        return "[" + "".join(gen(x) + ", " for x in v) + "]"
    if kind == "dict":
        return "_dict(" + "".join(f"{gen(k)}, {gen(x)}, " for k, x in v) + ")"
    if kind == "ifexp":
        return f"({gen(v[1])} if {gen(v[0])} else {gen(v[2])})"
    raise ValueError(f"unknown node {kind}")


def gen_stmt(s):
    (kind, v), = s.items()
    if kind == "assign":
        target, value = v
        op = None
    else:
        op, target, value = v
    if not target:
        if op is None:
            return f"p = copy.deepcopy({gen(value)})"
        return f"p = _iop({op!r}, p, copy.deepcopy({gen(value)}))"
    container = "p" + "".join(f"[{gen(t)}]" for t in target[:-1])
    last = gen(target[-1])
    if op is None:
        return (f"_v = copy.deepcopy({gen(value)})\n"
                f"_setitem({container}, {last}, _v)")
    return (f"_c = {container}\n_k = {last}\n"
            f"_r = _iop({op!r}, _c[_k], copy.deepcopy({gen(value)}))\n"
            "_setitem(_c, _k, _r)")


def env(case):
    return {"p": case["p"], "x": case.get("x"), "copy": copy, "_bin": _bin, "_iop": _iop,
            "_chk": _chk, "_dict": _dict, "_setitem": _setitem}


for line in sys.stdin:
    case = json.loads(line)
    g = env(case)
    try:
        if "expr" in case:
            src = gen(case["expr"])
            out = {"ok": eval(src, g)}
        else:
            src = gen_stmt(case["stmt"])
            exec(src, g)
            out = {"ok": g["p"]}
    except Exception as e:  # every exception is a result to compare
        out = {"err": [type(e).__name__, str(e)]}
    out["src"] = src
    print(json.dumps(out), flush=False)
