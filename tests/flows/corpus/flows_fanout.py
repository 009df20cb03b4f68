"""Corpus: fan-out by list literal, comprehension and asyncio.gather, alone and nested in
if/while/try. Per-item workers (square, add_ten, upper, ...) take one item and return a
value; results must come back in call order whatever order the workers finish in.
"""

import asyncio


def fan_literal(p):
    p["r"] = [square(p["x"]), add_ten(p["x"]), upper(p["s"])]
    p = a(p)
    return p


def fan_const_args(p):
    p["r"] = [square(3), upper("abc"), tag(None)]
    return p


def fan_comprehension(p):
    p["r"] = [square(x) for x in p["nums"]]
    p = a(p)
    return p


def fan_comprehension_expr_arg(p):
    p["r"] = [add_ten(x * 2) for x in p["nums"]]
    p["tags"] = [tag(x["name"]) for x in p["people"]]
    return p


def fan_order(p):
    p["r"] = [slow_square(x) for x in p["nums"]]
    p["lit"] = [slow_square(0), slow_square(4), slow_square(1)]
    return p


def fan_nested_target(p):
    p["out"]["lengths"] = [length(w) for w in p["words"]]
    p["out"]["n"] = len(p["out"]["lengths"])
    return p


def fan_whole_state(p):
    p = a(p)
    p["digest"] = [summarize(p), count_trace(p)]
    p = b(p)
    return p


def fan_in_loop(p):
    p["round"] = 0
    while p["round"] < p["rounds"]:
        p["round"] += 1
        p["nums"] = [square(x) for x in p["nums"]]
    return p


def fan_in_if(p):
    if p["x"] > 0:
        p["r"] = [square(x) for x in p["nums"]]
    else:
        p["r"] = [add_ten(p["x"]), add_ten(0)]
    if len(p["r"]) > 2:
        p = a(p)
    else:
        p = b(p)
    return p


def fan_in_try(p):
    try:
        p = risky(p)
        p["r"] = [upper(w) for w in p["words"]]
    except ValueError:
        p["r"] = [length(w) for w in p["words"]]
    return p


def fan_over_dict_and_string(p):
    p["keys"] = [upper(k) for k in p["d"]]
    p["chars"] = [upper(ch) for ch in p["s"]]
    return p


def fan_then_break(p):
    p["n"] = 0
    while True:
        p = inc(p)
        p["r"] = [add_ten(x) for x in p["nums"]]
        p["nums"] = p["r"]
        if p["nums"][0] > p["stop"]:
            break
    return p


async def gather_literal(p):
    p["r"] = await asyncio.gather(square(p["x"]), upper(p["s"]), slow_square(1))
    p = await a(p)
    return p


async def gather_comprehension(p):
    p["r"] = await asyncio.gather(*[square(x) for x in p["nums"]])
    p = await a(p)
    return p


async def gather_in_loop(p):
    p["n"] = 0
    while p["n"] < 2:
        p = await inc(p)
        p["nums"] = await asyncio.gather(*[add_ten(x) for x in p["nums"]])
    return p


INPUTS = {
    "fan_literal": [{"x": 3, "s": "ab"}, {"x": -1.5, "s": ""}],
    "fan_const_args": [{}],
    "fan_comprehension": [{"nums": [1, 2, 3]}, {"nums": []}, {"nums": [5]}, {"nums": [0.5, -2]}],
    "fan_comprehension_expr_arg": [{"nums": [1, 2], "people": [{"name": "ann"}, {"name": "bo"}]},
                                   {"nums": [], "people": []}],
    "fan_order": [{"nums": [0, 1, 2, 3, 4, 5]}],
    "fan_nested_target": [{"out": {}, "words": ["a", "bb", "ccc"]}, {"out": {"keep": 1}, "words": []}],
    "fan_whole_state": [{"x": 1}],
    "fan_in_loop": [{"rounds": 2, "nums": [2, 3]}, {"rounds": 0, "nums": [2]}],
    "fan_in_if": [{"x": 1, "nums": [1, 2, 3]}, {"x": 1, "nums": [1]}, {"x": -1, "nums": []}],
    "fan_in_try": [{"words": ["a", "bc"]}, {"words": ["a", "bc"], "fail": {"risky": "value"}}],
    "fan_over_dict_and_string": [{"d": {"x": 1, "y": 2}, "s": "hé"}],
    "fan_then_break": [{"nums": [1, 2], "stop": 25}],
    "gather_literal": [{"x": 4, "s": "q"}],
    "gather_comprehension": [{"nums": [3, 1, 2]}, {"nums": []}],
    "gather_in_loop": [{"nums": [1, 2, 3]}],
}
