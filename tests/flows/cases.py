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


def actors_called(sources, handler_names):
    """Actor name → handler function for every handler any of the sources calls."""
    out = {}
    for text in sources.values():
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name):
                called = f.id
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                called = f"{f.value.id}.{f.attr}"
            else:
                continue
            func = called.replace(".", "_")
            if func in handler_names:
                out[reference.actor_name(called)] = func
    return dict(sorted(out.items()))


def mesh_yaml(cases, actors, extra=""):
    """troupe.yaml text declaring every flow of `cases` and every actor."""
    lines = ["# Written by tests/flows (the differential flow tests).", "fsync: never", "actors:"]
    for actor, func in actors.items():
        lines += [f"  - actor: {actor}", f"    handler: handlers.{func}"]
    lines.append("flows:")
    for file, func in sorted({(c.file, c.func) for c in cases}):
        lines += [f"  - name: {func.replace('_', '-')}", f"    source: {file}:{func}"]
    return "\n".join(lines) + "\n" + extra


def write_mesh(root, sources, cases, extra=""):
    """Writes the project folder for `cases`; returns the troupe.yaml path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    handlers_mod = reference.load_handlers()
    for name, text in sources.items():
        (root / name).write_text(text)
    (root / "handlers.py").write_text((CORPUS / "handlers.py").read_text())
    actors = actors_called(sources, set(reference.handler_functions(handlers_mod)))
    path = root / "troupe.yaml"
    path.write_text(mesh_yaml(cases, actors, extra))
    return path


def describe(sources, case, expected, actual):
    """The failure text: flow source, input, both results."""
    return (f"flow {case.func} ({case.file}), input #{case.index}:\n"
            f"{function_source(sources, case)}\n\n"
            f"input:     {json.dumps(case.payload, sort_keys=True)}\n"
            f"reference: {reference.canonical(expected)}\n"
            f"troupe:    {reference.canonical(actual)}")
