"""A seeded generator of random flows for the differential tests.

`generate(seed)` gives one flow: random nestings (depth ≤ MAX_DEPTH) of if/elif/else,
while (bounded counters, break/continue, `while True`), try/except[/finally] (with the
failing `risky*` handlers of corpus/handlers.py, typed/tuple/dotted/base-class/bare
clauses, sometimes `raise`), fan-out (list literal, comprehension, `asyncio.gather` in
async flows), early return, native and non-native mutations and conditions, over the
corpus handlers — plus a few inputs that make its branches and failures differ. The same
seed always gives the same source and inputs (only `random.Random(seed)` is used).

Each failing actor has at most one call site in a flow: the compiler routes an actor's
errors by the policies of the `try` blocks it is called in, merged per actor, so an actor
called in two `try` blocks cannot tell them apart (the corpus's `same_actor_two_tries`
shows that on its own; the compiler refuses it); generated flows test everything else,
and their mesh copies give every try context its own actor names (cases.py). Fan-out
workers never fail (a failed slice is not caught by an enclosing try in the mesh).

Loops are bounded so that no run reaches the routers' loop guard (100 iterations): every
loop runs at most MAX_LOOP times per entry, so even three nested loops stay under it.
"""

import dataclasses
import random

MAX_DEPTH = 3
MAX_LOOP = 3

CALLS = ["a", "b", "c", "d", "e", "inc", "bump_x"]
RISKY = ["risky", "risky_b", "risky_c", "risky_d", "risky_e", "risky_f", "risky_g"]
FAIL_KINDS = ["rate", "timeout", "quota", "value", "key", "type"]
CLAUSES = ["RateLimitError", "ValueError", "(KeyError, TypeError)", "handlers.UpstreamTimeout",
           "RetryableError", "(QuotaError, RateLimitError)", "LookupError", "Exception"]


@dataclasses.dataclass(frozen=True)
class GeneratedFlow:
    """One generated flow: its name, its function source and its inputs."""
    seed: int
    name: str
    source: str
    inputs: list
    is_async: bool


class _Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.ids = 0
        self.is_async = self.rng.random() < 0.3
        self.kinds = set()
        self.risky = list(RISKY)
        self.rng.shuffle(self.risky)
        self.used_risky = []

    def take_risky(self):
        """A failing actor not called elsewhere in the flow, or None when all are used."""
        if not self.risky:
            return None
        name = self.risky.pop()
        self.used_risky.append(name)
        return name

    def uid(self):
        self.ids += 1
        return self.ids

    # -- expressions -------------------------------------------------------------------
    def cond(self):
        r = self.rng
        m = r.randint(2, 3)
        options = [
            f'p["x"] % {m} == {r.randrange(m)}',
            f'p["v"] > {r.randint(0, 20)}',
            f'len(p["log"]) > {r.randint(0, 3)}',
            '"k" in p["opts"]',
            'p["flag"]',
            'not p["flag"]',
            f'p["x"] > {r.randint(0, 9)} and p["v"] < {r.randint(0, 20)}',
            f'p["x"] < {r.randint(0, 9)} or p["flag"]',
            f'p["x"] + p["v"] >= {r.randint(5, 25)}',
            'p["items"] and p["items"][0] > p["x"]',
            # outside the native subset: a Python router evaluates these
            f'p.get("v", 0) > {r.randint(0, 20)}',
            f'abs(p["x"] - 5) > {r.randint(0, 4)}',
            'p["s"].startswith("a")',
        ]
        return r.choice(options)

    def mutation(self):
        r, i = self.rng, self.uid()
        options = [
            f'p["v"] += {r.randint(1, 5)}',
            f'p["v"] = p["v"] * {r.randint(2, 3)} % 97',
            f'p["log"] += ["m{i}"]',
            'p["log"] += [p["x"]]',
            'p["v"] = p["x"] + len(p["log"])',
            f'p["x"] = (p["x"] + {r.randint(1, 3)}) % 10',
            f'p["m{i}"] = {{"v": p["v"], "ok": p["v"] > {r.randint(0, 20)}}}',
            # outside the native subset
            'p["log"] += ["%03d" % p["v"]]',
            f'p["s"] = p["s"].upper() + "{i}"',
        ]
        return r.choice(options)

    # -- statements --------------------------------------------------------------------
    def call(self, name):
        return f"p = await {name}(p)" if self.is_async else f"p = {name}(p)"

    def fanout(self):
        i, r = self.uid(), self.rng
        self.kinds.add("fanout")
        if r.random() < 0.5:
            items = [r.choice(['square(p["x"])', 'add_ten(p["v"])', 'upper(p["s"])', "add_ten(1)"])
                     for _ in range(r.randint(1, 3))]
            if self.is_async:
                return [f'p["f{i}"] = await asyncio.gather({", ".join(items)})']
            return [f'p["f{i}"] = [{", ".join(items)}]']
        worker = r.choice(["square", "add_ten"])
        arg = r.choice(["x", "x + p[\"x\"]", "x * 2"])
        if self.is_async and r.random() < 0.5:
            return [f'p["f{i}"] = await asyncio.gather(*[{worker}({arg}) for x in p["items"]])']
        return [f'p["f{i}"] = [{worker}({arg}) for x in p["items"]]']

    def simple(self, in_loop, in_try):
        r = self.rng
        roll = r.random()
        if roll < 0.35:
            return [self.call(r.choice(CALLS))]
        if roll < 0.45:
            name = self.take_risky()
            return [self.call(name or r.choice(CALLS))]
        if roll < 0.75:
            return [self.mutation()]
        if roll < 0.85:
            return self.fanout()
        if roll < 0.92 and in_loop:
            self.kinds.add("break/continue")
            return [f"if {self.cond()}:", "    " + r.choice(["break", "continue"])]
        self.kinds.add("return")
        return [f"if {self.cond()}:", "    " + self.call(r.choice(CALLS)), "    return p"]

    def statements(self, depth, in_loop=False, in_try=False, size=None):
        """A list of statements, each a list of lines."""
        r = self.rng
        # fewer and simpler statements deeper down: a flow stays readable in a failure
        n = size or r.randint(1, max(1, 3 - depth))
        out = []
        for _ in range(n):
            if depth < MAX_DEPTH and r.random() < 0.5 - 0.12 * depth:
                out.append(r.choice([self.if_stmt, self.while_stmt, self.try_stmt])(depth + 1, in_loop, in_try))
            else:
                out.append(self.simple(in_loop, in_try))
        return out

    def block(self, depth, in_loop=False, in_try=False, size=None):
        return [line for stmt in self.statements(depth, in_loop, in_try, size) for line in stmt]

    @staticmethod
    def indent(lines):
        return ["    " + line for line in lines]

    def if_stmt(self, depth, in_loop, in_try):
        r = self.rng
        self.kinds.add("if")
        out = [f"if {self.cond()}:"] + self.indent(self.block(depth, in_loop, in_try))
        for _ in range(r.choice([0, 0, 1, 2])):
            self.kinds.add("elif")
            out += [f"elif {self.cond()}:"] + self.indent(self.block(depth, in_loop, in_try))
        if r.random() < 0.5:
            out += ["else:"] + self.indent(self.block(depth, in_loop, in_try))
        return out

    def while_stmt(self, depth, in_loop, in_try):
        r, i = self.rng, self.uid()
        key = f'p["w{i}"]'
        limit = r.randint(0, MAX_LOOP)
        body = self.block(depth, True, in_try)
        if r.random() < 0.3:
            self.kinds.add("while True")
            return [f"{key} = 0", "while True:", f"    {key} += 1", f"    if {key} > {limit}:",
                    "        break"] + self.indent(body)
        self.kinds.add("while")
        return [f"{key} = 0", f"while {key} < {limit}:", f"    {key} += 1"] + self.indent(body)

    def try_stmt(self, depth, in_loop, in_try):
        r = self.rng
        self.kinds.add("try")
        stmts = self.statements(depth, in_loop, True)
        # a failing handler somewhere in the body, so that the except clauses can run
        name = self.take_risky()
        if name:
            stmts.insert(r.randint(0, len(stmts)), [self.call(name)])
        body = [line for stmt in stmts for line in stmt]
        out = ["try:"] + self.indent(body)
        clauses = r.sample(CLAUSES, r.randint(1, 2))
        if r.random() < 0.2:
            clauses.append(None)  # bare except, last
        for clause in clauses:
            handler = self.block(depth, in_loop, in_try, size=r.randint(1, 2))
            roll = r.random()
            if roll < 0.1:
                self.kinds.add("raise")
                handler.append(f'raise ValueError("raised in handler {self.uid()}")')
            elif roll < 0.15 and clause is not None:
                self.kinds.add("re-raise")
                handler.append("raise")
            out += ["except:" if clause is None else f"except {clause}:"] + self.indent(handler)
        if r.random() < 0.3:
            self.kinds.add("finally")
            # only a call or a mutation: break/continue/return in a finally would swallow
            # the error in flight, which is not what a finally is written for here
            last = self.call(r.choice(CALLS)) if r.random() < 0.5 else self.mutation()
            out += ["finally:", "    " + last]
        return out

    # -- inputs ------------------------------------------------------------------------
    def payload(self):
        r = self.rng
        fail = {}
        for name in sorted(self.used_risky):
            roll = r.random()
            if roll < 0.3:
                fail[name] = r.choice(FAIL_KINDS)
            elif roll < 0.6:
                mod = r.randint(2, 3)
                fail[name] = {"kind": r.choice(FAIL_KINDS), "mod": mod, "rem": r.randrange(mod)}
        return {
            "x": r.randint(0, 9), "v": r.randint(0, 20), "log": [],
            "items": [r.randint(0, 9) for _ in range(r.randint(0, 3))],
            "flag": r.random() < 0.5, "s": r.choice(["abc", "xyz", ""]),
            "opts": r.choice([{}, {"k": 1}]), "fail": fail,
        }


def generate(seed):
    """The flow of `seed` (deterministic)."""
    g = _Gen(seed)
    name = f"gen_{seed}"
    body = g.block(0, size=g.rng.randint(2, 4))
    head = f"async def {name}(p):" if g.is_async else f"def {name}(p):"
    source = "\n".join([head] + _Gen.indent(body + ["return p"])) + "\n"
    inputs = [g.payload() for _ in range(3)]
    return GeneratedFlow(seed, name, source, inputs, g.is_async)


def module_source(flows):
    """One module holding the generated flows."""
    head = ('"""Generated by tests/flows/generator.py: do not edit."""\n\nimport asyncio\n\n'
            "import handlers\nfrom handlers import QuotaError, RateLimitError, RetryableError\n")
    return head + "".join("\n\n" + f.source for f in flows)


if __name__ == "__main__":
    import sys
    for arg in sys.argv[1:] or ["0"]:
        flow = generate(int(arg))
        print(flow.source)
        for payload in flow.inputs:
            print("#", payload)
