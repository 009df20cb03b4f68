"""Corpus: calls, if/elif/else, while with break/continue, while True, early return.

The names called here (a, b, inc, ...) are not imported: the compiler classifies unknown
bare names as actors, and the mesh file maps them to corpus/handlers.py. INPUTS at the
bottom gives each flow the payloads that exercise its branches.
"""


def seq_calls(p):
    p = a(p)
    p = b(p)
    p = c(p)
    return p


def single_call(p):
    p = a(p)
    return p


def call_statements(p):
    a(p)
    p = b(p)
    c(p)
    return p


def if_else(p):
    if p["x"] > 0:
        p = a(p)
    else:
        p = b(p)
    p = c(p)
    return p


def if_elif_chain(p):
    if p["x"] < 0:
        p = a(p)
    elif p["x"] == 0:
        p = b(p)
    elif p["x"] < 10:
        p = c(p)
        p["small"] = True
    else:
        p = d(p)
    p = e(p)
    return p


def if_without_else(p):
    if "flag" in p:
        p = a(p)
    if p.get("flag") is None:
        p = b(p)
    return p


def nested_if(p):
    if p["x"] > 0:
        if p["y"] > 0:
            p = a(p)
        else:
            p = b(p)
            if p["x"] > 100:
                p = e(p)
    elif p["y"] > 0:
        p = c(p)
    else:
        if p["x"] == p["y"]:
            p = d(p)
        p["both_low"] = True
    return p


def while_counter(p):
    p["n"] = 0
    while p["n"] < p["limit"]:
        p = inc(p)
    p = finish(p)
    return p


def while_break(p):
    p["n"] = 0
    while p["n"] < 10:
        p = inc(p)
        if p["n"] >= p["stop"]:
            break
        p = a(p)
    p = finish(p)
    return p


def while_continue(p):
    p["i"] = 0
    p["odd"] = []
    while p["i"] < p["limit"]:
        p["i"] += 1
        if p["i"] % 2 == 0:
            continue
        p = a(p)
        p["odd"] += [p["i"]]
    return p


def while_true(p):
    p["n"] = 0
    while True:
        p = inc(p)
        if p["n"] >= p["limit"]:
            break
    p = finish(p)
    return p


def while_handler_condition(p):
    while p["x"] < 40:
        p = double(p)
    return p


def nested_while(p):
    p["i"] = 0
    p["n"] = 0
    while p["i"] < p["outer"]:
        p["i"] += 1
        p["j"] = 0
        while p["j"] < p["inner"]:
            p["j"] += 1
            if p["j"] == p["skip"]:
                continue
            p = inc(p)
            if p["n"] >= p["cap"]:
                break
        p = a(p)
    return p


def loop_break_continue_elif(p):
    p["i"] = 0
    p["seen"] = []
    while True:
        p["i"] += 1
        if p["i"] > p["limit"]:
            break
        elif p["i"] % 3 == 0:
            p = c(p)
            continue
        elif p["i"] % 3 == 1:
            p["seen"] += ["one"]
        else:
            p = b(p)
        p["seen"] += [p["i"]]
    return p


def early_return(p):
    p = a(p)
    if p["x"] > 5:
        return p
    p = b(p)
    return p


def return_in_loop(p):
    p["n"] = 0
    while True:
        p = inc(p)
        if p["n"] == p["ret_at"]:
            p["returned"] = True
            return p
        if p["n"] >= 5:
            break
    p = finish(p)
    return p


def return_in_both_branches(p):
    if p["x"]:
        p = a(p)
        return p
    else:
        p = b(p)
        return p


def return_in_nested_loop(p):
    p["i"] = 0
    while p["i"] < 3:
        p["i"] += 1
        p["j"] = 0
        while p["j"] < 3:
            p["j"] += 1
            p = inc(p)
            if p["i"] * 10 + p["j"] == p["target"]:
                return p
    p = finish(p)
    return p


INPUTS = {
    "seq_calls": [{}, {"trace": ["given"]}],
    "single_call": [{"x": 1}],
    "call_statements": [{}],
    "if_else": [{"x": 1}, {"x": 0}, {"x": -5}],
    "if_elif_chain": [{"x": -1}, {"x": 0}, {"x": 5}, {"x": 10}, {"x": 100}],
    "if_without_else": [{"flag": 1}, {}, {"flag": None}],
    "nested_if": [{"x": 1, "y": 1}, {"x": 1, "y": 0}, {"x": 200, "y": -1}, {"x": 0, "y": 2},
                  {"x": -1, "y": -1}, {"x": -1, "y": -3}],
    "while_counter": [{"limit": 0}, {"limit": 1}, {"limit": 5}],
    "while_break": [{"stop": 3}, {"stop": 1}, {"stop": 20}],
    "while_continue": [{"limit": 0}, {"limit": 1}, {"limit": 6}, {"limit": 7}],
    "while_true": [{"limit": 1}, {"limit": 4}],
    "while_handler_condition": [{"x": 1}, {"x": 3}, {"x": 50}],
    "nested_while": [{"outer": 2, "inner": 3, "skip": 2, "cap": 100},
                     {"outer": 3, "inner": 3, "skip": 0, "cap": 4},
                     {"outer": 0, "inner": 3, "skip": 0, "cap": 1}],
    "loop_break_continue_elif": [{"limit": 0}, {"limit": 7}],
    "early_return": [{"x": 6}, {"x": 5}],
    "return_in_loop": [{"ret_at": 2}, {"ret_at": 9}],
    "return_in_both_branches": [{"x": 1}, {"x": 0}, {"x": []}],
    "return_in_nested_loop": [{"target": 22}, {"target": 13}, {"target": 99}],
}
