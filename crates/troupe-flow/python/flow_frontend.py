#!/usr/bin/env python3
"""Troupe flow compiler front end (docs/flow-ir.md, version 1).

Usage: python3 flow_frontend.py FILE [FUNC] [--rules-json JSON]
       python3 - FILE [FUNC] [--rules-json JSON]      (this script on stdin)

Parses FILE with `ast` (never imports it), classifies calls, inlines sub-flows and local
defs, extracts configuration, rejects what cannot compile and prints one JSON document.
Exit 0 even when `errors` is non-empty; exit 2 only for usage errors. Standard library only
(Python 3.10+): it runs with the user's python3.
"""

import ast
import builtins
import copy
import io
import json
import math
import re
import sys
import tokenize
from pathlib import Path

STATE_NAMES = ("p", "payload", "state")
KINDS = ("actor", "flow", "unfold", "inline", "config")
WRAPPERS = ("actor", "flow", "unfold", "inline")
NATIVE_CALLS = ("len", "str", "int", "float", "bool")
SIDE_EFFECTS = ("print", "input", "open", "exec", "eval", "breakpoint", "exit", "quit")
BUILTINS = frozenset(dir(builtins))
COMMENT_RE = re.compile(r"#\s*asya:\s*([A-Za-z_-]+)")
GO_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
DURATION_FIELDS = ("actorTimeout", "initialDelay", "maxInterval", "maxDuration")

# The shipped rules (platform.md §4.1), in the rules-file form; user rules are looked up first.
# `contextlib.suppress` is `inline`: a `with contextlib.suppress(E):` block whose body holds
# only mutations/inline code compiles to ONE `code` statement (the whole `with` block, run in
# a Python router); around actor calls or control flow it is rejected, because the envelope
# would fail at the actor before the router could suppress anything.
SHIPPED_RULES = [
    {"match": "asyncio.timeout", "treat-as": "config",
     "where": [{"param": "delay", "assign-to": "spec.resiliency.actorTimeout"}]},
    {"match": "tenacity.retry", "treat-as": "config", "where": [
        {"param": "stop", "flatten-on": "|", "where": [
            {"match": "stop_after_attempt", "where": [
                {"param": "max_attempt_number",
                 "assign-to": "spec.resiliency.policies.default.maxAttempts"}]},
            {"match": "stop_after_delay", "where": [
                {"param": "max_delay",
                 "assign-to": "spec.resiliency.policies.default.maxDuration"}]}]},
        {"param": "wait", "flatten-on": "+", "where": [
            {"match": "wait_exponential", "where": [
                {"param": "min", "assign-to": "spec.resiliency.policies.default.initialDelay"},
                {"param": "max", "assign-to": "spec.resiliency.policies.default.maxInterval"}]},
            {"match": "wait_fixed", "where": [
                {"param": "wait",
                 "assign-to": "spec.resiliency.policies.default.initialDelay"}]}]}]},
    {"match": "timeout_decorator.timeout", "treat-as": "config",
     "where": [{"param": "seconds", "assign-to": "spec.resiliency.actorTimeout"}]},
    {"match": "stamina.retry", "treat-as": "config", "where": [
        {"param": "attempts", "assign-to": "spec.resiliency.policies.default.maxAttempts"},
        {"param": "timeout", "assign-to": "spec.resiliency.policies.default.maxDuration"}]},
    {"match": "contextlib.suppress", "treat-as": "inline"},
]

# Positional parameter names of the functions the shipped rules read (we cannot import them).
KNOWN_PARAMS = {
    "asyncio.timeout": ["delay"],
    "tenacity.stop_after_attempt": ["max_attempt_number"],
    "tenacity.stop_after_delay": ["max_delay"],
    "tenacity.wait_exponential": ["multiplier", "max", "exp_base", "min"],
    "tenacity.wait_fixed": ["wait"],
    "timeout_decorator.timeout": ["seconds"],
}

CMP_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
BIN_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%", ast.Pow: "**"}
ALL_BIN_OPS = {**BIN_OPS, ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.LShift: "<<",
               ast.RShift: ">>", ast.MatMult: "@"}


class CompileError(Exception):
    """A rejected construct: node (for line:col) and the message."""

    def __init__(self, node, message):
        super().__init__(message)
        self.node = node
        self.message = message


class NotNative(Exception):
    """Why an expression is outside the native subset."""


def go_duration(seconds):
    """Seconds (int/float) as a compact Go duration string: 90 -> "1m30s", 0.5 -> "500ms"."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else "",
             f"{ms}ms" if ms else ""]
    return sign + "".join(parts)


def loc(node):
    """1-based (line, col) of a node."""
    return getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1


def dotted(node):
    """`a.b.c` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def actor_name(function):
    """Actor name (a DNS label): `write_draft` -> `write-draft`, `obj.run` -> `obj-run`."""
    return function.replace("_", "-").replace(".", "-").lower()


def strip_await(node):
    return node.value if isinstance(node, ast.Await) else node


class Renamer(ast.NodeTransformer):
    """Renames the flow parameter to `p` (on a copy) for the `code` strings."""

    def __init__(self, param):
        self.param = param

    def visit_Name(self, node):
        if node.id == self.param:
            return ast.copy_location(ast.Name(id="p", ctx=node.ctx), node)
        return node


class Ctx:
    """Where a statement is compiled: the state's name, loop/except nesting, inlining stack."""

    def __init__(self, param, stack, loop=0, in_except=0):
        self.param = param
        self.stack = stack
        self.loop = loop
        self.in_except = in_except

    def sub(self, **kw):
        c = Ctx(self.param, self.stack, self.loop, self.in_except)
        for k, v in kw.items():
            setattr(c, k, v)
        return c


class Callee:
    """A classified call target."""

    def __init__(self, kind, name, local, handler):
        self.kind = kind        # one of KINDS
        self.name = name        # as written (`write_draft`, `obj.method`)
        self.local = local      # the module-level FunctionDef, if any
        self.handler = handler  # `module.func` or None


class Module:
    """One parsed source file and everything the flows in it share."""

    def __init__(self, path, source, rules):
        self.file = path.name
        self.module = path.stem
        self.source = source
        self.errors = []
        self.actors = {}
        self.user_rules = rules
        self.tree = ast.parse(source, filename=str(path))
        self.comments = self._comments()
        self.imports = {}       # local name -> qualified name
        self.star = []          # modules imported with `from m import *`
        self.import_src = []    # module-level import statements, re-emitted
        self.defs = {}          # module-level functions
        self.classes = {}       # module-level classes
        self.globals = {}       # module-level assigned names -> value node
        for node in self.tree.body:
            self._scan(node)

    # ---- module scan -------------------------------------------------------------------
    def _comments(self):
        out = {}
        try:
            for tok in tokenize.generate_tokens(io.StringIO(self.source).readline):
                if tok.type == tokenize.COMMENT:
                    m = COMMENT_RE.search(tok.string)
                    if m:
                        out[tok.start[0]] = (m.group(1), tok.start[1] + 1)
        except (tokenize.TokenError, SyntaxError):
            pass
        return out

    def _scan(self, node):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    self.imports[a.asname] = a.name
                else:
                    root = a.name.split(".")[0]
                    self.imports[root] = root
            if not all(a.name.split(".")[0] == "asya_lab" for a in node.names):
                self.import_src.append(ast.unparse(node))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level > 1:
                base = None  # above the flow's directory: the handler path is unknown
            for a in node.names:
                if base is not None and a.name != "*":
                    self.imports[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
                elif a.name != "*":
                    self.imports[a.asname or a.name] = None
                elif base:
                    self.star.append(base)
            if base != "__future__" and not (node.module or "").startswith("asya_lab"):
                self.import_src.append(ast.unparse(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.defs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            self.classes[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        self.globals[n.id] = node.value
        elif isinstance(node, (ast.If, ast.Try)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._scan(child)

    def error(self, node, message):
        line, col = loc(node)
        self.errors.append({"file": self.file, "line": line, "col": col, "message": message})

    # ---- names and classification --------------------------------------------------------
    def qualify(self, name):
        """Resolve a dotted name through the module's imports: `aio.timeout` -> `asyncio.timeout`."""
        root, _, rest = name.partition(".")
        if root in self.imports and self.imports[root]:
            q = self.imports[root]
            return f"{q}.{rest}" if rest else q
        if root in self.defs or root in self.classes:
            return f"{self.module}.{name}"
        return name

    def rule_for(self, qual, name):
        names = {qual, name} | {f"{m}.{name}" for m in self.star}
        for rules in (self.user_rules, SHIPPED_RULES):
            for r in rules:
                if r.get("match") in names:
                    return r
        return None

    def def_kind(self, fn):
        """Kind from the definition: `@actor|@flow|@inline|@unfold` or `# asya: kind` on the def."""
        for d in fn.decorator_list:
            n = dotted(d.func if isinstance(d, ast.Call) else d)
            if n and n.split(".")[-1] in WRAPPERS:
                return n.split(".")[-1]
        c = self.comments.get(fn.lineno)
        if c and c[0] in KINDS:
            return c[0]
        return None

    def comment_kind(self, node):
        """`# asya: <kind>` on any line of `node` (a call may span lines)."""
        end = getattr(node, "end_lineno", None) or node.lineno
        c = next((self.comments[n] for n in range(node.lineno, end + 1) if n in self.comments),
                 None)
        if c is None:
            return None
        if c[0] not in KINDS:
            raise CompileError(node, f"unknown `# asya: {c[0]}`: write one of "
                               + ", ".join(f"`# asya: {k}`" for k in KINDS))
        return c[0]

    def callee(self, call, ctx, in_expr=False):
        """Classify `call` (treat-as precedence of platform.md §4.1); None = not a named function
        (a method on a value such as `p["s"].upper()`)."""
        func, wrapper = call.func, None
        if (isinstance(func, ast.Call) and isinstance(func.func, ast.Name)
                and func.func.id in WRAPPERS and len(func.args) == 1 and not func.keywords):
            wrapper, func = func.func.id, func.args[0]
        instance_of = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
            inner = func.value
            cls = dotted(inner.func)
            # `Cls().method(p)` is an actor on an instance; `str(x).zfill(3)` is a method on
            # a value: only a module class or a capitalized non-builtin name is a class.
            if cls is None or not (cls in self.classes or (
                    cls.split(".")[-1][:1].isupper() and cls.split(".")[0] not in BUILTINS
                    and cls.split(".")[0] != ctx.param)):
                return None
            if inner.args or inner.keywords:
                raise CompileError(inner, f"class instantiation with arguments `{ast.unparse(inner)}` "
                                   "cannot be compiled: the actor's runtime builds the object; "
                                   f"give {cls} defaults and write `{cls}().{func.attr}(p)`, or "
                                   "configure it through the actor's env")
            name = f"{cls}.{func.attr}"
            instance_of = cls
        else:
            name = dotted(func)
            if name is None:
                return None
        root = name.split(".")[0]
        if root == ctx.param:
            return None
        if name in self.classes:
            if call.args or call.keywords:
                raise CompileError(call, f"class instantiation with arguments `{ast.unparse(call)}` "
                                   "cannot be compiled: build the object inside an actor")
            return Callee("inline", name, None, None)
        local = self.defs.get(name)
        qual = self.qualify(name)
        kind = self.comment_kind(call)
        if kind is None and local is not None:
            kind = self.def_kind(local)
        if kind is None and wrapper:
            kind = wrapper
        if kind is None:
            rule = self.rule_for(qual, name)
            if rule is not None:
                kind = rule.get("treat-as", "config")
        if kind is None:
            if local is not None:
                # A local helper called tool-style (`p["k"] = clean(p["t"])`) has no state
                # to unfold into: it runs inside a router instead.
                state_only = (len(call.args) == 1 and not call.keywords
                              and isinstance(call.args[0], ast.Name)
                              and call.args[0].id == ctx.param)
                kind = "unfold" if state_only and not in_expr else "inline"
            elif root in self.imports and instance_of is None:
                kind = "inline"
            elif root in BUILTINS and root not in self.globals and root not in self.classes:
                kind = "inline"
            else:
                kind = "actor"
        return Callee(kind, name, local, self.handler(name, local, instance_of))

    def handler(self, name, local, instance_of):
        """`module.func` of an actor when this file tells it, else None (the mesh declares it)."""
        root, _, rest = name.partition(".")
        if local is not None:
            return f"{self.module}.{name}"
        if instance_of is not None:
            return self._class_handler(instance_of, rest)
        if root in self.globals:  # `obj = Cls()` at module level, called as `obj.method(p)`
            v = self.globals[root]
            if rest and isinstance(v, ast.Call) and dotted(v.func):
                return self._class_handler(dotted(v.func), rest)
            return None
        if root in self.imports and self.imports[root]:
            return self.qualify(name) if rest or self.imports[root] != root else None
        return None

    def _class_handler(self, cls, method):
        root = cls.split(".")[0]
        if cls in self.classes:
            return f"{self.module}.{cls}.{method}"
        if root in self.imports and self.imports[root]:
            return f"{self.qualify(cls)}.{method}"
        return None

    def add_actor(self, callee, node):
        name = actor_name(callee.name)
        known = self.actors.get(name)
        if known is not None and known["function"] != callee.name:
            raise CompileError(node, f"`{callee.name}` and `{known['function']}` both become actor "
                               f"`{name}`: rename one of them")
        if known is None:
            config = {}
            if callee.local is not None:
                for d in callee.local.decorator_list:
                    self.decorator_config(d, config)
            self.actors[name] = {"function": callee.name, "handler": callee.handler,
                                 "config": config}
        return name

    # ---- rules: extraction into Config ---------------------------------------------------
    def decorator_config(self, dec, config):
        call = dec if isinstance(dec, ast.Call) else None
        name = dotted(call.func if call else dec)
        if name is None:
            return
        rule = self.rule_for(self.qualify(name), name)
        if rule is None or rule.get("treat-as", "config") != "config":
            return
        if call is None:
            return
        self.extract(rule, call, config)

    def extract(self, rule, call, config):
        """Apply a rule's `extract: {param: path}` or `where:` tree to `call`, into `config`."""
        bound = self.bind(call)
        for param, path in (rule.get("extract") or {}).items():
            if param in bound:
                self.assign(config, path, bound[param], call)
        for node in rule.get("where") or []:
            self.walk(node, bound, None, config, call)

    def bind(self, call):
        bound = {kw.arg: kw.value for kw in call.keywords if kw.arg}
        name = dotted(call.func) or ""
        params = KNOWN_PARAMS.get(self.qualify(name))
        if params is None:  # e.g. after `from tenacity import *`
            params = next((v for k, v in KNOWN_PARAMS.items() if k.endswith("." + name)), [])
        for i, arg in enumerate(call.args):
            bound[str(i)] = arg
            bound[i] = arg
            if i < len(params):
                bound.setdefault(params[i], arg)
        return bound

    def walk(self, node, bound, call_name, config, at):
        param = node.get("param")
        if param is not None:
            if isinstance(param, dict):
                value = bound.get(param.get("kwarg")) if param.get("kwarg") else None
                if value is None and param.get("arg") is not None:
                    value = bound.get(param["arg"])
            else:
                value = bound.get(param)
            if value is None:
                return
            if node.get("assign-to") and not node.get("where"):
                self.assign(config, node["assign-to"], value, at)
                return
            for call in self.flatten(value):
                child_name = dotted(call.func)
                for child in node.get("where") or []:
                    self.walk(child, self.bind(call), child_name, config, call)
            return
        match = node.get("match")
        if match and call_name is not None:
            q = self.qualify(call_name)
            if match not in (call_name, q) and not q.endswith("." + match):
                return
        for child in node.get("where") or []:
            self.walk(child, bound, call_name, config, at)

    @staticmethod
    def flatten(value):
        out = []

        def collect(n):
            if isinstance(n, ast.Call):
                out.append(n)
            elif isinstance(n, ast.BinOp):
                collect(n.left)
                collect(n.right)
        collect(value)
        return out

    def assign(self, config, path, node, at):
        value = self.constant(node)
        if value is None:
            raise CompileError(node, f"cannot read a value from `{ast.unparse(node)}` for {path}: "
                               "write a literal (number, string, name or tuple)")
        parts = path.split(".")
        if parts[:1] == ["spec"]:
            parts = parts[1:]
        if parts[:1] == ["resiliency"]:
            parts = parts[1:]
        if parts == ["timeout", "actor"]:
            parts = ["actorTimeout"]
        if not parts or (parts[0] != "actorTimeout" and not (parts[0] == "policies"
                                                               and len(parts) == 3)):
            raise CompileError(at, f"rule target `{path}` is not supported: use "
                               "spec.resiliency.actorTimeout or "
                               "spec.resiliency.policies.<name>.<field>")
        field = parts[-1]
        if field in DURATION_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise CompileError(node, f"{path} needs a duration in seconds: write a number")
            if isinstance(value, str):
                if not GO_DURATION_RE.match(value):
                    raise CompileError(node, f"`{value}` is not a duration for {path}: write "
                                       "seconds as a number (30) or a Go duration (\"30s\")")
            elif value < 0:
                raise CompileError(node, f"{path} needs a duration of at least 0")
            else:
                value = go_duration(value)
        elif field == "maxAttempts" and (isinstance(value, bool) or not isinstance(value, int)
                                         or value < 1):
            raise CompileError(node, f"{path} needs an integer of at least 1")
        target = config
        for key in parts[:-1]:
            target = target.setdefault(key, {})
        target[field] = value

    @staticmethod
    def constant(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return dotted(node)
        if isinstance(node, ast.Tuple):
            parts = [Module.constant(e) for e in node.elts]
            return None if None in parts else ", ".join(str(x) for x in parts)
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant)
                and isinstance(node.operand.value, (int, float))
                and not isinstance(node.operand.value, bool)):
            return -node.operand.value
        return None

    # ---- expressions ---------------------------------------------------------------------
    def renamed(self, node, ctx):
        return Renamer(ctx.param).visit(copy.deepcopy(node))

    def check_expr(self, node, ctx, extra=()):
        """Reject what cannot compile inside an expression (raises CompileError)."""
        bound = set(extra)
        for n in ast.walk(node):
            if isinstance(n, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                for g in n.generators:
                    bound.update(t.id for t in ast.walk(g.target) if isinstance(t, ast.Name))
        skip = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Lambda):
                raise CompileError(n, "lambda cannot be compiled: define a module-level function "
                                   "and call it, or write the expression inline")
            if isinstance(n, (ast.Yield, ast.YieldFrom)):
                raise CompileError(n, "yield cannot be compiled in a flow: a flow returns p once; "
                                   "fan out with p[\"r\"] = [h(x) for x in p[\"items\"]]")
            if isinstance(n, ast.NamedExpr):
                raise CompileError(n, "the walrus operator := cannot be compiled: assign to a key "
                                   "of p first (p[\"k\"] = …), then use p[\"k\"]")
            if isinstance(n, ast.Await):
                raise CompileError(n, "await is only allowed on an actor call of its own: write "
                                   "p = await h(p) or p[\"k\"] = await h(p[\"x\"]) on its own line")
            if isinstance(n, ast.Call):
                f = n.func
                while isinstance(f, ast.Attribute):
                    f = f.value
                skip.add(id(f))
                c = self.callee(n, ctx, in_expr=True)
                if c is None:
                    continue
                if c.kind in ("actor", "flow", "unfold"):
                    raise CompileError(n, f"nested call: {c.name}() is an {c.kind} call inside "
                                       "another expression; call it on its own line first "
                                       f"(p = {c.name}(p) or p[\"k\"] = {c.name}(…)), then use "
                                       "the result from p, or mark it `# asya: inline`")
                if c.name in SIDE_EFFECTS and c.name not in self.defs:
                    raise CompileError(n, f"{c.name}() is a side effect that a compiled flow does "
                                       "not run where you wrote it: do it inside an actor")
                if c.name in self.classes and (n.args or n.keywords):
                    raise CompileError(n, f"class instantiation with arguments `{ast.unparse(n)}` "
                                       "cannot be compiled: build the object inside an actor")
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in skip:
                self.check_name(n, ctx, bound)

    def check_name(self, n, ctx, bound):
        name = n.id
        if name == ctx.param or name in bound or name in self.imports or name in self.defs \
                or name in self.classes:
            return
        if name in self.globals:
            raise CompileError(n, f"`{name}` is a module-level variable: a compiled flow sees only "
                               f"p; write its value inline or store it in p (p[\"{name}\"])")
        if name in BUILTINS:
            return
        raise CompileError(n, f"free variable `{name}`: a compiled flow keeps all state in "
                           f"{ctx.param}; store it as {ctx.param}[\"{name}\"] instead")

    def nexpr(self, node, names):
        """Native form of a renamed expression (docs/flow-ir.md NExpr), or raise NotNative."""
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, (bool, int, str)):
                return {"const": v}
            if isinstance(v, float) and math.isfinite(v):
                return {"const": v}
            raise NotNative(f"uses the literal {ast.unparse(node)}")
        if isinstance(node, ast.Name):
            if node.id in names:
                return {"name": node.id}
            raise NotNative(f"reads `{node.id}`")
        if isinstance(node, ast.Subscript):
            if isinstance(node.slice, ast.Slice):
                raise NotNative(f"uses a slice `{ast.unparse(node)}`")
            return {"sub": [self.nexpr(node.value, names), self.nexpr(node.slice, names)]}
        if isinstance(node, ast.Compare):
            pairs, prev = [], node.left
            for op, right in zip(node.ops, node.comparators):
                o = CMP_OPS[type(op)]
                if o in ("is", "is not") and not (self.singleton(prev) or self.singleton(right)):
                    raise NotNative(f"uses `{o}` with something other than None, True or False")
                pairs.append([o, self.nexpr(right, names)])
                prev = right
            return {"cmp": [self.nexpr(node.left, names), pairs]}
        if isinstance(node, ast.BoolOp):
            key = "and" if isinstance(node.op, ast.And) else "or"
            return {key: [self.nexpr(v, names) for v in node.values]}
        if isinstance(node, ast.UnaryOp):
            key = {ast.Not: "not", ast.USub: "neg", ast.UAdd: "pos"}.get(type(node.op))
            if key is None:
                raise NotNative("uses the operator ~")
            return {key: self.nexpr(node.operand, names)}
        if isinstance(node, ast.BinOp):
            op = BIN_OPS.get(type(node.op))
            if op is None:
                raise NotNative(f"uses the operator {ALL_BIN_OPS[type(node.op)]}")
            return {"bin": [op, self.nexpr(node.left, names), self.nexpr(node.right, names)]}
        if isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else None
            shadowed = fn in self.defs or fn in self.imports or fn in self.globals
            if fn in NATIVE_CALLS and not shadowed and len(node.args) == 1 \
                    and not node.keywords and not isinstance(node.args[0], ast.Starred):
                return {"call": [fn, self.nexpr(node.args[0], names)]}
            if fn in NATIVE_CALLS and not shadowed:
                raise NotNative(f"calls {fn}() with other than one positional argument")
            root = dotted(node.func)
            root = root.split(".")[0] if root else None
            if isinstance(node.func, ast.Attribute) and root not in self.imports \
                    and root not in self.classes:
                raise NotNative(f"calls {ast.unparse(node.func)}(), a method")
            raise NotNative(f"calls {ast.unparse(node.func)}()")
        if isinstance(node, ast.List):
            return {"list": [self.nexpr(e, names) for e in node.elts]}
        if isinstance(node, ast.Tuple):
            if all(isinstance(e, ast.Constant) for e in node.elts):
                return {"list": [self.nexpr(e, names) for e in node.elts]}
            raise NotNative("uses a tuple display with computed items")
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise NotNative("uses ** unpacking in a dict display")
            if not all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                       for k in node.keys):
                raise NotNative("uses dict keys other than string literals")
            return {"dict": [[self.nexpr(k, names), self.nexpr(v, names)]
                             for k, v in zip(node.keys, node.values)]}
        if isinstance(node, ast.IfExp):
            return {"ifexp": [self.nexpr(node.test, names), self.nexpr(node.body, names),
                              self.nexpr(node.orelse, names)]}
        if isinstance(node, ast.Starred):
            raise NotNative("uses * unpacking")
        if isinstance(node, ast.JoinedStr):
            raise NotNative("uses an f-string")
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            raise NotNative("uses a comprehension")
        if isinstance(node, ast.Attribute):
            raise NotNative(f"reads the attribute `{ast.unparse(node)}`")
        if isinstance(node, ast.Set):
            raise NotNative("uses a set display")
        raise NotNative(f"uses `{ast.unparse(node)}`")

    @staticmethod
    def singleton(node):
        return isinstance(node, ast.Constant) and (node.value is None or node.value is True
                                                   or node.value is False)

    def expr(self, node, ctx, var=None):
        """An IR Expr: code, native (or null) and why."""
        self.check_expr(node, ctx, (var,) if var else ())
        r = self.renamed(node, ctx)
        names = {"p", var} if var else {"p"}
        try:
            native, why = self.nexpr(r, names), None
        except NotNative as e:
            native, why = None, f"{e}: only a Python router can run it"
        return {"code": ast.unparse(r), "native": native, "why": why}

    def path(self, node, ctx):
        """Constant Path of `p[..][..]`, or None when an index is computed."""
        keys = []
        while isinstance(node, ast.Subscript):
            s = node.slice
            if isinstance(s, ast.Constant) and isinstance(s.value, (str, int)) \
                    and not isinstance(s.value, bool):
                keys.append(s.value)
            elif (isinstance(s, ast.UnaryOp) and isinstance(s.op, ast.USub)
                  and isinstance(s.operand, ast.Constant) and type(s.operand.value) is int):
                keys.append(-s.operand.value)
            else:
                return None
            node = node.value
        if isinstance(node, ast.Name) and node.id == ctx.param:
            return list(reversed(keys))
        return None

    def state_root(self, target, ctx):
        """True when `target` is p or a subscript chain rooted at p."""
        node = target
        while isinstance(node, ast.Subscript):
            node = node.value
        return isinstance(node, ast.Name) and node.id == ctx.param

    # ---- statements ----------------------------------------------------------------------
    def block(self, stmts, ctx):
        out = []
        for s in stmts:
            try:
                out.extend(self.stmt(s, ctx))
            except CompileError as e:
                self.error(e.node, e.message)
        return out

    def recorded(self, fn, *args):
        """fn(*args), or None with its error recorded, so that the enclosing body is still
        compiled (every error of a file is reported, not the first)."""
        try:
            return fn(*args)
        except CompileError as e:
            self.error(e.node, e.message)
            return None

    @staticmethod
    def node(kind, at, **fields):
        line, col = loc(at)
        d = {"kind": kind, "line": line, "col": col}
        d.update(fields)
        return d

    def stmt(self, s, ctx):
        if isinstance(s, ast.Pass):
            return []
        if isinstance(s, ast.Expr):
            return self.expr_stmt(s, ctx)
        if isinstance(s, (ast.Assign, ast.AnnAssign)):
            return self.assign_stmt(s, ctx)
        if isinstance(s, ast.AugAssign):
            return self.aug_stmt(s, ctx)
        if isinstance(s, ast.If):
            test = self.recorded(self.expr, s.test, ctx)
            return [self.node("if", s, test=test, then=self.block(s.body, ctx),
                              **{"else": self.block(s.orelse, ctx)})]
        if isinstance(s, ast.While):
            if s.orelse:
                self.error(s.orelse[0], "while/else cannot be compiled: set a key before break "
                           "(p[\"found\"] = True) and test it after the loop")
            endless = isinstance(s.test, ast.Constant) and s.test.value in (True, 1) \
                and not isinstance(s.test.value, float)
            test = None if endless else self.recorded(self.expr, s.test, ctx)
            return [self.node("while", s, test=test,
                              body=self.block(s.body, ctx.sub(loop=ctx.loop + 1)))]
        if isinstance(s, (ast.Break, ast.Continue)):
            word = "break" if isinstance(s, ast.Break) else "continue"
            if ctx.loop == 0:
                raise CompileError(s, f"{word} outside a while loop: use it only inside while")
            return [self.node(word, s)]
        if isinstance(s, ast.Return):
            if isinstance(s.value, ast.Name) and s.value.id == ctx.param:
                return [self.node("return", s)]
            what = "nothing" if s.value is None else f"`{ast.unparse(s.value)}`"
            raise CompileError(s, f"return of {what} cannot be compiled: a flow returns its state; "
                               f"store the value in it ({ctx.param}[\"result\"] = …) and "
                               f"write return {ctx.param}")
        if isinstance(s, ast.Raise):
            return [self.raise_stmt(s, ctx)]
        if isinstance(s, ast.Try):
            return [self.try_stmt(s, ctx)]
        if isinstance(s, (ast.With, ast.AsyncWith)):
            return self.with_stmt(s, ctx)
        raise CompileError(s, self.rejected(s))

    @staticmethod
    def rejected(s):
        """The message for a statement kind that never compiles."""
        if isinstance(s, (ast.For, ast.AsyncFor)):
            a = "async for" if isinstance(s, ast.AsyncFor) else "for"
            return (f"{a} loops cannot be compiled: use a fan-out comprehension "
                    "p[\"r\"] = [h(x) for x in p[\"items\"]] or a while loop")
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            return "import inside a flow cannot be compiled: move it to the top of the module"
        if isinstance(s, (ast.Global, ast.Nonlocal)):
            w = "global" if isinstance(s, ast.Global) else "nonlocal"
            return f"{w} cannot be compiled: a flow keeps all state in p; use p[\"name\"]"
        if isinstance(s, ast.Delete):
            return "del cannot be compiled: write p.pop(\"k\", None) to remove a key"
        if isinstance(s, ast.Assert):
            return "assert cannot be compiled: write if not …: raise ValueError(\"…\")"
        if isinstance(s, getattr(ast, "Match", ())):
            return "match cannot be compiled: use if/elif/else"
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return "a def or class inside a flow cannot be compiled: define it at module level"
        if type(s).__name__ == "TryStar":
            return "except* cannot be compiled: use except E:"
        return f"{type(s).__name__} statements cannot be compiled in a flow"

    def expr_stmt(self, s, ctx):
        v = s.value
        if isinstance(v, ast.Constant):
            return []  # a docstring or a bare literal: no effect
        inner = strip_await(v)
        if isinstance(inner, ast.Call):
            if self.gather_args(inner) is not None:
                raise CompileError(s, "fan-out results must go to a key: write "
                                   f"{ctx.param}[\"r\"] = await asyncio.gather(…)")
            c = self.callee(inner, ctx)
            if c is not None and c.kind != "inline":
                return self.call_stmt(s, inner, c, ctx, None)
            if c is not None and c.name in SIDE_EFFECTS and c.name not in self.defs:
                raise CompileError(inner, f"{c.name}() is a side effect that a compiled flow does "
                                   "not run where you wrote it: do it inside an actor")
        self.check_expr(inner, ctx)
        r = self.renamed(s, ctx)
        try:
            self.nexpr(strip_await(r.value), {"p"})
            why = "an expression statement whose value is dropped"
        except NotNative as e:
            why = str(e)
        return [self.node("code", s, code=ast.unparse(r), native=None,
                          why=f"{why}: only a Python router can run it")]

    def call_stmt(self, s, call, c, ctx, target):
        """An actor, flow, unfold or config call; target None (statement), "p" or a subscript."""
        if c.kind == "config":
            return []  # stripped: its values belong to manifests, not to the route
        if c.kind in ("flow", "unfold"):
            if c.local is None:
                raise CompileError(call, f"{c.name} is treated as {c.kind} but is not defined in "
                                   "this file: define it here, or treat it as an actor "
                                   "(`# asya: actor`)")
            only_state = (len(call.args) == 1 and not call.keywords
                          and isinstance(call.args[0], ast.Name)
                          and call.args[0].id == ctx.param)
            if not only_state or target not in (None, "p"):
                raise CompileError(call, f"{c.kind} {c.name} must be called with the state only: "
                                   f"write {ctx.param} = {c.name}({ctx.param})")
            return [self.inline_def(s, c, ctx)]
        for a in call.args:
            if isinstance(a, ast.Starred):
                raise CompileError(a, f"*args in a call to actor {c.name} cannot be compiled: "
                                   "pass each argument")
        for kw in call.keywords:
            if kw.arg is None:
                raise CompileError(kw.value, f"**kwargs in a call to actor {c.name} cannot be "
                                   "compiled: pass each keyword")
        for a in list(call.args) + [kw.value for kw in call.keywords]:
            self.check_expr(a, ctx)
        plain = (len(call.args) == 1 and not call.keywords and isinstance(call.args[0], ast.Name)
                 and call.args[0].id == ctx.param)
        if plain and target in (None, "p"):
            return [self.node("call", s, actor=self.add_actor(c, call), adapter=None)]
        if target == "p":
            raise CompileError(s, f"{ctx.param} = {c.name}(…) with arguments other than the state "
                               "would replace the state with the tool's result: call actors as "
                               f"{ctx.param} = {c.name}({ctx.param}), or store a tool's result "
                               f"under a key: {ctx.param}[\"out\"] = {c.name}(…)")
        path = None
        if target is not None:
            path = self.path(target, ctx)
            if path is None:
                raise CompileError(target, f"the result of actor {c.name} must go to a constant "
                                   f"key: write {ctx.param}[\"k\"] = {c.name}(…)")
        adapter = {"args": [self.expr(a, ctx) for a in call.args],
                   "kwargs": {kw.arg: self.expr(kw.value, ctx) for kw in call.keywords},
                   "target": path}
        return [self.node("call", s, actor=self.add_actor(c, call), adapter=adapter)]

    def inline_def(self, s, c, ctx):
        fn = c.local
        if c.name in ctx.stack:
            raise CompileError(s, f"{c.name} calls itself: recursion cannot be compiled; "
                               "use a while loop")
        a = fn.args
        params = a.posonlyargs + a.args
        if len(params) != 1 or a.vararg or a.kwarg or a.kwonlyargs:
            raise CompileError(s, f"{c.kind} {c.name} must take exactly one parameter (the "
                               f"state): def {c.name}(p)")
        param = params[0].arg
        if c.kind == "flow" and param not in STATE_NAMES:
            raise CompileError(fn, f"flow parameter `{param}` must be named p, payload or state")
        body = self.block(self.body(fn), Ctx(param, ctx.stack + (c.name,)))
        if c.kind == "flow":
            return self.node("group", s, flow=c.name, body=body)
        return self.node("unfold", s, function=c.name, body=body)

    @staticmethod
    def body(fn):
        b = fn.body
        if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) \
                and isinstance(b[0].value.value, str):
            b = b[1:]
        return b

    def gather_args(self, call):
        """The calls of `asyncio.gather(...)`, or None when `call` is not a gather."""
        name = dotted(call.func)
        if name is None or self.qualify(name) != "asyncio.gather":
            return None
        if call.keywords:
            raise CompileError(call.keywords[0], "asyncio.gather keywords cannot be "
                               "compiled: write asyncio.gather(a(x), b(y)) only")
        return call.args

    def assign_stmt(self, s, ctx):
        if isinstance(s, ast.Assign) and len(s.targets) > 1:
            raise CompileError(s, "multiple assignment targets (a = b = …) cannot be compiled: "
                               "write one assignment per line")
        t = s.targets[0] if isinstance(s, ast.Assign) else s.target
        if isinstance(t, (ast.Tuple, ast.List)):
            raise CompileError(t, "multiple assignment targets (a, b = …) cannot be compiled: "
                               "assign each key on its own line: p[\"a\"] = …")
        if isinstance(t, ast.Name) and t.id != ctx.param:
            raise CompileError(t, f"assignment to `{t.id}`, a name other than {ctx.param}: a "
                               f"compiled flow keeps all state in {ctx.param}; write "
                               f"{ctx.param}[\"{t.id}\"] = …")
        if not self.state_root(t, ctx):
            raise CompileError(t, f"assignment to `{ast.unparse(t)}` cannot be compiled: only "
                               f"{ctx.param} and its keys can be assigned ({ctx.param}[\"k\"] = …)")
        if s.value is None:
            return []  # a bare annotation
        value = strip_await(s.value)
        to = "p" if isinstance(t, ast.Name) else t
        if isinstance(value, ast.Call):
            gathered = self.gather_args(value)
            if gathered is not None:
                if to == "p":
                    raise CompileError(s, "fan-out results must go to a key: write "
                                       f"{ctx.param}[\"r\"] = await asyncio.gather(…)")
                if len(gathered) == 1 and isinstance(gathered[0], ast.Starred):
                    return [self.fanout_each(s, t, gathered[0].value, ctx, required=True)]
                return [self.fanout(s, t, gathered, ctx, required=True)]
            c = self.callee(value, ctx)
            if c is not None and c.kind != "inline":
                return self.call_stmt(s, value, c, ctx, to)
        elif isinstance(value, (ast.List, ast.Tuple)) and to != "p":
            out = self.fanout(s, t, value.elts, ctx, required=False)
            if out is not None:
                return [out]
        elif isinstance(value, (ast.ListComp, ast.GeneratorExp)) and to != "p":
            out = self.fanout_each(s, t, value, ctx, required=False)
            if out is not None:
                return [out]
        if isinstance(s.value, ast.Await):
            what = f"{ast.unparse(value.func)}()" if isinstance(value, ast.Call) else "this"
            raise CompileError(s.value, f"await is only allowed on an actor call, and {what} is "
                               "not one (it runs inside a router): drop the await, or mark the "
                               "call `# asya: actor`")
        return [self.mutation(s, t, s.value, ctx, None)]

    def aug_stmt(self, s, ctx):
        t = s.target
        if isinstance(t, ast.Name) and t.id != ctx.param:
            raise CompileError(t, f"assignment to `{t.id}`, a name other than {ctx.param}: a "
                               f"compiled flow keeps all state in {ctx.param}; write "
                               f"{ctx.param}[\"{t.id}\"] {ALL_BIN_OPS[type(s.op)]}= …")
        if not self.state_root(t, ctx):
            raise CompileError(t, f"assignment to `{ast.unparse(t)}` cannot be compiled: only "
                               f"{ctx.param} and its keys can be assigned")
        return [self.mutation(s, t, s.value, ctx, s.op)]

    def mutation(self, s, target, value, ctx, op):
        self.check_expr(value, ctx)
        if isinstance(target, ast.Subscript):
            self.check_expr(target, ctx)
        r = self.renamed(s, ctx)
        rt = r.targets[0] if isinstance(r, ast.Assign) else r.target
        try:
            keys = []
            node = rt
            while isinstance(node, ast.Subscript):
                if isinstance(node.slice, ast.Slice):
                    raise NotNative(f"assigns to a slice `{ast.unparse(node)}`")
                keys.append(self.nexpr(node.slice, {"p"}))
                node = node.value
            keys.reverse()
            val = self.nexpr(r.value, {"p"})
            if op is None:
                native = {"assign": [keys, val]}
            else:
                sym = BIN_OPS.get(type(op))
                if sym is None:
                    raise NotNative(f"uses the operator {ALL_BIN_OPS[type(op)]}=")
                native = {"augassign": [sym, keys, val]}
            why = None
        except NotNative as e:
            native, why = None, f"{e}: only a Python router can run it"
        return self.node("code", s, code=ast.unparse(r), native=native, why=why)

    def actor_call(self, node, ctx):
        """(call, Callee) when `node` is a call of an actor, else None."""
        node = strip_await(node)
        if not isinstance(node, ast.Call):
            return None
        c = self.callee(node, ctx)
        if c is None or c.kind != "actor":
            return None
        return node, c

    def fanout_target(self, s, target, ctx):
        path = self.path(target, ctx)
        if path is None:
            raise CompileError(target, "fan-out results must go to a constant key: write "
                               f"{ctx.param}[\"r\"] = [a(…), b(…)]")
        return path

    def fanout(self, s, target, elts, ctx, required):
        found = [self.actor_call(e, ctx) for e in elts]
        if not required and not any(found):
            return None
        if not all(found):
            bad = elts[found.index(None)]
            raise CompileError(bad, "a fan-out list holds only actor calls: "
                               f"`{ast.unparse(bad)}` is not one; compute it in a separate "
                               "mutation")
        calls = []
        for call, c in found:
            arg = self.single_arg(call, c)
            line, col = loc(call)
            calls.append({"actor": self.add_actor(c, call), "arg": self.expr(arg, ctx),
                          "line": line, "col": col})
        return self.node("fanout", s, target=self.fanout_target(s, target, ctx), calls=calls)

    def single_arg(self, call, c):
        if len(call.args) != 1 or call.keywords or isinstance(call.args[0], ast.Starred):
            raise CompileError(call, f"a fan-out call passes exactly one argument: write "
                               f"{c.name}(p[\"x\"])")
        return call.args[0]

    def fanout_each(self, s, target, comp, ctx, required):
        if not isinstance(comp, (ast.ListComp, ast.GeneratorExp)):
            raise CompileError(comp, "asyncio.gather(*…) needs a comprehension: write "
                               "asyncio.gather(*[h(x) for x in p[\"items\"]])")
        found = self.actor_call(comp.elt, ctx)
        if found is None:
            if required:
                raise CompileError(comp.elt, "a gathered comprehension must call an actor: "
                                   "write [h(x) for x in p[\"items\"]]")
            return None
        call, c = found
        if len(comp.generators) != 1:
            raise CompileError(comp, "a fan-out comprehension has exactly one `for`: flatten the "
                               "items first in a mutation")
        g = comp.generators[0]
        if g.ifs:
            raise CompileError(g.ifs[0], "a fan-out comprehension cannot filter (`if`): filter "
                               "the items first: p[\"todo\"] = [x for x in p[\"items\"] if …]")
        if g.is_async or not isinstance(g.target, ast.Name):
            raise CompileError(g.target, "a fan-out comprehension binds one name: write "
                               "[h(x) for x in p[\"items\"]]")
        var = g.target.id
        if var == ctx.param:
            raise CompileError(g.target, f"the comprehension variable shadows {ctx.param}: "
                               "rename it")
        arg = self.single_arg(call, c)
        return self.node("fanout_each", s, target=self.fanout_target(s, target, ctx),
                         actor=self.add_actor(c, call), var=var,
                         iterable=self.expr(g.iter, ctx), arg=self.expr(arg, ctx, var))

    def raise_stmt(self, s, ctx):
        if s.exc is None:
            if ctx.in_except == 0:
                raise CompileError(s, "bare raise outside an except block: raise an exception "
                                   "type: raise ValueError(\"…\")")
            return self.node("raise", s, code="raise", error_type=None, message=None)
        exc, message = s.exc, None
        if isinstance(exc, ast.Call):
            for a in list(exc.args) + [kw.value for kw in exc.keywords]:
                self.check_expr(a, ctx)
            if exc.args and isinstance(exc.args[0], ast.Constant) \
                    and isinstance(exc.args[0].value, str):
                message = exc.args[0].value
            exc = exc.func
        typ = dotted(exc)
        if typ is None:
            raise CompileError(s.exc, "raise needs an exception class: write "
                               "raise ValueError(\"…\")")
        # Like except clauses, the type is kept as written: the router raises it by name
        # (an unknown name is a class the handlers' modules define).
        if typ.split(".")[0] == ctx.param:
            raise CompileError(s.exc, "raise needs an exception class: write "
                               "raise ValueError(\"…\")")
        if s.cause is not None:
            self.check_expr(s.cause, ctx)
        return self.node("raise", s, code=ast.unparse(self.renamed(s, ctx)), error_type=typ,
                         message=message)

    def try_stmt(self, s, ctx):
        if s.orelse:
            self.error(s.orelse[0], "try/else cannot be compiled: move the else body to the end "
                       "of the try body")
        if not s.handlers:
            self.error(s, "try/finally without except cannot be compiled: add an except "
                       "clause (except Exception: raise) or put the cleanup after the try")
        try_body, handlers = self.block(s.body, ctx), []
        for h in s.handlers:
            if h.name:
                self.error(h, f"except … as {h.name} cannot be compiled: the flow cannot see the "
                           "exception object; write the except clause without `as`")
            if h.type is None:
                types = []
            else:
                elts = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
                types = [dotted(e) for e in elts]
                if None in types:
                    self.error(h.type, "except needs exception classes: write except E:, "
                               "except (A, b.B): or except:")
                    types = [t for t in types if t]
            line, col = loc(h)
            body = self.block(h.body, ctx.sub(in_except=ctx.in_except + 1))
            handlers.append({"types": types, "line": line, "col": col, "body": body})
        return self.node("try", s, body=try_body, handlers=handlers,
                         **{"finally": self.block(s.finalbody, ctx)})

    def with_item(self, item, word, values, inline, ctx):
        """Classify one `with` item: config values go to `values`, inline ones to `inline`."""
        ce = item.context_expr
        name = dotted(ce.func if isinstance(ce, ast.Call) else ce)
        kind = self.comment_kind(ce)
        rule = self.rule_for(self.qualify(name), name) if name else None
        if kind is None and rule is not None:
            kind = rule.get("treat-as", "config")
        if item.optional_vars is not None and kind in ("config", "inline"):
            raise CompileError(item.optional_vars, f"{word} … as "
                               f"{ast.unparse(item.optional_vars)} cannot be compiled: a "
                               f"configuration block binds no name; write {word} "
                               f"{ast.unparse(ce)}:")
        if kind == "config" and isinstance(ce, ast.Call):
            if rule is not None:
                self.extract(rule, ce, values)
        elif kind == "inline" and isinstance(ce, ast.Call):
            self.check_expr(ce, ctx)
            inline.append(name)
        else:
            raise CompileError(ce, f"{word} {ast.unparse(ce)} cannot be compiled: only "
                               "configuration blocks (asyncio.timeout(30), or a rules-file "
                               "entry with treat-as: config) are allowed in a flow; use "
                               "other context managers inside an actor")

    def with_stmt(self, s, ctx):
        values, inline = {}, []
        word = "async with" if isinstance(s, ast.AsyncWith) else "with"
        for item in s.items:
            self.recorded(self.with_item, item, word, values, inline, ctx)
        body = self.block(s.body, ctx)
        if not inline:
            return [self.node("config", s, values=values, body=body)]
        if values or any(b["kind"] != "code" for b in body):
            raise CompileError(s, f"{word} {inline[0]}(…) can hold only mutations (it runs in a "
                               "Python router), not actor calls, control flow or configuration: "
                               "around actors write try: … except E: pass")
        return [self.node("code", s, code=ast.unparse(self.renamed(s, ctx)), native=None,
                          why=f"uses the context manager {inline[0]}(): only a Python router "
                          "can run it")]

    # ---- flows ---------------------------------------------------------------------------
    def flow(self, fn):
        a = fn.args
        params = a.posonlyargs + a.args
        if len(params) != 1 or a.vararg or a.kwarg or a.kwonlyargs:
            self.error(fn, f"flow {fn.name} must take exactly one parameter (the state): "
                       f"def {fn.name}(p)")
            return None
        param = params[0].arg
        if param not in STATE_NAMES:
            self.error(params[0], f"flow parameter `{param}` must be named p, payload or state")
            return None
        line, col = loc(fn)
        body = self.block(self.body(fn), Ctx(param, (fn.name,)))
        return {"name": fn.name, "line": line, "col": col, "body": body}

    def select(self, func):
        if func is not None:
            fn = self.defs.get(func)
            if fn is None:
                self.errors.append({"file": self.file, "line": 1, "col": 1,
                                    "message": f"no module-level function `{func}` in "
                                    f"{self.file}: name a def of this file"})
                return []
            return [fn]
        decorated = [f for f in self.defs.values() if self.def_kind(f) == "flow"]
        if decorated:
            return decorated
        return [f for f in self.defs.values()
                if self.def_kind(f) is None
                and len(f.args.posonlyargs + f.args.args) == 1
                and (f.args.posonlyargs + f.args.args)[0].arg in STATE_NAMES]

    def compile(self, func):
        flows = [f for f in (self.flow(fn) for fn in self.select(func)) if f is not None]
        seen, errors = set(), []
        for e in sorted(self.errors, key=lambda e: (e["line"], e["col"])):
            key = (e["line"], e["col"], e["message"])
            if key not in seen:
                seen.add(key)
                errors.append(e)
        return {"version": 1, "file": self.file, "module": self.module, "errors": errors,
                "flows": flows, "actors": self.actors, "imports": self.import_src}


def rules_problem(rules):
    """What is wrong with a rules list (the rules file's shape), or None."""
    if not isinstance(rules, list):
        return "the rules file must be a list of {match, treat-as, extract | where} entries"
    for i, r in enumerate(rules, 1):
        if not isinstance(r, dict) or not isinstance(r.get("match"), str):
            return f"entry {i} needs `match: <qualified symbol>`"
        if r.get("treat-as", "config") not in KINDS:
            return f"{r['match']}: treat-as must be one of {', '.join(KINDS)}"
        extract = r.get("extract", {})
        if not isinstance(extract, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in extract.items()):
            return f"{r['match']}: extract must map parameter names to spec paths"
        problem = where_problem(r.get("where", []), r["match"])
        if problem:
            return problem
    return None


def where_problem(nodes, at):
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        return f"{at}: where must be a list of {{param | match, assign-to | where}} entries"
    for n in nodes:
        param = n.get("param")
        if isinstance(param, dict):
            if not isinstance(param.get("arg", 0), int) or not isinstance(
                    param.get("kwarg", ""), str):
                return f"{at}: param {{arg, kwarg}} needs an integer arg and a string kwarg"
        elif param is not None and not isinstance(param, (str, int)):
            return f"{at}: param must be a name, an index or {{arg, kwarg, type}}"
        if param is None and not isinstance(n.get("match"), str):
            return f"{at}: each where entry needs `param` or `match`"
        if "assign-to" in n and not isinstance(n["assign-to"], str):
            return f"{at}: assign-to must be a spec path such as spec.resiliency.actorTimeout"
        if n.get("flatten-on", "|") not in ("|", "&", "+"):
            return f"{at}: flatten-on must be one of \"|\", \"&\", \"+\""
        problem = where_problem(n.get("where", []), n.get("match") or at)
        if problem:
            return problem
    return None


def usage(message):
    sys.stderr.write(f"flow_frontend: {message}\n"
                     "usage: python3 flow_frontend.py FILE [FUNC] [--rules-json JSON]\n")
    sys.exit(2)


def parse_args(argv):
    pos, rules = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--rules-json", "--rules"):
            if i + 1 >= len(argv):
                usage(f"{arg} needs a value")
            raw, i = argv[i + 1], i + 2
        elif arg.startswith(("--rules-json=", "--rules=")):
            raw, i = arg.split("=", 1)[1], i + 1
        elif arg.startswith("--"):
            usage(f"unknown option {arg}")
        else:
            pos.append(arg)
            i += 1
            continue
        try:
            rules = json.loads(raw) or []
        except ValueError as e:
            usage(f"--rules-json is not JSON: {e}")
        problem = rules_problem(rules)
        if problem:
            usage(f"--rules-json (.asya/config.compiler.rules.yaml): {problem}")
    if len(pos) not in (1, 2):
        usage("expected FILE and optionally FUNC")
    return pos[0], (pos[1] if len(pos) == 2 else None), rules


def compile_source(file, source, func=None, rules=()):
    """The IR document of `source` (read from `file`): the whole front end, minus the CLI."""
    path = Path(file)
    try:
        mod = Module(path, source, list(rules))
    except SyntaxError as e:
        return {"version": 1, "file": file, "module": path.stem, "flows": [], "actors": {},
                "imports": [], "errors": [{"file": file, "line": e.lineno or 1,
                                           "col": e.offset or 1,
                                           "message": f"syntax error: {e.msg}"}]}
    mod.file = file
    return mod.compile(func)


def main(argv):
    file, func, rules = parse_args(argv)
    try:
        with tokenize.open(file) as f:  # honours a `# -*- coding: … -*-` cookie
            source = f.read()
    except (OSError, UnicodeDecodeError, SyntaxError) as e:
        usage(f"cannot read {file}: {e}")
    doc = compile_source(file, source, func, rules)
    sys.stdout.buffer.write(json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"))
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


if __name__ == "__main__":
    # 3.9's ast.unparse writes f'{p['x']}', which no Python before 3.12 can read back.
    if sys.version_info < (3, 10):
        usage(f"the flow compiler needs Python 3.10 or newer; {sys.executable} is "
              f"{sys.version.split()[0]}")
    main(sys.argv[1:])
