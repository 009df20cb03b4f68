"""The flow front end (crates/troupe-flow/python/flow_frontend.py) against docs/flow-ir.md:
IR shape per supported construct, native-subset detection, treat-as precedence, rules
extraction, and every rejected construct with its message and line:col."""

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
FRONTEND = REPO / "crates" / "troupe-flow" / "python" / "flow_frontend.py"
FIXTURES = Path(__file__).resolve().parent / "flows_frontend"


def run(path, *args, stdin=False):
    if stdin:
        cmd = [sys.executable, "-", str(path), *args]
        inp = FRONTEND.read_text()
    else:
        cmd = [sys.executable, str(FRONTEND), str(path), *args]
        inp = None
    return subprocess.run(cmd, input=inp, capture_output=True, text=True, timeout=60)


_spec = importlib.util.spec_from_file_location("flow_frontend", FRONTEND)
frontend = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(frontend)


def compile_src(tmp_path, src, func=None, rules=None, name="flows.py"):
    """In-process (fast); the CLI itself is covered by the tests that call run()."""
    source = textwrap.dedent(src).lstrip("\n")
    doc = frontend.compile_source(str(tmp_path / name), source, func, rules or [])
    return json.loads(json.dumps(doc))


def body(tmp_path, src, **kw):
    doc = compile_src(tmp_path, src, **kw)
    assert doc["errors"] == []
    assert len(doc["flows"]) == 1
    return doc["flows"][0]["body"]


def errors(tmp_path, src, **kw):
    doc = compile_src(tmp_path, src, **kw)
    return [(e["line"], e["col"], e["message"]) for e in doc["errors"]]


SUB_P = lambda k: {"sub": [{"name": "p"}, {"const": k}]}  # noqa: E731


# ---- the module document ---------------------------------------------------------------------

def test_research_example_compiles_to_the_documented_ir(tmp_path):
    doc = json.loads(run(FIXTURES / "research.py").stdout)
    assert doc["version"] == 1 and doc["module"] == "research" and doc["errors"] == []
    [flow] = doc["flows"]
    assert (flow["name"], flow["line"], flow["col"]) == ("research", 8, 1)
    kinds = [s["kind"] for s in flow["body"]]
    assert kinds == ["call", "if", "try", "code", "return"]
    assert flow["body"][0] == {"kind": "call", "line": 9, "col": 5, "actor": "plan",
                               "adapter": None}
    fan = flow["body"][1]["then"][0]
    assert fan["kind"] == "fanout_each" and fan["actor"] == "search" and fan["var"] == "q"
    assert fan["target"] == ["hits"] and fan["arg"]["native"] == {"name": "q"}
    assert fan["iterable"]["native"] == SUB_P("queries")
    handler = flow["body"][2]["handlers"][0]
    assert handler["types"] == ["RateLimitError", "openai.APITimeoutError"]
    assert (handler["line"], handler["col"]) == (14, 5)
    assert sorted(doc["actors"]) == ["apologize", "plan", "search", "write"]
    assert doc["imports"] == ["import asyncio", "import openai",
                              "from errors import RateLimitError"]


def test_stdin_mode_matches_file_mode():
    a = run(FIXTURES / "research.py")
    b = run(FIXTURES / "research.py", stdin=True)
    assert a.returncode == b.returncode == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)


@pytest.mark.parametrize("args", [
    [], ["F", "a", "b"], ["F", "--rules-json"], ["F", "--bogus"],
    ["F", "--rules-json", "{not json"], ["F", "--rules-json", "[1]"],
    ["F", "--rules-json", '[{"match": "x", "treat-as": "nope"}]'],
    ["F", "--rules-json", '[{"treat-as": "actor"}]'],
    ["F", "--rules-json", '[{"match": "x", "extract": ["a"]}]'],
    ["F", "--rules-json", '[{"match": "x", "where": [{"assign-to": "a"}]}]'],
    ["F", "--rules-json", '[{"match": "x", "where": [{"param": {"arg": "0"}}]}]'],
    ["F", "--rules-json", '[{"match": "x", "where": [{"param": "a", "flatten-on": "^"}]}]']])
def test_usage_errors_exit_2(tmp_path, args):
    f = tmp_path / "f.py"
    f.write_text("def f(p):\n    return p\n")
    args = [str(f) if a == "F" else a for a in args]
    out = subprocess.run([sys.executable, str(FRONTEND), *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "usage: python3 flow_frontend.py FILE [FUNC]" in out.stderr


def test_unreadable_file_is_a_usage_error(tmp_path):
    out = run(tmp_path / "missing.py")
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_syntax_error_is_a_located_error(tmp_path):
    errs = errors(tmp_path, "def f(p):\n    p = (\n")
    assert len(errs) == 1 and errs[0][0] == 2 and "syntax error" in errs[0][2]


def test_flow_selection(tmp_path):
    src = """
    from asya_lab.flow import flow
    def helper(p):
        return p
    @flow
    def one(p):
        return p
    @flow
    def two(state):
        return state
    """
    assert [f["name"] for f in compile_src(tmp_path, src)["flows"]] == ["one", "two"]
    assert [f["name"] for f in compile_src(tmp_path, src, func="helper")["flows"]] == ["helper"]
    plain = "def a(p):\n    return p\ndef b(payload):\n    return payload\ndef c(x):\n    return x\n"
    assert [f["name"] for f in compile_src(tmp_path, plain)["flows"]] == ["a", "b"]
    errs = errors(tmp_path, plain, func="nope")
    assert errs and "no module-level function `nope`" in errs[0][2]
    errs = errors(tmp_path, plain, func="c")
    assert errs == [(5, 7, "flow parameter `x` must be named p, payload or state")]


# ---- supported constructs --------------------------------------------------------------------

def test_actor_call_forms(tmp_path):
    b = body(tmp_path, """
    async def f(payload):
        payload = h(payload)
        payload = await write_draft(payload)
        payload = await obj.method(payload)
        notify(payload)
        return payload
    """)
    assert [(s["kind"], s.get("actor"), s["line"], s["col"]) for s in b] == [
        ("call", "h", 2, 5), ("call", "write-draft", 3, 5), ("call", "obj-method", 4, 5),
        ("call", "notify", 5, 5), ("return", None, 6, 5)]
    assert all(s.get("adapter", None) is None for s in b)


def test_actors_map_and_handlers(tmp_path):
    doc = compile_src(tmp_path, """
    import handlers
    import pkg.mod as pm
    from tools import summarize as summ
    from asya_lab.flow import actor

    @actor
    def local_step(p):
        return p

    class Worker:
        def run(self, p):
            return p

    w = Worker()

    def f(p):
        p = local_step(p)
        p = actor(summ)(p)
        p = handlers.clean(p)  # asya: actor
        p = pm.enrich(p)  # asya: actor
        p = w.run(p)
        p = Worker().run(p)
        p = unknown(p)
        return p
    """, func="f")
    assert doc["errors"] == []
    a = doc["actors"]
    assert a["local-step"] == {"function": "local_step", "handler": "flows.local_step",
                               "config": {}}
    assert a["summ"]["handler"] == "tools.summarize"
    assert a["handlers-clean"]["handler"] == "handlers.clean"
    assert a["pm-enrich"]["handler"] == "pkg.mod.enrich"
    assert a["w-run"] == {"function": "w.run", "handler": "flows.Worker.run", "config": {}}
    assert a["worker-run"] == {"function": "Worker.run", "handler": "flows.Worker.run",
                               "config": {}}
    assert a["unknown"]["handler"] is None


def test_mutations_are_code_with_native_forms(tmp_path):
    b = body(tmp_path, """
    def f(state):
        state["k"] = 1
        state["n"] += 1
        state["a"]["b"][0] = state["x"]
        state["a"][state["i"]] -= 2
        state["a"][-1] = None
        return state
    """)
    assert [s["kind"] for s in b[:5]] == ["code"] * 5
    assert b[0]["code"] == "p['k'] = 1"
    assert b[0]["native"] == {"assign": [[{"const": "k"}], {"const": 1}]}
    assert b[1]["native"] == {"augassign": ["+", [{"const": "n"}], {"const": 1}]}
    assert b[2]["native"] == {"assign": [[{"const": "a"}, {"const": "b"}, {"const": 0}],
                                         SUB_P("x")]}
    assert b[3]["native"] == {"augassign": ["-", [{"const": "a"}, SUB_P("i")], {"const": 2}]}
    assert b[4]["native"] == {"assign": [[{"const": "a"}, {"neg": {"const": 1}}],
                                         {"const": None}]}
    assert all(s["why"] is None for s in b[:5])


def test_if_elif_else(tmp_path):
    b = body(tmp_path, """
    def f(p):
        if p["a"] > 1:
            p = a(p)
        elif p["b"]:
            p = b(p)
        else:
            p = c(p)
        return p
    """)
    s = b[0]
    assert s["kind"] == "if" and s["test"]["code"] == "p['a'] > 1"
    assert s["test"]["native"] == {"cmp": [SUB_P("a"), [[">", {"const": 1}]]]}
    assert [x["actor"] for x in s["then"]] == ["a"]
    [elif_] = s["else"]
    assert elif_["kind"] == "if" and (elif_["line"], elif_["col"]) == (4, 5)
    assert [x["actor"] for x in elif_["then"]] == ["b"]
    assert [x["actor"] for x in elif_["else"]] == ["c"]


def test_while_break_continue(tmp_path):
    b = body(tmp_path, """
    def f(p):
        while p["n"] < 3:
            p["n"] += 1
            if p["skip"]:
                continue
            p = step(p)
        while True:
            p = poll(p)
            if p["done"]:
                break
        while 1:
            break
        return p
    """)
    assert b[0]["kind"] == "while" and b[0]["test"]["native"]["cmp"][1] == [["<", {"const": 3}]]
    assert b[0]["body"][1]["then"] == [{"kind": "continue", "line": 5, "col": 13}]
    assert b[1]["test"] is None and b[1]["body"][1]["then"][0]["kind"] == "break"
    assert b[2]["test"] is None


def test_early_return(tmp_path):
    b = body(tmp_path, """
    def f(p):
        if p["cached"]:
            return p
        p = work(p)
        return p
    """)
    assert b[0]["then"] == [{"kind": "return", "line": 3, "col": 9}]
    assert b[-1]["kind"] == "return"


def test_try_except_finally_forms(tmp_path):
    b = body(tmp_path, """
    import openai
    from errors import RateLimitError
    def f(p):
        try:
            p = a(p)
            try:
                p = b(p)
            except KeyError:
                raise
        except ValueError:
            raise RuntimeError("boom")
        except (RateLimitError, openai.APITimeoutError):
            p = sorry(p)
        except openai.error.Timeout:
            raise TimeoutError
        except:
            p = fallback(p)
        finally:
            p = cleanup(p)
        return p
    """, func="f")
    t = b[0]
    assert t["kind"] == "try"
    assert [h["types"] for h in t["handlers"]] == [
        ["ValueError"], ["RateLimitError", "openai.APITimeoutError"],
        ["openai.error.Timeout"], []]
    inner = t["body"][1]
    assert inner["kind"] == "try"
    assert inner["handlers"][0]["body"] == [{"kind": "raise", "line": 9, "col": 13,
                                             "code": "raise", "error_type": None,
                                             "message": None}]
    r = t["handlers"][0]["body"][0]
    assert (r["error_type"], r["message"], r["code"]) == (
        "RuntimeError", "boom", "raise RuntimeError('boom')")
    r = t["handlers"][2]["body"][0]
    assert (r["error_type"], r["message"]) == ("TimeoutError", None)
    assert [s["actor"] for s in t["finally"]] == ["cleanup"]


def test_raise_outside_except(tmp_path):
    b = body(tmp_path, """
    import errs
    def f(p):
        if p["bad"]:
            raise errs.Invalid(f"bad {p['x']}")
        return p
    """, func="f")
    r = b[0]["then"][0]
    assert r["error_type"] == "errs.Invalid" and r["message"] is None
    b = body(tmp_path, "def f(p):\n    raise QuotaError('over')\n")
    assert (b[0]["error_type"], b[0]["message"]) == ("QuotaError", "over")


def test_fanout_list_literal_and_gather(tmp_path):
    b = body(tmp_path, """
    import asyncio
    from asyncio import gather
    async def f(p):
        p["r"] = [a(p["x"]), b(p["y"])]
        p["g"] = await asyncio.gather(a(p["x"]), b(p))
        p["h"]["i"] = await gather(c(p["z"]))
        return p
    """, func="f")
    assert b[0]["kind"] == "fanout" and b[0]["target"] == ["r"]
    assert [(c["actor"], c["arg"]["code"], c["line"], c["col"]) for c in b[0]["calls"]] == [
        ("a", "p['x']", 4, 15), ("b", "p['y']", 4, 26)]
    assert b[1]["kind"] == "fanout" and b[1]["calls"][1]["arg"]["native"] == {"name": "p"}
    assert b[2]["kind"] == "fanout" and b[2]["target"] == ["h", "i"]


def test_fanout_comprehension_forms(tmp_path):
    b = body(tmp_path, """
    import asyncio
    async def f(p):
        p["r"] = [a(x) for x in p["items"]]
        p["s"] = await asyncio.gather(*[b(item["q"]) for item in p["items"]])
        p["t"] = await asyncio.gather(*(c(x) for x in p["items"][0]))
        return p
    """, func="f")
    assert b[0] == {"kind": "fanout_each", "line": 3, "col": 5, "target": ["r"], "actor": "a",
                    "var": "x", "iterable": {"code": "p['items']", "native": SUB_P("items"),
                                             "why": None},
                    "arg": {"code": "x", "native": {"name": "x"}, "why": None}}
    assert b[1]["arg"]["native"] == {"sub": [{"name": "item"}, {"const": "q"}]}
    assert b[2]["kind"] == "fanout_each" and b[2]["actor"] == "c"


def test_comprehension_without_actor_is_a_mutation(tmp_path):
    b = body(tmp_path, """
    def f(p):
        p["d"] = [x * 2 for x in p["v"]]
        p["e"] = [1, p["a"]]
        return p
    """)
    assert b[0]["kind"] == "code" and b[0]["native"] is None
    assert "comprehension" in b[0]["why"]
    assert b[1]["native"] == {"assign": [[{"const": "e"}], {"list": [{"const": 1},
                                                                     SUB_P("a")]}]}


def test_with_timeout_is_config(tmp_path):
    b = body(tmp_path, """
    import asyncio
    import asyncio as aio
    from asyncio import timeout
    async def f(p):
        async with asyncio.timeout(30):
            p = slow(p)
        with aio.timeout(delay=90):
            p = slower(p)
        async with timeout(0.5):
            p = fast(p)
        return p
    """, func="f")
    assert b[0]["kind"] == "config" and b[0]["values"] == {"actorTimeout": "30s"}
    assert [s["actor"] for s in b[0]["body"]] == ["slow"]
    assert b[1]["values"] == {"actorTimeout": "1m30s"}
    assert b[2]["values"] == {"actorTimeout": "500ms"}


def test_contextlib_suppress_is_inline_code(tmp_path):
    b = body(tmp_path, """
    import contextlib
    def f(p):
        with contextlib.suppress(KeyError):
            p["z"] = p["a"]["b"]
        return p
    """, func="f")
    assert b[0]["kind"] == "code" and b[0]["native"] is None
    assert b[0]["code"] == "with contextlib.suppress(KeyError):\n    p['z'] = p['a']['b']"
    assert "contextlib.suppress" in b[0]["why"]


def test_subflow_group_and_unfold(tmp_path):
    doc = compile_src(tmp_path, """
    from asya_lab.flow import flow
    @flow
    async def inner(state):
        state = review(state)
        if state["ok"]:
            return state
        state["n"] = 1
        return state
    def prep(d):
        d["prepped"] = True
        d = clean(d)
        return d
    @flow
    async def outer(p):
        p = await inner(p)
        p = prep(p)
        return p
    """, func="outer")
    assert doc["errors"] == []
    b = doc["flows"][0]["body"]
    assert b[0]["kind"] == "group" and b[0]["flow"] == "inner" and b[0]["line"] == 15
    assert [s["kind"] for s in b[0]["body"]] == ["call", "if", "code", "return"]
    assert b[0]["body"][2]["code"] == "p['n'] = 1"
    assert b[1]["kind"] == "unfold" and b[1]["function"] == "prep"
    assert b[1]["body"][0]["code"] == "p['prepped'] = True"
    assert b[1]["body"][1] == {"kind": "call", "line": 11, "col": 5, "actor": "clean",
                               "adapter": None}
    assert sorted(doc["actors"]) == ["clean", "review"]


def test_tool_style_adapter_calls(tmp_path):
    b = body(tmp_path, """
    def f(p):
        p["y"] = f_tool(p["a"], n=3)
        p["z"][0] = await other(p)
        send(p["a"], "x")
        return p
    """)
    assert b[0] == {"kind": "call", "line": 2, "col": 5, "actor": "f-tool", "adapter": {
        "args": [{"code": "p['a']", "native": SUB_P("a"), "why": None}],
        "kwargs": {"n": {"code": "3", "native": {"const": 3}, "why": None}},
        "target": ["y"]}}
    assert b[1]["adapter"]["target"] == ["z", 0]
    assert b[1]["adapter"]["args"][0]["native"] == {"name": "p"}
    assert b[2]["adapter"]["target"] is None
    assert [a["code"] for a in b[2]["adapter"]["args"]] == ["p['a']", "'x'"]


def test_inline_calls_and_methods_are_code(tmp_path):
    b = body(tmp_path, """
    import mylib
    from mylib import normalize
    def f(p):
        p = normalize(p)
        p = mylib.tidy(p)
        p["items"].append(1)
        p.update({"a": 1})
        return p
    """, func="f")
    assert [s["kind"] for s in b[:4]] == ["code"] * 4
    assert b[0]["code"] == "p = normalize(p)" and b[0]["native"] is None
    assert b[0]["why"] == "calls normalize(): only a Python router can run it"
    assert b[1]["why"] == "calls mylib.tidy(): only a Python router can run it"
    assert b[2]["why"] == "calls p['items'].append(), a method: only a Python router can run it"
    assert b[3]["code"] == "p.update({'a': 1})"


def test_local_helper_called_tool_style_or_in_a_test_is_inline(tmp_path):
    b = body(tmp_path, """
    def clean(text):
        return text.strip()
    def ready(p):
        return p["n"] > 2
    def f(p):
        p["t"] = clean(p["t"])
        if ready(p):
            return p
        return p
    """, func="f")
    assert b[0]["kind"] == "code" and b[0]["why"].startswith("calls clean()")
    assert b[1]["test"]["native"] is None and b[1]["test"]["why"].startswith("calls ready()")


# ---- native subset -----------------------------------------------------------------------

NATIVE = [
    ('p["a"] and p["b"] or not p["c"]',
     {"or": [{"and": [SUB_P("a"), SUB_P("b")]}, {"not": SUB_P("c")}]}),
    ('"x" in p["tags"]', {"cmp": [{"const": "x"}, [["in", SUB_P("tags")]]]}),
    ('p["x"] not in ("a", "b")',
     {"cmp": [SUB_P("x"), [["not in", {"list": [{"const": "a"}, {"const": "b"}]}]]]}),
    ('p["x"] is not None', {"cmp": [SUB_P("x"), [["is not", {"const": None}]]]}),
    ('True is p["x"]', {"cmp": [{"const": True}, [["is", SUB_P("x")]]]}),
    ('1 < p["x"] <= 3', {"cmp": [{"const": 1}, [["<", SUB_P("x")], ["<=", {"const": 3}]]]}),
    ('p["a"] + 1 - 2 * 3', {"bin": ["-", {"bin": ["+", SUB_P("a"), {"const": 1}]},
                                   {"bin": ["*", {"const": 2}, {"const": 3}]}]}),
    ('p["a"] / 2 // 3 % 4 ** 5',
     {"bin": ["%", {"bin": ["//", {"bin": ["/", SUB_P("a"), {"const": 2}]}, {"const": 3}]},
              {"bin": ["**", {"const": 4}, {"const": 5}]}]}),
    ('-p["x"] + +p["y"]', {"bin": ["+", {"neg": SUB_P("x")}, {"pos": SUB_P("y")}]}),
    ('len(p["a"]) > 0', {"cmp": [{"call": ["len", SUB_P("a")]}, [[">", {"const": 0}]]]}),
    ('str(p["n"]) + "x"', {"bin": ["+", {"call": ["str", SUB_P("n")]}, {"const": "x"}]}),
    ('int(p["s"]) + float(p["f"])', {"bin": ["+", {"call": ["int", SUB_P("s")]},
                                             {"call": ["float", SUB_P("f")]}]}),
    ('bool(p)', {"call": ["bool", {"name": "p"}]}),
    ('[1, 2.5, "s", None, p["a"]]', {"list": [{"const": 1}, {"const": 2.5}, {"const": "s"},
                                              {"const": None}, SUB_P("a")]}),
    ('{"k": p["v"], "n": {}}', {"dict": [[{"const": "k"}, SUB_P("v")],
                                         [{"const": "n"}, {"dict": []}]]}),
    ('p["a"] if p["t"] else p["b"]', {"ifexp": [SUB_P("t"), SUB_P("a"), SUB_P("b")]}),
    ('p["a"][-1][0]', {"sub": [{"sub": [SUB_P("a"), {"neg": {"const": 1}}]}, {"const": 0}]}),
]


@pytest.mark.parametrize("code,native", NATIVE, ids=[c for c, _ in NATIVE])
def test_native_expressions(tmp_path, code, native):
    b = body(tmp_path, f"def f(p):\n    if {code}:\n        return p\n    return p\n")
    assert b[0]["test"]["native"] == native
    assert b[0]["test"]["why"] is None


NOT_NATIVE = [
    ('p["s"].upper() == "A"', "calls p['s'].upper(), a method"),
    ('sorted(p["x"])', "calls sorted()"),
    ('str()', "calls str() with other than one positional argument"),
    ('len(p["a"], 2)', "calls len() with other than one positional argument"),
    ('p["a"][1:]', "uses a slice `p['a'][1:]`"),
    ('f"{p[\'a\']}"', "uses an f-string"),
    ('p["x"] is p["y"]', "uses `is` with something other than None, True or False"),
    ('p["a"] | p["b"]', "uses the operator |"),
    ('~p["a"]', "uses the operator ~"),
    ('{**p}', "uses ** unpacking in a dict display"),
    ('{1: "a"}', "uses dict keys other than string literals"),
    ('(p["a"], 1)', "uses a tuple display with computed items"),
    ('{1, 2}', "uses a set display"),
    ('b"x"', "uses the literal b'x'"),
    ('1e999', "uses the literal 1e309"),
    ('[*p["a"]]', "uses * unpacking"),
    ('math.pi > 3', "reads the attribute `math.pi`"),
    ('[x for x in p["a"]]', "uses a comprehension"),
]


@pytest.mark.parametrize("code,why", NOT_NATIVE, ids=[c for c, _ in NOT_NATIVE])
def test_non_native_expressions_say_why(tmp_path, code, why):
    b = body(tmp_path, f"import math\ndef f(p):\n    if {code}:\n        return p\n    return p\n",
             func="f")
    assert b[0]["test"]["native"] is None
    assert b[0]["test"]["why"] == why + ": only a Python router can run it"


def test_shadowed_builtin_is_not_native(tmp_path):
    b = body(tmp_path, "from mylib import len\ndef f(p):\n    p['n'] = len(p['a'])\n"
             "    return p\n", func="f")
    assert b[0]["native"] is None and b[0]["why"].startswith("calls len()")


def test_non_native_mutation_target_and_operator(tmp_path):
    b = body(tmp_path, """
    def f(p):
        p["a"][1:] = [1]
        p["b"] |= {"x": 1}
        return p
    """)
    assert b[0]["native"] is None and "assigns to a slice" in b[0]["why"]
    assert b[1]["native"] is None and b[1]["why"].startswith("uses the operator |=")


def test_whole_state_assignment_has_empty_target(tmp_path):
    b = body(tmp_path, "def f(p):\n    p = {'a': p['b']}\n    return p\n")
    assert b[0]["native"] == {"assign": [[], {"dict": [[{"const": "a"}, SUB_P("b")]]}]}


# ---- treat-as precedence -----------------------------------------------------------------

PRECEDENCE_SRC = """
from asya_lab.flow import actor, inline, unfold
from mylib import imported

@unfold
def decorated(p):
    p["d"] = 1
    return p

def local(p):
    p["l"] = 1
    return p

def f(p):
    p = {call}{comment}
    return p
"""


def kind_of(tmp_path, call, comment="", rules=None):
    src = PRECEDENCE_SRC.replace("{call}", call).replace("{comment}", comment)
    b = body(tmp_path, src, func="f", rules=rules)
    s = b[0]
    if s["kind"] == "code":
        return "inline"
    return {"call": "actor", "unfold": "unfold", "group": "flow"}[s["kind"]]


def test_comment_beats_decorator(tmp_path):
    assert kind_of(tmp_path, "decorated(p)") == "unfold"
    assert kind_of(tmp_path, "decorated(p)", "  # asya: actor") == "actor"
    assert kind_of(tmp_path, "decorated(p)", "  # asya: inline") == "inline"


def test_decorator_beats_wrapper(tmp_path):
    assert kind_of(tmp_path, "actor(decorated)(p)") == "unfold"


def test_wrapper_beats_rules(tmp_path):
    rules = [{"match": "mylib.imported", "treat-as": "inline"}]
    assert kind_of(tmp_path, "actor(imported)(p)", rules=rules) == "actor"
    assert kind_of(tmp_path, "inline(local)(p)") == "inline"


def test_rules_beat_defaults(tmp_path):
    assert kind_of(tmp_path, "imported(p)") == "inline"
    assert kind_of(tmp_path, "imported(p)",
                   rules=[{"match": "mylib.imported", "treat-as": "actor"}]) == "actor"
    assert kind_of(tmp_path, "local(p)") == "unfold"
    assert kind_of(tmp_path, "local(p)",
                   rules=[{"match": "flows.local", "treat-as": "actor"}]) == "actor"
    assert kind_of(tmp_path, "stranger(p)") == "actor"
    assert kind_of(tmp_path, "stranger(p)",
                   rules=[{"match": "stranger", "treat-as": "inline"}]) == "inline"


def test_defaults(tmp_path):
    assert kind_of(tmp_path, "local(p)") == "unfold"
    assert kind_of(tmp_path, "imported(p)") == "inline"
    assert kind_of(tmp_path, "stranger(p)") == "actor"


def test_definition_comment_and_config_kind(tmp_path):
    b = body(tmp_path, """
    def h(p):  # asya: actor
        return p
    def f(p):
        p = h(p)
        p = setup(p)  # asya: config
        return p
    """, func="f")
    assert [s["kind"] for s in b] == ["call", "return"]


def test_flow_decorator_inlines_as_group(tmp_path):
    b = body(tmp_path, """
    from asya_lab import flow as fl
    @fl.flow
    def sub(p):
        return p
    def f(p):
        p = sub(p)
        return p
    """, func="f")
    assert b[0]["kind"] == "group" and b[0]["flow"] == "sub"


# ---- rules and configuration extraction --------------------------------------------------

def actor_config(tmp_path, decorators, imports="", rules=None):
    src = f"""
{imports}
from asya_lab.flow import actor
@actor
{decorators}
def work(p):
    return p
def f(p):
    p = work(p)
    return p
"""
    doc = compile_src(tmp_path, src, func="f", rules=rules)
    assert doc["errors"] == []
    return doc["actors"]["work"]["config"]


def test_tenacity_retry_extraction(tmp_path):
    cfg = actor_config(tmp_path, "@tenacity.retry(stop=tenacity.stop_after_attempt(3), "
                       "wait=tenacity.wait_exponential(multiplier=1, min=2, max=60))",
                       "import tenacity")
    assert cfg == {"policies": {"default": {"maxAttempts": 3, "initialDelay": "2s",
                                            "maxInterval": "1m"}}}
    cfg = actor_config(tmp_path, "@retry(stop=stop_after_attempt(5) | stop_after_delay(30), "
                       "wait=wait_fixed(0.25))",
                       "from tenacity import retry, stop_after_attempt, stop_after_delay, "
                       "wait_fixed")
    assert cfg == {"policies": {"default": {"maxAttempts": 5, "maxDuration": "30s",
                                            "initialDelay": "250ms"}}}
    cfg = actor_config(tmp_path, "@retry(stop=stop_after_delay(max_delay=3600))",
                       "from tenacity import *")
    assert cfg == {"policies": {"default": {"maxDuration": "1h"}}}


def test_timeout_decorator_and_stamina(tmp_path):
    assert actor_config(tmp_path, "@timeout_decorator.timeout(90.5)",
                        "import timeout_decorator") == {"actorTimeout": "1m30s500ms"}
    assert actor_config(tmp_path, "@stamina.retry(on=ValueError, attempts=4, timeout=120)",
                        "import stamina") == {
        "policies": {"default": {"maxAttempts": 4, "maxDuration": "2m"}}}


def test_user_rule_extract_form(tmp_path):
    rules = [{"match": "mylib.limits", "treat-as": "config",
              "extract": {"seconds": "spec.resiliency.actorTimeout",
                          "tries": "spec.resiliency.policies.slow.maxAttempts"}}]
    cfg = actor_config(tmp_path, "@limits(seconds=45, tries=2)", "from mylib import limits",
                       rules=rules)
    assert cfg == {"actorTimeout": "45s", "policies": {"slow": {"maxAttempts": 2}}}


def test_user_rule_where_tree_with_param_spec(tmp_path):
    rules = [{"match": "mylib.guard", "where": [
        {"param": {"arg": 0, "kwarg": "limit"}, "assign-to": "spec.resiliency.timeout.actor"},
        {"param": "policy", "where": [
            {"match": "backoff", "where": [
                {"param": {"arg": 0}, "assign-to": "spec.resiliency.policies.default.backoff"},
                {"param": "first", "assign-to":
                 "spec.resiliency.policies.default.initialDelay"},
                {"param": "shift", "assign-to": "spec.resiliency.policies.default.shift"},
                {"param": "on", "assign-to": "spec.resiliency.policies.default.on"}]}]}]}]
    cfg = actor_config(tmp_path, "@guard(12, policy=backoff(exponential, first=0.5, shift=-2, "
                       "on=(KeyError, errs.Timeout)))", "from mylib import guard", rules=rules)
    assert cfg == {"actorTimeout": "12s", "policies": {"default": {
        "backoff": "exponential", "initialDelay": "500ms", "shift": -2,
        "on": "KeyError, errs.Timeout"}}}
    cfg = actor_config(tmp_path, "@guard(limit=\"2m\")", "from mylib import guard",
                       rules=rules)
    assert cfg == {"actorTimeout": "2m"}


def test_user_rule_overrides_shipped(tmp_path):
    rules = [{"match": "asyncio.timeout", "treat-as": "config",
              "extract": {"delay": "spec.resiliency.policies.default.maxDuration"}}]
    b = body(tmp_path, "import asyncio\nasync def f(p):\n    async with asyncio.timeout(5):\n"
             "        p = h(p)\n    return p\n", rules=rules)
    assert b[0]["values"] == {"policies": {"default": {"maxDuration": "5s"}}}


def test_user_rule_config_with_block(tmp_path):
    rules = [{"match": "budget.limit", "treat-as": "config",
              "where": [{"param": "0", "assign-to": "spec.resiliency.actorTimeout"}]}]
    b = body(tmp_path, "import budget\ndef f(p):\n    with budget.limit(600), budget.limit(7):\n"
             "        p = h(p)\n    return p\n", rules=rules)
    assert b[0]["kind"] == "config" and b[0]["values"] == {"actorTimeout": "7s"}


def test_rules_json_on_the_command_line(tmp_path):
    f = tmp_path / "flows.py"
    f.write_text("import budget\ndef f(p):\n    with budget.limit(3):\n        p = h(p)\n"
                 "    return p\n")
    rules = [{"match": "budget.limit", "extract": {"0": "spec.resiliency.actorTimeout"}}]
    out = run(f, "f", "--rules-json", json.dumps(rules))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["flows"][0]["body"][0]["values"] == {"actorTimeout": "3s"}


# ---- rejected constructs: message fragment and line:col -----------------------------------

REJECTED = [
    ("for", "def f(p):\n    for x in p['i']:\n        p = h(p)\n    return p\n",
     "for loops cannot be compiled: use a fan-out comprehension", 2, 5),
    ("async_for", "async def f(p):\n    async for x in p['i']:\n        pass\n    return p\n",
     "async for loops cannot be compiled", 2, 5),
    ("yield", "def f(p):\n    p = h(p)\n    yield p\n", "yield cannot be compiled", 3, 5),
    ("yield_from", "def f(p):\n    p['x'] = yield from g(p)\n    return p\n",
     "yield cannot be compiled", 2, 14),
    ("import", "def f(p):\n    import os\n    return p\n",
     "import inside a flow cannot be compiled: move it to the top of the module", 2, 5),
    ("from_import", "def f(p):\n    from os import path\n    return p\n",
     "import inside a flow cannot be compiled", 2, 5),
    ("global", "X = 1\ndef f(p):\n    global X\n    return p\n",
     "global cannot be compiled: a flow keeps all state in p", 3, 5),
    ("nonlocal", "def f(p):\n    nonlocal q\n    return p\n", "nonlocal cannot be compiled", 2, 5),
    ("free_variable", "def f(p):\n    p['a'] = y + 1\n    return p\n",
     "free variable `y`: a compiled flow keeps all state in p; store it as p[\"y\"]", 2, 14),
    ("free_variable_in_test", "def f(p):\n    if ready:\n        return p\n    return p\n",
     "free variable `ready`", 2, 8),
    ("module_variable", "LIMIT = 3\ndef f(p):\n    p['a'] = LIMIT\n    return p\n",
     "`LIMIT` is a module-level variable: a compiled flow sees only p", 3, 14),
    ("nested_call", "def f(p):\n    p = a(b(p))\n    return p\n",
     "nested call: b() is an actor call inside another expression", 2, 11),
    ("nested_call_in_test", "def f(p):\n    if check(p):\n        return p\n    return p\n",
     "nested call: check() is an actor call", 2, 8),
    ("except_as", "def f(p):\n    try:\n        p = h(p)\n    except ValueError as e:\n"
     "        pass\n    return p\n",
     "except … as e cannot be compiled: the flow cannot see the exception object", 4, 5),
    ("try_else", "def f(p):\n    try:\n        p = h(p)\n    except ValueError:\n"
     "        pass\n    else:\n        p = g(p)\n    return p\n",
     "try/else cannot be compiled: move the else body to the end of the try body", 7, 9),
    ("try_finally_only", "def f(p):\n    try:\n        p = h(p)\n    finally:\n"
     "        p = g(p)\n    return p\n",
     "try/finally without except cannot be compiled: add an except clause", 2, 5),
    ("try_star", "def f(p):\n    try:\n        p = h(p)\n    except* ValueError:\n"
     "        pass\n    return p\n", "except* cannot be compiled", 2, 5),
    ("multiple_targets", "def f(p):\n    p['a'] = p['b'] = 1\n    return p\n",
     "multiple assignment targets (a = b = …) cannot be compiled", 2, 5),
    ("tuple_target", "def f(p):\n    p['a'], p['b'] = 1, 2\n    return p\n",
     "multiple assignment targets (a, b = …) cannot be compiled", 2, 5),
    ("class_args", "class Model:\n    pass\ndef f(p):\n    p['m'] = Model(3)\n    return p\n",
     "class instantiation with arguments `Model(3)` cannot be compiled", 4, 14),
    ("class_args_method", "def f(p):\n    p = Summarizer(model='x').run(p)\n    return p\n",
     "class instantiation with arguments `Summarizer(model='x')` cannot be compiled", 2, 9),
    ("print", "def f(p):\n    print(p)\n    return p\n",
     "print() is a side effect that a compiled flow does not run where you wrote it", 2, 5),
    ("print_in_expr", "def f(p):\n    p['x'] = print(1)\n    return p\n",
     "print() is a side effect", 2, 14),
    ("return_value", "def f(p):\n    return p['x']\n",
     "return of `p['x']` cannot be compiled: a flow returns its state", 2, 5),
    ("return_nothing", "def f(p):\n    p = h(p)\n    return\n",
     "return of nothing cannot be compiled", 3, 5),
    ("lambda", "def f(p):\n    p['f'] = lambda: 1\n    return p\n",
     "lambda cannot be compiled", 2, 14),
    ("del", "def f(p):\n    del p['x']\n    return p\n",
     "del cannot be compiled: write p.pop(\"k\", None)", 2, 5),
    ("assert", "def f(p):\n    assert p['x']\n    return p\n",
     "assert cannot be compiled: write if not …: raise ValueError", 2, 5),
    ("match", "def f(p):\n    match p:\n        case _:\n            pass\n    return p\n",
     "match cannot be compiled: use if/elif/else", 2, 5),
    ("walrus", "def f(p):\n    if (n := p['x']):\n        return p\n    return p\n",
     "the walrus operator := cannot be compiled", 2, 9),
    ("async_with", "async def f(p):\n    async with lock():\n        p = h(p)\n    return p\n",
     "async with lock() cannot be compiled: only configuration blocks", 2, 16),
    ("with_other", "def f(p):\n    with open('x'):\n        pass\n    return p\n",
     "with open('x') cannot be compiled: only configuration blocks", 2, 10),
    ("with_as", "import asyncio\nasync def f(p):\n    async with asyncio.timeout(3) as t:\n"
     "        p = h(p)\n    return p\n",
     "async with … as t cannot be compiled: a configuration block binds no name", 3, 38),
    ("suppress_around_actor", "import contextlib\ndef f(p):\n"
     "    with contextlib.suppress(KeyError):\n        p = h(p)\n    return p\n",
     "with contextlib.suppress(…) can hold only mutations", 3, 5),
    ("assign_other_name", "def f(p):\n    x = h(p)\n    return p\n",
     "assignment to `x`, a name other than p: a compiled flow keeps all state in p", 2, 5),
    ("augassign_other_name", "def f(p):\n    n += 1\n    return p\n",
     "assignment to `n`, a name other than p", 2, 5),
    ("assign_attribute", "def f(p):\n    p.x = 1\n    return p\n",
     "assignment to `p.x` cannot be compiled: only p and its keys can be assigned", 2, 5),
    ("nested_def", "def f(p):\n    def g(q):\n        return q\n    return p\n",
     "a def or class inside a flow cannot be compiled: define it at module level", 2, 5),
    ("bare_raise_outside_except", "def f(p):\n    raise\n",
     "bare raise outside an except block", 2, 5),
    ("raise_state_attribute", "def f(p):\n    raise p.error\n",
     "raise needs an exception class", 2, 11),
    ("raise_not_class", "def f(p):\n    raise p['e']\n", "raise needs an exception class", 2, 11),
    ("break_outside_loop", "def f(p):\n    break\n",
     "break outside a while loop", 2, 5),
    ("continue_outside_loop", "def f(p):\n    if p['x']:\n        continue\n    return p\n",
     "continue outside a while loop", 3, 9),
    ("while_else", "def f(p):\n    while p['x']:\n        p = h(p)\n    else:\n"
     "        p = g(p)\n    return p\n", "while/else cannot be compiled", 5, 9),
    ("await_non_actor", "import mylib\nasync def f(p):\n    p['x'] = await mylib.get(p['y'])\n"
     "    return p\n", "await is only allowed on an actor call, and mylib.get() is not one", 3, 14),
    ("await_in_test", "async def f(p):\n    if await ok(p):\n        return p\n    return p\n",
     "await is only allowed on an actor call of its own", 2, 8),
    ("state_replaced_by_tool", "def f(p):\n    p = tool(p['a'])\n    return p\n",
     "p = tool(…) with arguments other than the state would replace the state", 2, 5),
    ("computed_result_key", "def f(p):\n    p[p['k']] = tool(p['a'])\n    return p\n",
     "the result of actor tool must go to a constant key", 2, 5),
    ("fanout_mixed", "def f(p):\n    p['r'] = [a(p['x']), p['y']]\n    return p\n",
     "a fan-out list holds only actor calls: `p['y']` is not one", 2, 26),
    ("fanout_two_args", "def f(p):\n    p['r'] = [a(p['x'], 1), b(p)]\n    return p\n",
     "a fan-out call passes exactly one argument", 2, 15),
    ("fanout_filter", "def f(p):\n    p['r'] = [a(x) for x in p['i'] if x]\n    return p\n",
     "a fan-out comprehension cannot filter (`if`)", 2, 39),
    ("fanout_two_fors", "def f(p):\n    p['r'] = [a(x) for y in p['i'] for x in y]\n"
     "    return p\n", "a fan-out comprehension has exactly one `for`", 2, 14),
    ("fanout_to_state", "import asyncio\nasync def f(p):\n"
     "    p = await asyncio.gather(a(p), b(p))\n    return p\n",
     "fan-out results must go to a key", 3, 5),
    ("gather_statement", "import asyncio\nasync def f(p):\n"
     "    await asyncio.gather(a(p), b(p))\n    return p\n",
     "fan-out results must go to a key", 3, 5),
    ("gather_kwargs", "import asyncio\nasync def f(p):\n"
     "    p['r'] = await asyncio.gather(a(p), return_exceptions=True)\n    return p\n",
     "asyncio.gather keywords cannot be compiled", 3, 41),
    ("star_args", "def f(p):\n    p['r'] = tool(*p['a'])\n    return p\n",
     "*args in a call to actor tool cannot be compiled", 2, 19),
    ("recursion", "from asya_lab.flow import flow\n@flow\ndef f(p):\n    p = f(p)\n    return p\n",
     "f calls itself: recursion cannot be compiled", 4, 5),
    ("flow_not_local", "from other import sub\ndef f(p):\n    p = sub(p)  # asya: flow\n"
     "    return p\n", "sub is treated as flow but is not defined in this file", 3, 9),
    ("unknown_comment_kind", "def f(p):\n    p = h(p)  # asya: actr\n    return p\n",
     "unknown `# asya: actr`", 2, 9),
    ("flow_param_name", "from asya_lab.flow import flow\n@flow\ndef f(x):\n    return x\n",
     "flow parameter `x` must be named p, payload or state", 3, 7),
    ("flow_two_params", "from asya_lab.flow import flow\n@flow\ndef f(p, q):\n    return p\n",
     "flow f must take exactly one parameter", 3, 1),
    ("actor_name_clash", "def f(p):\n    p = a_b(p)\n    p = a.b(p)\n    return p\n",
     "`a.b` and `a_b` both become actor `a-b`: rename one of them", 3, 9),
    ("negative_duration", "import asyncio\nasync def f(p):\n    async with asyncio.timeout(-1):\n"
     "        p = h(p)\n    return p\n", "needs a duration of at least 0", 3, 32),
    ("bad_duration_string", "import asyncio\nasync def f(p):\n"
     "    async with asyncio.timeout('soon'):\n        p = h(p)\n    return p\n",
     "`soon` is not a duration for spec.resiliency.actorTimeout", 3, 32),
    ("bad_rule_value", "import asyncio\nasync def f(p):\n    async with asyncio.timeout(p['t']):\n"
     "        p = h(p)\n    return p\n", "cannot read a value from `p['t']`", 3, 32),
]


@pytest.mark.parametrize("src,fragment,line,col", [r[1:] for r in REJECTED],
                         ids=[r[0] for r in REJECTED])
def test_rejected_construct(tmp_path, src, fragment, line, col):
    errs = errors(tmp_path, src, func="f")
    assert any(fragment in m and (ln, c) == (line, col) for ln, c, m in errs), errs


def test_all_errors_are_collected(tmp_path):
    errs = errors(tmp_path, "def f(p):\n    for x in p:\n        pass\n    x = 1\n"
                  "    print(p)\n    return p['x']\n")
    assert [(ln, c) for ln, c, _ in errs] == [(2, 5), (4, 5), (5, 5), (6, 5)]
    assert all(" write " in m or ": use " in m or "instead" in m or "do it" in m
               or "move" in m for _, _, m in errs)


def test_comment_on_any_line_of_a_multiline_call(tmp_path):
    b = body(tmp_path, """
    from mylib import tidy
    def f(p):
        p = tidy(
            p)  # asya: actor
        return p
    """, func="f")
    assert b[0]["kind"] == "call" and b[0]["actor"] == "tidy"


# ---- the differential corpus and generated flows (tests/flows) compile without errors -------

CORPUS = REPO / "tests" / "flows" / "corpus"


def corpus_functions():
    """(file, func) for every flow the corpus runs (the keys of its INPUTS)."""
    out = []
    for f in sorted(CORPUS.glob("flows_*.py")):
        tree = ast.parse(f.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "INPUTS":
                out += [(f, k.value) for k in node.value.keys]
    return out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="no tests/flows corpus")
def test_corpus_flows_compile_without_errors():
    funcs = corpus_functions()
    assert len(funcs) > 50
    for f, func in funcs:
        doc = frontend.compile_source(str(f), f.read_text(), func, [])
        assert doc["errors"] == [], (f.name, func, doc["errors"])
        assert [fl["name"] for fl in doc["flows"]] == [func]


@pytest.mark.skipif(not (CORPUS.parent / "generator.py").is_file(), reason="no flow generator")
def test_generated_flows_compile_without_errors():
    sys.path.insert(0, str(CORPUS.parent))
    try:
        import generator
    finally:
        sys.path.remove(str(CORPUS.parent))
    for seed in range(200):
        g = generator.generate(seed)
        doc = frontend.compile_source("gen.py", generator.module_source([g]), g.name, [])
        assert doc["errors"] == [], (seed, doc["errors"])


def test_rule_errors_are_located(tmp_path):
    rules = [{"match": "budget.limit", "extract": {"0": "spec.scaling.maxReplicaCount"}}]
    errs = errors(tmp_path, "import budget\ndef f(p):\n    with budget.limit(3):\n"
                  "        p = h(p)\n    return p\n", rules=rules)
    assert errs == [(3, 10, "rule target `spec.scaling.maxReplicaCount` is not supported: use "
                     "spec.resiliency.actorTimeout or spec.resiliency.policies.<name>.<field>")]
    errs = errors(tmp_path, """
    from asya_lab.flow import actor
    from tenacity import retry, stop_after_attempt
    @actor
    @retry(stop=stop_after_attempt(0))
    def work(p):
        return p
    def f(p):
        p = work(p)
        return p
    """, func="f")
    assert errs == [(4, 32, "spec.resiliency.policies.default.maxAttempts needs an integer of "
                     "at least 1")]


def test_errors_inside_bodies_with_a_bad_header_are_still_reported(tmp_path):
    errs = errors(tmp_path, "def f(p):\n    if y:\n        x = 1\n    while z:\n"
                  "        print(p)\n    with open('f'):\n        del p['a']\n    return p\n")
    assert [(ln, c) for ln, c, _ in errs] == [(2, 8), (3, 9), (4, 11), (5, 9), (6, 10), (7, 9)]
