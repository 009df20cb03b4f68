"""The reference runner and the generator on their own (no mesh): hand-computed results,
the corpus's coverage of platform.md §4.1, and the generator's determinism."""

import ast
import json

import pytest

import cases
import generator
import reference


def run(source, payload, func="f"):
    return reference.run_flow(source, func, payload)


# -- reference runner: hand-computed results ----------------------------------------------

def test_calls_loops_and_branches():
    src = '''
def f(p):
    p["n"] = 0
    while p["n"] < 3:
        p = inc(p)
    if p["n"] == 3:
        p = a(p)
    else:
        p = b(p)
    c(p)
    return p
'''
    assert run(src, {}) == {"ok": {"n": 3, "trace": ["inc", "inc", "inc", "a", "c"]}}


def test_failed_call_leaves_its_input_and_except_runs():
    src = '''
def f(p):
    try:
        p["before"] = 1
        p = half_then_fail(p)
        p["after"] = 1
    except (KeyError, ValueError):
        p = recover(p)
    return p
'''
    assert run(src, {}) == {"ok": {"before": 1, "recovered": 1, "trace": ["recover"]}}


def test_error_kinds_dotted_and_base_class_excepts():
    src = '''
def f(p):
    try:
        p = risky(p)
    except handlers.UpstreamTimeout:
        p = on_rate(p)
    except openai.APITimeoutError:
        p = on_value(p)
    except RetryableError:
        p = on_any(p)
    return p
'''
    trace = lambda kind: run(src, {"fail": {"risky": kind}})["ok"]["trace"]  # noqa: E731
    assert trace("timeout") == ["on_rate"]
    assert trace("openai") == ["on_value"]
    assert trace("rate") == ["on_any"]
    assert run(src, {"x": 4, "fail": {"risky": "quota"}}) == {
        "error": {"type": "QuotaError", "message": "risky failed at x=4"}}
    assert run(src, {"fail": {"risky": "key"}}) == {
        "error": {"type": "KeyError", "message": "'risky failed at x=None'"}}


def test_conditional_failure_depends_on_x():
    src = '''
def f(p):
    while p["x"] < 4:
        try:
            p = bump_x(p)
            p = risky(p)
        except ValueError:
            p = on_value(p)
    return p
'''
    got = run(src, {"x": 0, "fail": {"risky": {"kind": "value", "mod": 2, "rem": 0}}})
    assert got["ok"]["trace"] == ["bump_x", "risky", "bump_x", "on_value", "bump_x", "risky",
                                  "bump_x", "on_value"]
    assert got["ok"]["x"] == 4


def test_async_flow_await_gather_and_timeout_block():
    src = '''
import asyncio

async def f(p):
    async with asyncio.timeout(5):
        p = await a(p)
    p["r"] = await asyncio.gather(square(p["x"]), upper(p["s"]))
    p["q"] = await asyncio.gather(*[add_ten(x) for x in p["items"]])
    p = b(p)
    p = await tools.shout(p)
    return p
'''
    assert run(src, {"x": 3, "s": "ab", "items": [1, 2]}) == {"ok": {
        "x": 3, "s": "AB", "items": [1, 2], "r": [9, "AB"], "q": [11, 12],
        "trace": ["a", "b", "tools.shout"]}}


def test_fan_out_results_in_call_order():
    src = '''
def f(p):
    p["r"] = [slow_square(x) for x in p["nums"]]
    return p
'''
    assert run(src, {"nums": [0, 1, 2]})["ok"]["r"] == [0, 1, 4]


def test_subflow_and_unfolded_def():
    src = '''
from asya_lab.flow import flow

@flow
def sub(p):
    p = a(p)
    if p["x"] > 0:
        return p
    p = b(p)
    return p

def twice(p):
    p = inc(p)
    p = inc(p)
    return p

@flow
def f(p):
    p = sub(p)
    p = twice(p)
    return p
'''
    assert run(src, {"x": 1}) == {"ok": {"x": 1, "n": 2, "trace": ["a", "inc", "inc"]}}
    assert run(src, {"x": 0})["ok"]["trace"] == ["a", "b", "inc", "inc"]


def test_router_errors_are_python_errors():
    src = '''
def f(p):
    if p["a"] < p["b"]:
        p["r"] = p["a"] // p["b"]
    return p
'''
    assert run(src, {"a": "s", "b": 1}) == {"error": {
        "type": "TypeError", "message": "'<' not supported between instances of 'str' and 'int'"}}
    assert run(src, {"a": -7, "b": 2}) == {"ok": {"a": -7, "b": 2, "r": -4}}


def test_results_are_json_and_compared_strictly():
    src = '''
def f(p):
    p["t"] = (1, 2)
    p["f"] = p["i"] / 1
    return p
'''
    got = run(src, {"i": 3})
    assert got == {"ok": {"i": 3, "t": [1, 2], "f": 3.0}}
    assert reference.canonical(got) != reference.canonical({"ok": {"i": 3, "t": [1, 2], "f": 3}})


def test_unknown_name_is_a_corpus_error():
    with pytest.raises(reference.CorpusError, match="no_such_handler"):
        run("def f(p):\n    p = no_such_handler(p)\n    return p\n", {})


# -- the corpus ----------------------------------------------------------------------------

def corpus_trees():
    return {name: ast.parse((reference.CORPUS / name).read_text()) for name in cases.CORPUS_FILES}


def test_every_corpus_input_runs_in_the_reference():
    sources, all_cases = cases.corpus_cases()
    modules = {name: reference.load_module(text, name) for name, text in sources.items()}
    outcomes = {"ok": 0, "error": 0}
    for case in all_cases:
        result = reference.call_flow(modules[case.file], case.func, case.payload)
        outcomes[next(iter(result))] += 1
        json.dumps(result)  # JSON all the way
    assert outcomes["ok"] > 150 and outcomes["error"] > 30, outcomes


def test_every_corpus_flow_has_inputs_or_is_called_by_one():
    for name, tree in corpus_trees().items():
        ns = reference.load_module((reference.CORPUS / name).read_text(), name)
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        called = set().union(*(cases._called_names(tree, f) for f in ns["INPUTS"]))
        assert defs - set(ns["INPUTS"]) - called == set(), name


def test_corpus_covers_every_construct():
    """platform.md §4.1's supported constructs, each present somewhere in the corpus."""
    found = set()
    for tree in corpus_trees().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and node.orelse and isinstance(node.orelse[0], ast.If):
                found.add("elif")
            if isinstance(node, ast.If) and node.orelse and not isinstance(node.orelse[0], ast.If):
                found.add("else")
            if isinstance(node, ast.While):
                found.add("while True" if isinstance(node.test, ast.Constant) else "while")
                inner = list(ast.walk(node))
                found.update(k for k, t in (("break", ast.Break), ("continue", ast.Continue),
                                            ("return in loop", ast.Return))
                             if any(isinstance(n, t) for n in inner))
            if isinstance(node, ast.Try):
                found.add("try")
                if node.finalbody:
                    found.add("finally")
                if any(isinstance(n, ast.Try) for s in node.body for n in ast.walk(s)):
                    found.add("nested try")
                if any(isinstance(n, ast.Return) for s in node.body for n in ast.walk(s)):
                    found.add("return in try")
                for h in node.handlers:
                    kind = ("bare" if h.type is None else "tuple" if isinstance(h.type, ast.Tuple)
                            else "dotted" if isinstance(h.type, ast.Attribute) else "typed")
                    found.add(f"except {kind}")
                    for n in ast.walk(h):
                        if isinstance(n, ast.Raise):
                            found.add("raise in except" if n.exc else "bare raise")
            if isinstance(node, ast.Raise) and node.exc is not None:
                found.add("raise")
            if isinstance(node, ast.AugAssign):
                found.add("+=")
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript) \
                    and isinstance(node.targets[0].value, ast.Subscript):
                found.add("nested subscript")
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) \
                    and node.value.elts and isinstance(node.value.elts[0], ast.Call):
                found.add("fan-out literal")
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.ListComp) \
                    and isinstance(node.value.elt, ast.Call):
                found.add("fan-out comprehension")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "asyncio.gather":
                found.add("gather")
            if isinstance(node, ast.Await) and isinstance(node.value, ast.Call) \
                    and isinstance(node.value.func, ast.Attribute):
                found.add("await obj.method")
            if isinstance(node, ast.AsyncWith):
                found.add("with config")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
                found.add("@flow")
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                found.add("call statement")
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                    and ast.unparse(node).startswith('p['):
                found.add("method call (python router)")
    assert found >= {
        "elif", "else", "while", "while True", "break", "continue", "return in loop", "try",
        "finally", "nested try", "return in try", "except bare", "except tuple", "except dotted",
        "except typed", "raise in except", "bare raise", "raise", "+=", "nested subscript",
        "fan-out literal", "fan-out comprehension", "gather", "await obj.method", "with config",
        "@flow", "call statement", "method call (python router)"}, found
    # unfolded local defs: an undecorated def called by another flow
    compose = corpus_trees()["flows_compose.py"]
    assert {"twice_inc", "guard_positive"} <= cases._called_names(compose, "uses_unfold")


# -- the generator ---------------------------------------------------------------------------

def test_generator_is_deterministic():
    for seed in range(10):
        assert generator.generate(seed) == generator.generate(seed)
    assert len({generator.generate(s).source for s in range(30)}) == 30


def test_generated_flows_compile_and_cover_the_constructs():
    kinds = set()
    for seed in range(30):
        g = generator._Gen(seed)
        g.block(0, size=4)
        kinds |= g.kinds
    assert kinds >= {"if", "elif", "while", "while True", "try", "finally", "fanout", "return",
                     "break/continue", "raise", "re-raise"}, kinds
    sources, all_cases = cases.generated_cases(range(30))
    ns = reference.load_module(sources[cases.GENERATED_FILE], cases.GENERATED_FILE)
    results = [reference.call_flow(ns, c.func, c.payload) for c in all_cases]
    assert sum("ok" in r for r in results) > len(results) // 2
    assert sum("error" in r for r in results) > 5
    assert any(generator.generate(s).is_async for s in range(30))
