"""Test harness of crates/troupe-flow/tests/differential.rs: a JSON-lines server on
stdin/stdout that runs what the Rust side cannot — the corpus of tests/flows (cases and
their plain-Python reference results), the corpus handlers as actors, and the routers of a
generated routers.py through Troupe's real Python runtime ABI (troupe_runtime._Call: GET /
SET / DEL / emit with its per-emit snapshots), one router call per request.

Requests: {"op": "cases", "dir": D, "seeds": N} | {"op": "load", "path": routers.py} |
{"op": "router", "name": actor, "env": envelope} | {"op": "actor", "handler": fn,
"payload": p}. Replies: one JSON line each.
"""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "flows"))
sys.path.insert(0, str(ROOT / "crates" / "troupe-runtime" / "python"))

import cases  # noqa: E402
import reference  # noqa: E402
import troupe_runtime as rt  # noqa: E402

HANDLERS = reference.load_handlers()
FUNCS = reference.handler_functions(HANDLERS)
_routers = None
_loaded = 0


class _Stream:
    def __init__(self):
        self.frames = []

    def event(self, name, data):
        if name == b"downstream":
            self.frames.append(json.loads(data))


def op_cases(req):
    sources, corpus = cases.corpus_cases()
    gen_sources, generated = cases.generated_cases(range(req["seeds"]))
    sources.update(gen_sources)
    all_cases = corpus + generated
    flows = cases.mesh_flows(sources, all_cases)
    out_dir = Path(req["dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "handlers.py").write_text((reference.CORPUS / "handlers.py").read_text())
    by_origin = {}
    for f in flows:
        (out_dir / f.file).write_text(f.source)
        by_origin[(f.origin, f.func)] = f
    modules = {}
    out = []
    for c in all_cases:
        if c.file not in modules:
            modules[c.file] = reference.load_module(sources[c.file], c.file)
        f = by_origin[(c.file, c.func)]
        out.append({
            "id": ("gen-" if c.file == cases.GENERATED_FILE else "") + c.id,
            "file": f.file, "func": c.func, "payload": c.payload, "actors": f.actors,
            "expected": reference.call_flow(modules[c.file], c.func, c.payload),
        })
    return {"cases": out}


def op_load(req):
    global _routers, _loaded
    path = Path(req["path"])
    sys.path.insert(0, str(path.parent))
    _loaded += 1
    spec = importlib.util.spec_from_file_location(f"routers_{_loaded}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _routers = mod
    return {"ok": True}


def op_router(req):
    env = req["env"]
    fn = _routers.resolve(req["name"])
    stream = _Stream()
    call = rt._Call(env, stream)
    try:
        rt._drive_sync(fn(env["payload"]), call)
    except Exception as exc:  # noqa: BLE001 - a router's error is the result
        details = rt.error_details(exc)
        details.pop("traceback", None)
        return {"error": details}
    return {"frames": stream.frames}


def op_actor(req):
    fn = FUNCS[req["handler"]]
    try:
        result = fn(req["payload"])
    except Exception as exc:  # noqa: BLE001
        details = rt.error_details(exc)
        details.pop("traceback", None)
        return {"error": details}
    if result is None:
        return {"none": True}
    return {"ok": rt._normalise(result)}


OPS = {"cases": op_cases, "load": op_load, "router": op_router, "actor": op_actor}

for line in sys.stdin:
    req = json.loads(line)
    try:
        reply = OPS[req["op"]](req)
    except Exception:  # noqa: BLE001 - report harness bugs to the test
        import traceback
        reply = {"harness_error": traceback.format_exc()}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
