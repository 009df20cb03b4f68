"""The differential cases: every corpus flow with each of its inputs, and generated flows.

A case names a flow by (source file, function) and gives one input payload. `mesh_files`
writes one project folder for a set of cases: the flow sources, corpus/handlers.py and a
troupe.yaml that declares every flow (`flows:`) and every actor the flows call.
"""

import ast
import dataclasses
import json
from pathlib import Path

import generator
import reference

CORPUS = reference.CORPUS
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("flows_*.py"))
GENERATED_FILE = "flows_generated.py"


@dataclasses.dataclass(frozen=True)
class Case:
    file: str      # flow source file name (in the mesh folder)
    func: str      # flow function
    index: int     # which input of the flow
    payload: dict

    @property
    def id(self):
        return f"{self.func}-{self.index}"

    @property
    def flow_name(self):
        """The flow's name in the mesh file (and what `troupe send` takes)."""
        return self.func.replace("_", "-")


def corpus_cases():
    """(sources {file: text}, [Case]) for the hand-written corpus."""
    sources, cases = {}, []
    for name in CORPUS_FILES:
        text = (CORPUS / name).read_text()
        sources[name] = text
        ns = reference.load_module(text, name)
        for func, inputs in ns["INPUTS"].items():
            if func not in ns:
                raise reference.CorpusError(f"{name}: INPUTS names {func}, which is not defined")
            for i, payload in enumerate(inputs):
                cases.append(Case(name, func, i, payload))
    return sources, cases


def generated_cases(seeds):
    """(sources {file: text}, [Case]) for the generated flows of `seeds`, in one file."""
    flows = [generator.generate(seed) for seed in seeds]
    text = generator.module_source(flows)
    cases = [Case(GENERATED_FILE, g.name, i, payload)
             for g in flows for i, payload in enumerate(g.inputs)]
    return {GENERATED_FILE: text}, cases


def function_source(sources, case):
    """The source of the case's flow function and of the local defs it calls."""
    text = sources[case.file]
    tree = ast.parse(text)
    wanted = {case.func} | _called_names(tree, case.func)
    lines = text.splitlines()
    parts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            parts.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n\n".join(parts)


def _called_names(tree, func):
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    seen, todo = set(), [func]
    while todo:
        node = defs.get(todo.pop())
        if node is None:
            continue
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                    and call.func.id in defs and call.func.id not in seen:
                seen.add(call.func.id)
                todo.append(call.func.id)
    return seen


def _contexts(node, ctx=(), out=None):
    """{id(call node): the try bodies and with blocks around it (node ids, outermost first)}."""
    out = {} if out is None else out
    if isinstance(node, ast.Call):
        out[id(node)] = ctx
    if isinstance(node, ast.Try):
        for child in node.body:
            _contexts(child, ctx + (id(node),), out)
        # errors in the handlers of a try with finally reach outer clauses through the
        # finally first: a context of their own for the compiler
        inner = ctx + (("handlers", id(node)),) if node.finalbody else ctx
        for child in node.handlers:
            _contexts(child, inner, out)
        for child in node.orelse + node.finalbody:
            _contexts(child, ctx, out)
        return out
    if isinstance(node, (ast.With, ast.AsyncWith)):
        for child in node.items:
            _contexts(child, ctx, out)
        for child in node.body:
            _contexts(child, ctx + (id(node),), out)
        return out
    for child in ast.iter_child_nodes(node):
        _contexts(child, ctx, out)
    return out


def _actor_calls(node, handler_names, local_defs):
    """(called name, (line, col, end_col, name written), context) for each handler call."""
    contexts = _contexts(node)
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        ctx = contexts.get(id(call), ())
        if isinstance(f, ast.Name) and f.id in handler_names and f.id not in local_defs:
            yield f.id, (f.lineno, f.col_offset, f.end_col_offset, f.id), ctx
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f"{f.value.id}_{f.attr}" in handler_names:
            # the method name is the last `len(attr)` characters of the expression
            yield f"{f.value.id}.{f.attr}", (f.end_lineno, f.end_col_offset - len(f.attr),
                                              f.end_col_offset, f.attr), ctx


def isolated_flow_file(text, func, suffix, handler_names, per_context=False):
    """The module of one flow for the mesh: the original imports, the flow and the local
    defs it calls, every handler call renamed with `suffix` (`risky(p)` → `risky_f3(p)`,
    `tools.shout(p)` → `tools.shout_f3(p)`).

    Why: the compiler gives each called actor the error policies of the `try` blocks it is
    called in, and the mesh merges them per actor; an actor shared by two flows would route
    its errors to the other flow's except routers. One set of actors per flow keeps the
    flows independent, so that each mismatch belongs to the flow that shows it (an actor
    shared inside one flow stays shared). Returns (source, {actor: handler function}).
    """
    tree = ast.parse(text)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    wanted = {func} | _called_names(tree, func)
    if not any(isinstance(n, ast.Try) for name in wanted for n in ast.walk(defs[name])):
        suffix = ""  # no try, no policies: sharing the actors is harmless and cheaper
    numbers = {}
    lines = text.splitlines()
    out = [ast.get_source_segment(text, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    actors = {}
    for name in [n for n in defs if n in wanted]:
        node = defs[name]
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        chunk = lines[first - 1:node.end_lineno]
        edits = []
        for called, (line, col, end, written), ctx in _actor_calls(node, handler_names, defs):
            tail = suffix
            if per_context and ctx:
                tail += f"_c{numbers.setdefault(ctx, len(numbers) + 1)}"
            edits.append((line - first, col, end, written + tail))
            renamed = called + tail
            actors[reference.actor_name(renamed)] = called.replace(".", "_")
        for idx, col, end, new in sorted(edits, reverse=True):
            row = chunk[idx]
            chunk[idx] = row[:col] + new + row[end:]
        out.append("\n".join(chunk))
    return "\n\n\n".join(out) + "\n", actors


@dataclasses.dataclass(frozen=True)
class MeshFlow:
    """One flow as the mesh gets it: its name, its own module and the actors it calls."""
    name: str      # flow name in troupe.yaml
    file: str      # module in the mesh folder
    func: str
    origin: str    # the corpus / generated file it comes from
    source: str
    actors: dict   # actor name → handler function


def mesh_flows(sources, cases):
    """The flows of `cases`, one isolated module each (see isolated_flow_file)."""
    handler_names = set(reference.handler_functions(reference.load_handlers()))
    out = []
    for k, (origin, func) in enumerate(sorted({(c.file, c.func) for c in cases})):
        text, actors = isolated_flow_file(sources[origin], func, f"_f{k}", handler_names,
                                          per_context=origin == GENERATED_FILE)
        out.append(MeshFlow(func.replace("_", "-"), f"f{k}_{func}.py", func, origin, text, actors))
    return out


def mesh_yaml(flows):
    """troupe.yaml text declaring the flows and every actor they call."""
    actors = {}
    for f in flows:
        actors.update(f.actors)
    lines = ["# Written by tests/flows (the differential flow tests).", "fsync: never", "actors:"]
    for actor, func in sorted(actors.items()):
        # few replicas, quickly stopped: the mesh has hundreds of actors, each used briefly
        lines += [f"  - actor: {actor}", f"    handler: handlers.{func}",
                  "    scaling: {maxReplicaCount: 2, cooldownPeriod: 10}"]
    lines.append("flows:")
    for f in flows:
        lines += [f"  - name: {f.name}", f"    source: {f.file}:{f.func}"]
    return "\n".join(lines) + "\n"


def write_mesh(root, flows):
    """Writes the project folder of `flows` (MeshFlow list) under `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for f in flows:
        (root / f.file).write_text(f.source)
    (root / "handlers.py").write_text((CORPUS / "handlers.py").read_text())
    (root / "troupe.yaml").write_text(mesh_yaml(flows))


def describe(sources, case, expected, actual):
    """The failure text: flow source, input, both results."""
    return (f"flow {case.func} ({case.file}), input #{case.index}:\n"
            f"{function_source(sources, case)}\n\n"
            f"input:     {json.dumps(case.payload, sort_keys=True)}\n"
            f"reference: {reference.canonical(expected)}\n"
            f"troupe:    {reference.canonical(actual)}")
