"""The reference run of a flow: plain Python, in this process, calling the handlers directly.

The flow's source is executed as written, with the names it calls but does not define
(unknown bare names, which the compiler classifies as actors) bound to the handler
functions of `corpus/handlers.py`. What the mesh does to a payload between two actors is
done here too, so that the two runs can be compared exactly:

- a handler is called on the flow's own `p` (so `h(p)` as a statement changes `p`, as in
  plain Python), but one that fails has its argument put back as it was (a failed actor
  leaves the envelope's payload untouched: the except path sees the failing actor's
  input), and its result is JSON-copied (what crossing the wire does);
- in an `async def` flow, `await h(p)` and `asyncio.gather(h(x), ..)` work on these
  synchronous handlers: a handler's result is a dict/list/int/float/str that is also
  awaitable (to itself), so it can be used with and without `await`.

`run_flow` returns `{"ok": final payload}` or `{"error": {"type", "message"}}` for an
uncaught exception (`type` is the class name without its module: the mesh reports
`handlers.RateLimitError` for a handler's error but `RateLimitError` for a `raise` in the
flow, which name the same class).
"""

import ast
import asyncio
import builtins
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

# Objects whose methods are actors: `tools.shout(p)` is handler `tools_shout`.
METHOD_OBJECTS = ("tools",)


class CorpusError(Exception):
    """The flow or its inputs are wrong (not a result to compare): fix the corpus."""


def load_handlers(path=CORPUS / "handlers.py"):
    """Imports corpus/handlers.py as module `handlers` (its errors' qualified names)."""
    mod = sys.modules.get("handlers")
    if mod is not None and Path(getattr(mod, "__file__", "")) == Path(path):
        return mod
    spec = importlib.util.spec_from_file_location("handlers", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["handlers"] = mod
    spec.loader.exec_module(mod)
    return mod


def handler_functions(mod):
    """{function name: function} for every public function defined in the handlers module."""
    return {
        name: fn for name, fn in vars(mod).items()
        if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == mod.__name__
    }


def actor_name(function_name):
    """The mesh's actor name for a called name (`write_draft` → `write-draft`, `tools.shout` → `tools-shout`)."""
    return function_name.replace(".", "-").replace("_", "-")


def json_copy(value):
    """What crossing the wire does to a value (tuples become lists, keys become strings)."""
    return json.loads(json.dumps(value))


async def _ready(value):
    return value


class _ADict(dict):
    def __await__(self):
        return _ready(dict(self)).__await__()


class _AList(list):
    def __await__(self):
        return _ready(list(self)).__await__()


class _AInt(int):
    def __await__(self):
        return _ready(int(self)).__await__()


class _AFloat(float):
    def __await__(self):
        return _ready(float(self)).__await__()


class _AStr(str):
    def __await__(self):
        return _ready(str(self)).__await__()


def _awaitable(value):
    for base, cls in ((dict, _ADict), (list, _AList), (str, _AStr), (float, _AFloat)):
        if isinstance(value, base):
            return cls(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _AInt(value)
    return value  # bool / None: usable, not awaitable


def _restore(value, before):
    if isinstance(value, dict):
        value.clear()
        value.update(before)
    elif isinstance(value, list):
        value[:] = before


def wrap_handler(fn):
    """The handler as the flow sees it: JSON in, JSON out, awaitable result."""
    def call(arg):
        before = json_copy(arg)
        try:
            result = fn(arg)
        except BaseException:
            _restore(arg, before)
            raise
        return _awaitable(json_copy(result))
    call.__name__ = fn.__name__
    call.__wrapped__ = fn
    return call


def _install_stub_modules(handlers_mod):
    # `from asya_lab.flow import flow`: the decorator only marks a flow.
    if "asya_lab.flow" not in sys.modules:
        pkg = types.ModuleType("asya_lab")
        sub = types.ModuleType("asya_lab.flow")
        sub.flow = lambda fn: fn
        pkg.flow = sub
        sys.modules["asya_lab"] = pkg
        sys.modules["asya_lab.flow"] = sub
    openai = types.ModuleType("openai")
    openai.APITimeoutError = handlers_mod.APITimeoutError
    return openai


def flow_globals(handlers_mod=None):
    """The globals a flow module is executed with: handlers, error classes, stubs."""
    handlers_mod = handlers_mod or load_handlers()
    openai = _install_stub_modules(handlers_mod)
    ns = {"__name__": "flow_under_test", "__builtins__": builtins,
          "handlers": handlers_mod, "openai": openai}
    fns = handler_functions(handlers_mod)
    for name, fn in fns.items():
        ns[name] = wrap_handler(fn)
    for obj in METHOD_OBJECTS:
        methods = {n[len(obj) + 1:]: ns[n] for n in fns if n.startswith(obj + "_")}
        ns[obj] = types.SimpleNamespace(**methods)
    for name, value in vars(handlers_mod).items():
        if isinstance(value, type) and issubclass(value, BaseException) \
                and value.__module__ in (handlers_mod.__name__, "openai"):
            ns[name] = value
    return ns


def _unresolved_names(tree, ns):
    """Names loaded somewhere in the module that nothing binds (a corpus typo would
    otherwise surface as a NameError that a bare `except:` swallows)."""
    loaded, bound = set(), set(ns) | set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return sorted(loaded - bound)


def load_module(source, filename="<flow>", handlers_mod=None):
    """Executes a flow module's source; returns its namespace."""
    ns = flow_globals(handlers_mod)
    tree = ast.parse(source, filename)
    missing = _unresolved_names(tree, ns)
    if missing:
        raise CorpusError(f"{filename}: names bound by nothing: {', '.join(missing)}")
    exec(compile(tree, filename, "exec"), ns)
    return ns


def error_result(exc):
    return {"error": {"type": type(exc).__name__, "message": str(exc)}}


def call_flow(ns, func, payload):
    """Runs flow `func` of a loaded module on a JSON copy of `payload`."""
    fn = ns.get(func)
    if fn is None:
        raise CorpusError(f"no flow named {func}")
    p = json_copy(payload)
    try:
        if inspect.iscoroutinefunction(fn):
            result = asyncio.run(fn(p))
        else:
            result = fn(p)
    except Exception as exc:  # noqa: BLE001 - an uncaught error is the flow's result
        return error_result(exc)
    return {"ok": json_copy(result)}


def run_flow(source, func, payload, filename="<flow>"):
    """Executes `source` and runs flow `func` on `payload`: `{"ok": ..}` or `{"error": ..}`."""
    return call_flow(load_module(source, filename), func, payload)


def canonical(result):
    """The comparison form: JSON text with sorted keys (3 and 3.0, 1 and true differ)."""
    return json.dumps(result, sort_keys=True)
