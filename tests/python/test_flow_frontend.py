"""The flow front end (crates/troupe-flow/python/flow_frontend.py) against docs/flow-ir.md:
IR shape per supported construct, native-subset detection, treat-as precedence, rules
extraction, and every rejected construct with its message and line:col."""

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


def compile_src(tmp_path, src, func=None, rules=None, name="flows.py"):
    f = tmp_path / name
    f.write_text(textwrap.dedent(src).lstrip("\n"))
    args = [func] if func else []
    if rules is not None:
        args += ["--rules-json", json.dumps(rules)]
    out = run(f, *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


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


def test_stdin_mode_matches_file_mode():
    a = run(FIXTURES / "research.py")
    b = run(FIXTURES / "research.py", stdin=True)
    assert a.returncode == b.returncode == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["--rules-json"], ["--bogus"],
                                  ["--rules-json", "{not json"], ["--rules-json", "[1]"]])
def test_usage_errors_exit_2(tmp_path, args):
    f = tmp_path / "f.py"
    f.write_text("def f(p):\n    return p\n")
    out = run(f, *args) if args[:1] != [] else subprocess.run(
        [sys.executable, str(FRONTEND)], capture_output=True, text=True)
    if args == []:
        assert out.returncode == 2
    else:
        out = subprocess.run([sys.executable, str(FRONTEND)] + ([str(f)] if args[0] != "a"
                             else []) + args, capture_output=True, text=True)
        assert out.returncode == 2, out.stdout
    assert "usage" in out.stderr


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
