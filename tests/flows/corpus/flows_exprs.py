"""Corpus: mutations and expressions, inside the native subset (flow-ir.md "Expr and
native subset") and outside it (method calls, f-strings, comprehensions, other builtins:
a Python router runs those), with the errors CPython raises for them.
"""


def mutations_basic(p):
    p["i"] = 1
    p["s"] = "text"
    p["none"] = None
    p["t"] = True
    p["f"] = 1.5
    p["l"] = [1, "two", p["x"], None]
    p["d"] = {"k": p["x"], "l": [1, 2], "n": {"deep": False}}
    p["copy"] = p["x"]
    p = a(p)
    return p


def mutations_nested(p):
    p["m"]["k"] = 1
    p["m"]["list"][0] += 5
    p["m"]["list"][-1] = p["x"]
    p["m"]["list"][p["i"]] = 7
    p["m"]["deep"]["z"] += p["x"]
    p["m"]["new"] = {"a": [p["m"]["k"]]}
    p["m"]["new"]["a"] += [2]
    p = a(p)
    return p


def augassign_ops(p):
    p["x"] += 1
    p["x"] -= 3
    p["x"] *= 2
    p["f"] /= 4
    p["q"] //= 3
    p["r"] %= 5
    p["pw"] **= 2
    p["s"] += "!"
    p["l"] += [p["x"]]
    return p


def arithmetic(p):
    p["add"] = p["a"] + p["b"] * 2 - p["c"]
    p["div"] = p["a"] / p["b"]
    p["floordiv"] = p["a"] // p["b"]
    p["mod"] = p["a"] % p["b"]
    p["pow"] = p["a"] ** 2
    p["neg"] = -p["a"]
    p["pos"] = +p["b"]
    p["paren"] = (p["a"] + p["b"]) * (p["a"] - p["c"])
    p["mixed"] = p["a"] * 0.1 + p["c"]
    return p


def comparisons(p):
    p["lt"] = p["a"] < p["b"]
    p["ge"] = p["a"] >= p["b"]
    p["chain"] = 0 <= p["a"] < 10
    p["eq"] = p["a"] == p["b"]
    p["ne"] = p["a"] != p["b"]
    p["in_list"] = p["a"] in [1, 2, 3]
    p["in_str"] = "x" in p["s"]
    p["in_dict"] = "k" in p["d"]
    p["not_in"] = p["a"] not in p["l"]
    p["is_none"] = p["n"] is None
    p["is_not_none"] = p["n"] is not None
    p["list_lt"] = p["l"] < [1, 3]
    return p


def bool_ops(p):
    p["or"] = p["a"] or p["b"]
    p["and"] = p["a"] and p["b"]
    p["not"] = not p["a"]
    p["mix"] = p["a"] and not p["b"] or "dflt"
    p["triple"] = p["a"] or p["b"] or p["c"]
    if p["a"] or p["b"]:
        p = a(p)
    if not (p["a"] and p["c"]):
        p = b(p)
    return p


def conversions(p):
    p["len_s"] = len(p["s"])
    p["len_l"] = len(p["l"])
    p["len_d"] = len(p["d"])
    p["str_i"] = str(p["i"])
    p["str_f"] = str(p["f"])
    p["str_b"] = str(p["b"])
    p["str_n"] = str(p["n"])
    p["str_l"] = str(p["l"])
    p["str_d"] = str(p["d"])
    p["str_s"] = str(p["s"])
    p["int_s"] = int(p["si"])
    p["int_f"] = int(p["f"])
    p["int_b"] = int(p["b"])
    p["float_s"] = float(p["sf"])
    p["float_i"] = float(p["i"])
    p["bool_l"] = bool(p["l"])
    p["bool_s"] = bool(p["s"])
    p["bool_0"] = bool(p["i"] - p["i"])
    return p


def ifexp_and_truthiness(p):
    p["sign"] = "pos" if p["x"] > 0 else ("zero" if p["x"] == 0 else "neg")
    if p["l"]:
        p = a(p)
    if not p["d"]:
        p = b(p)
    if p["s"]:
        p = c(p)
    if p["none"] is None:
        p = d(p)
    return p


def subscripts(p):
    p["last"] = p["l"][-1]
    p["first"] = p["l"][0]
    p["by_index"] = p["l"][p["i"]]
    p["char"] = p["s"][1]
    p["nested"] = p["d"]["inner"]["v"]
    p["dyn_key"] = p["d"][p["key"]]
    return p


def non_native_calls(p):
    p["upper"] = p["s"].upper()
    p["got"] = p.get("missing", 0) + 1
    p["biggest"] = max(p["l"])
    p["sorted"] = sorted(p["l"])
    p["rounded"] = round(p["f"], 1)
    p["joined"] = ",".join([str(v) for v in p["l"]])
    return p


def method_on_call_result(p):
    p["padded"] = str(p["v"]).zfill(3)
    p["words"] = len(p["s"].split())
    return p


def string_formatting(p):
    p["pct"] = "%03d" % p["v"]
    p["lit"] = "%d%%" % p["v"]
    p["pair"] = "%s-%s" % (p["s"], p["v"])
    p["float"] = "%.2f" % p["f"]
    return p


def non_native_condition(p):
    if p["s"].upper() == "YES":
        p = a(p)
    elif p["s"].startswith("n"):
        p = b(p)
    else:
        p = c(p)
    return p


def mixed_batch(p):
    p["n1"] = p["x"] + 1
    p["tag"] = f"x={p['x']}"
    p["n2"] = p["n1"] * 2
    p["squares"] = [v * v for v in p["l"]]
    p["n3"] = len(p["squares"])
    p = a(p)
    return p


def non_native_loop(p):
    while p["s"].count("a") < p["want"]:
        p["s"] += "a"
        p = inc(p)
    return p


def native_errors(p):
    p = a(p)
    if p["case"] == "lt":
        p["y"] = p["u"] < p["v"]
    elif p["case"] == "index":
        p["y"] = p["l"][p["i"]]
    elif p["case"] == "key":
        p["y"] = p["d"]["nope"]
    elif p["case"] == "int":
        p["y"] = int(p["u"])
    elif p["case"] == "float":
        p["y"] = float(p["u"])
    elif p["case"] == "div":
        p["y"] = p["u"] / p["v"]
    elif p["case"] == "floordiv":
        p["y"] = p["u"] // p["v"]
    elif p["case"] == "mod":
        p["y"] = p["u"] % p["v"]
    elif p["case"] == "add":
        p["y"] = p["u"] + p["v"]
    elif p["case"] == "len":
        p["y"] = len(p["u"])
    elif p["case"] == "augkey":
        p["nope"] += 1
    p = b(p)
    return p


def condition_error(p):
    if p["u"] > p["v"]:
        p = a(p)
    else:
        p = b(p)
    return p


def big_numbers(p):
    p["sq"] = p["a"] * p["a"]
    p["pow"] = 2 ** p["e"]
    p["sum"] = p["a"] + p["a"]
    p["f"] = p["a"] * 1.0
    return p


def bool_arithmetic(p):
    p["t1"] = p["t"] + 1
    p["eq1"] = p["t"] == 1
    p["mul"] = p["s"] * p["k"]
    p["lmul"] = p["l"] * p["k"]
    return p


INPUTS = {
    "mutations_basic": [{"x": 3}, {"x": "str"}],
    "mutations_nested": [{"x": 2, "i": 1, "m": {"list": [1, 2, 3], "deep": {"z": 10}}},
                         {"x": 2, "i": -2, "m": {"list": [1.5, 2], "deep": {"z": 0.5}}}],
    "augassign_ops": [{"x": 4, "f": 3, "q": 10, "r": 12, "pw": 3, "s": "hi", "l": []},
                      {"x": -7, "f": 1.0, "q": -7, "r": -7, "pw": 1.5, "s": "", "l": [0]},
                      {"x": 4, "f": 3, "q": 10.5, "r": 7.5, "pw": -2, "s": "x", "l": ["a"]}],
    "arithmetic": [{"a": 7, "b": 2, "c": 1}, {"a": -7, "b": 2, "c": 0}, {"a": 7.5, "b": -2, "c": 1},
                   {"a": 1, "b": 3, "c": 0.1}, {"a": 3, "b": 0.1, "c": 0.2}],
    "comparisons": [{"a": 1, "b": 2, "s": "xyz", "d": {"k": 1}, "l": [1, 2], "n": None},
                    {"a": 10, "b": 10.0, "s": "abc", "d": {}, "l": [10], "n": 0},
                    {"a": "b", "b": "ab", "s": "", "d": {"kk": 1}, "l": [1, 3], "n": False}],
    "bool_ops": [{"a": 0, "b": "", "c": None}, {"a": [], "b": 3, "c": 1}, {"a": "x", "b": 0, "c": [1]},
                 {"a": 2, "b": 5, "c": 0}],
    "conversions": [
        {"s": "héllo", "l": [None, True, 1.5, "q"], "d": {"a": "it's", "b": [1]}, "i": 42, "f": 2.5,
         "b": True, "n": None, "si": " 1_000 ", "sf": " 1.5 "},
        {"s": "", "l": [], "d": {}, "i": -3, "f": 1e16, "b": False, "n": None, "si": "-7", "sf": "1e-5"},
        {"s": "a\"b'c", "l": [{"k": "v"}], "d": {"x": {"y": None}}, "i": 0, "f": -0.0, "b": True, "n": None,
         "si": "0", "sf": "3"},
        {"s": "x", "l": [0.1], "d": {"f": 1e-7}, "i": 7, "f": 0.30000000000000004, "b": False, "n": None,
         "si": "+5", "sf": "-0"},
    ],
    "ifexp_and_truthiness": [{"x": 5, "l": [0], "d": {}, "s": "s", "none": None},
                             {"x": 0, "l": [], "d": {"k": 0}, "s": "", "none": 0},
                             {"x": -2, "l": [], "d": {}, "s": "", "none": None}],
    "subscripts": [{"l": [1, 2, 3], "i": 1, "s": "abc", "d": {"inner": {"v": 5}, "k": "kk"}, "key": "k"},
                   {"l": ["x"], "i": -1, "s": "héllo", "d": {"inner": {"v": None}, "7": 1}, "key": "7"}],
    "non_native_calls": [{"s": "abc", "l": [3, 1, 2], "f": 2.46}],
    "method_on_call_result": [{"v": 7, "s": "a b  c"}, {"v": -12, "s": ""}],
    "string_formatting": [{"v": 7, "s": "a", "f": 2.345}, {"v": -12, "s": "", "f": 1}],
    "non_native_condition": [{"s": "yes"}, {"s": "no"}, {"s": "maybe"}],
    "mixed_batch": [{"x": 2, "l": [1, 2, 3]}, {"x": -1, "l": []}],
    "non_native_loop": [{"s": "", "want": 3}, {"s": "banana", "want": 2}],
    "native_errors": [
        {"case": "lt", "u": "a", "v": 1}, {"case": "lt", "u": None, "v": 1}, {"case": "lt", "u": [1], "v": "x"},
        {"case": "index", "l": [1], "i": 5}, {"case": "index", "l": [1], "i": -2},
        {"case": "key", "d": {}}, {"case": "int", "u": "abc"}, {"case": "int", "u": 2.5},
        {"case": "int", "u": "2.5"}, {"case": "float", "u": "x"}, {"case": "float", "u": "  7 "},
        {"case": "div", "u": 1, "v": 0}, {"case": "div", "u": 1.0, "v": 0}, {"case": "div", "u": 7, "v": 2},
        {"case": "floordiv", "u": 7, "v": 0}, {"case": "floordiv", "u": 7.0, "v": 0},
        {"case": "mod", "u": 7, "v": 0}, {"case": "mod", "u": 7.0, "v": 0}, {"case": "mod", "u": -7, "v": 3},
        {"case": "add", "u": "s", "v": 1}, {"case": "add", "u": 1, "v": "s"}, {"case": "add", "u": [1], "v": {}},
        {"case": "add", "u": None, "v": 1},
        {"case": "len", "u": 5}, {"case": "len", "u": None}, {"case": "augkey"}, {"case": "none"},
    ],
    "condition_error": [{"u": 2, "v": 1}, {"u": "a", "v": 1}, {"u": {}, "v": {}}],
    "big_numbers": [{"a": 3, "e": 10}, {"a": 2 ** 31, "e": 62}, {"a": 2 ** 40, "e": 63}, {"a": 2 ** 62, "e": 70}],
    "bool_arithmetic": [{"t": True, "s": "ab", "l": [1], "k": 3}, {"t": False, "s": "x", "l": [], "k": 0}],
}
