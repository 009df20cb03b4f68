"""Differential tests of the flow compiler (issue 11): every corpus flow with each of its
inputs, and generated flows, run (a) as plain Python calling the handlers in this process
(reference.py) and (b) compiled and run through `troupe up`, once with native routers and
once with `--no-native-routers`; the results must be equal: the final payload (which
branch and except clause ran, loop counts, fan-out order, all visible in it) or the
uncaught error's type and message.

The flows run in a few meshes per mode (40 flows each, 20 with Python routers: see
mesh_size), not one mesh per flow.
TROUPE_FLOW_SEEDS sets how many generated flows run
(default 30: seeds 0..29); TROUPE_FLOW_TIMEOUT how long a mesh's tasks may take in all
(default 180 s). A failure prints the flow's source, the input and both results.
"""

import json
import os
from pathlib import Path

import pytest

import cases
import mesh_run
import reference
from e2e_conftest import Mesh, troupe_binary

SEEDS = range(int(os.environ.get("TROUPE_FLOW_SEEDS", "30")))

SOURCES, CORPUS_CASES = cases.corpus_cases()
_GEN_SOURCES, GENERATED_CASES = cases.generated_cases(SEEDS)
SOURCES.update(_GEN_SOURCES)
ALL_CASES = CORPUS_CASES + GENERATED_CASES
FLOWS = cases.mesh_flows(SOURCES, ALL_CASES)

_MODULES = {}


def expected(case):
    """The reference result (plain Python)."""
    if case.file not in _MODULES:
        _MODULES[case.file] = reference.load_module(SOURCES[case.file], case.file)
    return reference.call_flow(_MODULES[case.file], case.func, case.payload)


def mesh_size(mode):
    """Flows per mesh. `troupe up` imports every actor's handler in its own interpreter,
    all at once, before it starts (a few hundred actors overrun its 120 s limit on two
    cores), and with Python routers every router is an actor kept warm (one Python process
    each): the flows run in several meshes, one after the other.
    TROUPE_FLOW_MESH_SIZE overrides (0 = one mesh)."""
    env = os.environ.get("TROUPE_FLOW_MESH_SIZE")
    if env is not None:
        return int(env)
    return 40 if mode == "native" else 20


def selected_cases(session):
    """The cases of the tests this run selected (`-k try_` starts a mesh with those flows only)."""
    chosen = [item.callspec.params["case"] for item in session.items
              if getattr(item, "callspec", None) and "case" in item.callspec.params]
    return chosen or ALL_CASES


@pytest.fixture(scope="module", params=["native", "python-routers"])
def flow_mesh(request, tmp_path_factory):
    """A running mesh with every selected flow, and the results of every case through it."""
    binary = troupe_binary()
    if not binary.exists():
        pytest.fail(f"troupe binary not found at {binary}: run `cargo build -p troupe-cli` first")
    if not mesh_run.flows_supported(binary):
        pytest.skip(f"{binary} does not run flows yet (`troupe up --help` has no "
                    "--no-native-routers): the differential flow tests need the flows: integration")
    chosen = selected_cases(request.session)
    names = {c.flow_name for c in chosen}
    flows = [f for f in FLOWS if f.name in names]
    size = mesh_size(request.param) or len(flows)
    results, compile_errors = {}, {}
    for start in range(0, len(flows), size):
        chunk = flows[start:start + size]
        in_chunk = {f.name for f in chunk}
        mesh = Mesh(binary, tmp_path_factory.mktemp(f"flows-{request.param}"))
        run = mesh_run.FlowMesh(mesh, chunk, native=request.param == "native")
        try:
            run.start()
            results.update(run.run([c for c in chosen if c.flow_name in in_chunk],
                                   timeout=int(os.environ.get("TROUPE_FLOW_TIMEOUT", "180"))))
        except (AssertionError, OSError) as e:
            # this mesh did not start: its flows fail with why; the other meshes still run
            for name in in_chunk:
                run.compile_errors.setdefault(name, f"the mesh of this flow failed:\n{e}")
        finally:
            mesh.stop()
        compile_errors.update(run.compile_errors)
    dump = os.environ.get("TROUPE_FLOW_DUMP")
    if dump:
        # Every case's two results, for triage: TROUPE_FLOW_DUMP=/tmp/d.json pytest ...
        path = Path(f"{dump}.{request.param}.json")
        path.write_text(json.dumps([
            {"case": case_id(c), "input": c.payload, "reference": expected(c),
             "troupe": results.get(mesh_run.key(c), {"compile error": compile_errors.get(c.flow_name)})}
            for c in chosen], indent=1))
    return compile_errors, results, request.param


# Cases where troupe does not give plain Python's result, on purpose or until fixed:
# "corpus-FLOW-N" (both modes) or "MODE:corpus-FLOW-N" → why. Such a case is an expected
# failure; one that starts to agree fails, so that it is taken off this list.
_PER_ACTOR = ("by design: resiliency is per actor, so an actor called in two try blocks is a "
              "compile error (docs/flows.md \"Errors\")")
KNOWN = {
    "native:corpus-big_numbers-2": "by design: native ints are 64-bit (JSON payloads): OverflowError",
    "native:corpus-big_numbers-3": "by design: native ints are 64-bit (JSON payloads): OverflowError",
    "corpus-fan_const_args-0": "by design: a fan-out slice cannot be None (the yield ABI's no-op)",
    **{f"corpus-same_actor_two_tries-{i}": _PER_ACTOR for i in range(4)},
}


def known(mode, case):
    return KNOWN.get(f"{mode}:{case_id(case)}") or KNOWN.get(case_id(case))


def case_id(case):
    return f"{'gen' if case.file == cases.GENERATED_FILE else 'corpus'}-{case.id}"


@pytest.mark.parametrize("case", ALL_CASES, ids=[case_id(c) for c in ALL_CASES])
def test_flow_gives_the_plain_python_result(flow_mesh, case):
    compile_errors, results, mode = flow_mesh
    want = expected(case)
    why = known(mode, case)
    if case.flow_name in compile_errors:
        if why:
            pytest.xfail(why)
        pytest.fail(f"the flow does not compile or start in the mesh, but runs as plain Python:\n"
                    f"{compile_errors[case.flow_name]}\n\n"
                    + cases.describe(SOURCES, case, want, {"not run": "refused by troupe up"}), pytrace=False)
    got = results[mesh_run.key(case)]
    same = reference.canonical(got) == reference.canonical(want)
    if why and not same:
        pytest.xfail(why)
    if why:
        pytest.fail(f"listed in KNOWN ({why}) but troupe now gives plain Python's result: "
                    "take it off the list", pytrace=False)
    if not same:
        pytest.fail(cases.describe(SOURCES, case, want, got), pytrace=False)
