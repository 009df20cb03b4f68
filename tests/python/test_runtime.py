"""Tests of the Python runtime (protocol.md sections 6 and 7) against real subprocesses."""

import copy
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, RUNTIME_DIR, RUNTIME_PY, RUNTIME_PYTHON, runtime_has_pydantic
from uds_http import ENVELOPE, UdsClient, call, envelope, invoke

import troupe_runtime

ABI_PATHS = REPO / "testdata" / "abi_paths.json"

ADVANCED_ROUTE = {"prev": ["a", "b"], "curr": "c", "next": ["d"]}


def expected_frame(payload, env=ENVELOPE, route=None):
    frame = {"payload": payload, "route": route or ADVANCED_ROUTE}
    if env.get("headers"):
        frame["headers"] = env["headers"]
    if env.get("status"):
        frame["status"] = env["status"]
    return frame


def run_script(sock, ops, env=None, **extra):
    payload = {"ops": ops}
    payload.update(extra)
    return invoke(sock, env or envelope(payload=payload))


def names(resp):
    return [name for name, _ in resp.events]


def error_of(resp):
    """details of the single SSE error event, checking the stream shape around it."""
    events = resp.events
    assert events[-1] == ("done", {}), events
    assert events[-2][0] == "error", events
    data = events[-2][1]
    assert data["error"] == "processing_error"
    assert not any(isinstance(d, dict) and "caught" in d.get("payload", {}) for _, d in events), (
        "an ABI error reached the generator: %r" % events
    )
    return data["details"]


# ---------------------------------------------------------------------------
# function handlers
# ---------------------------------------------------------------------------


def test_function_result_is_one_compact_frame(runtime):
    resp = invoke(runtime("rt_handlers.echo"), ENVELOPE)
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json == {"frames": [expected_frame({"q": 1})]}
    assert b" " not in resp.body, "JSON must use compact separators"


def test_function_at_last_actor_ends_route(runtime):
    env = envelope(route={"prev": [], "curr": "only", "next": []})
    resp = invoke(runtime("rt_handlers.add_one"), dict(env, payload={"n": 41}))
    assert resp.json["frames"] == [
        expected_frame({"n": 42}, env, {"prev": ["only"], "curr": "", "next": []})
    ]


@pytest.mark.parametrize("headers,status", [(None, None), ({}, {})])
def test_function_frame_omits_empty_headers_and_status(runtime, headers, status):
    env = envelope(headers=headers, status=status)
    frame = invoke(runtime("rt_handlers.echo"), env).json["frames"][0]
    assert frame == {"payload": {"q": 1}, "route": ADVANCED_ROUTE}


def test_function_returning_none_is_204(runtime):
    resp = invoke(runtime("rt_handlers.returns_none"), ENVELOPE)
    assert resp.status == 204
    assert resp.body == b""


def test_returned_list_is_one_payload(runtime):
    frames = invoke(runtime("rt_handlers.returns_list"), ENVELOPE).json["frames"]
    assert [f["payload"] for f in frames] == [[1, "two", {"three": 3}]]


@pytest.mark.parametrize("value", [0, "", [], {}, False])
def test_falsy_results_are_frames_not_204(runtime, value):
    resp = invoke(runtime("rt_handlers.returns_falsy"), envelope(payload={"value": value}))
    assert resp.status == 200
    assert resp.json["frames"][0]["payload"] == value


def test_async_function(runtime):
    resp = invoke(runtime("rt_handlers.async_echo"), ENVELOPE)
    assert resp.json == {"frames": [expected_frame({"async": True, "payload": {"q": 1}})]}


def test_async_function_none_is_204(runtime):
    assert invoke(runtime("rt_handlers.async_none"), ENVELOPE).status == 204


def test_async_function_error(runtime):
    resp = invoke(runtime("rt_handlers.async_raises"), ENVELOPE)
    assert resp.status == 500
    assert resp.json["details"]["type"] == "rt_handlers.CustomError"


def test_async_tasks_left_running_are_cancelled_after_each_call(runtime):
    sock = runtime("rt_handlers.async_leaves_task")
    first = invoke(sock, ENVELOPE).json["frames"][0]["payload"]
    second = invoke(sock, ENVELOPE).json["frames"][0]["payload"]
    assert first == {"started": 1, "cancelled": 0}
    assert second == {"started": 2, "cancelled": 1}


def test_sync_function_returning_coroutine_is_awaited(runtime):
    frames = invoke(runtime("rt_handlers.sync_returns_coroutine"), ENVELOPE).json["frames"]
    assert frames[0]["payload"] == {"async": True, "payload": {"q": 1}}


def test_class_method_handler_instantiated_once(runtime):
    sock = runtime("rt_handlers.Counter.handle")
    got = [invoke(sock, ENVELOPE).json["frames"][0]["payload"] for _ in range(3)]
    assert got == [{"n": 1, "instances": 1}, {"n": 2, "instances": 1}, {"n": 3, "instances": 1}]


def test_class_generator_methods(runtime):
    resp = invoke(runtime("rt_handlers.Counter.stream"), ENVELOPE)
    assert [f["payload"] for f in resp.frames] == [{"n": 1}]
    resp = invoke(runtime("rt_handlers.Counter.astream"), ENVELOPE)
    assert [f["payload"] for f in resp.frames] == [{"n": 1}, {"n": 2}]


def test_callable_object_with_generator_call(runtime):
    resp = invoke(runtime("rt_handlers.callable_gen"), ENVELOPE)
    assert resp.is_sse
    assert [f["payload"] for f in resp.frames] == [{"from": "callable object"}]


def test_function_hiding_a_generator_is_streamed(runtime):
    resp = invoke(runtime("rt_handlers.hidden_generator"), ENVELOPE)
    assert resp.is_sse
    assert names(resp) == ["downstream", "downstream", "done"]


# ---------------------------------------------------------------------------
# error details
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,etype,mro,message",
    [
        ("value", "ValueError", ["Exception"], "bad value 7"),
        ("custom", "rt_handlers.CustomError", ["rt_handlers.AppError", "Exception"], "custom failure"),
        ("key", "KeyError", ["LookupError", "Exception"], "'missing'"),
        ("nested", "rt_handlers.raises.<locals>.Local", ["ValueError", "Exception"], "local class"),
    ],
)
def test_function_error_details(runtime, kind, etype, mro, message):
    resp = invoke(runtime("rt_handlers.raises"), envelope(payload={"kind": kind, "n": 7}))
    assert resp.status == 500
    assert resp.headers["content-type"] == "application/json"
    body = resp.json
    assert body["error"] == "processing_error"
    details = body["details"]
    assert set(details) == {"message", "type", "mro", "traceback"}
    assert details["type"] == etype
    assert details["mro"] == mro
    assert details["message"] == message
    assert details["traceback"].startswith("Traceback (most recent call last):")
    assert "rt_handlers.py" in details["traceback"]
    assert details["traceback"].rstrip().endswith(message) or kind == "key"


@pytest.mark.parametrize("handler", ["rt_handlers.not_serialisable", "rt_handlers.returns_nan"])
def test_unserialisable_result_is_type_error_500(runtime, handler):
    resp = invoke(runtime(handler), ENVELOPE)
    assert resp.status == 500
    details = resp.json["details"]
    assert details["type"] == "TypeError"
    assert details["mro"] == ["Exception"]


@pytest.mark.parametrize("handler", ["rt_handlers.gen_unserialisable", "rt_handlers.gen_unserialisable_fly"])
def test_unserialisable_emit_or_fly_is_type_error_event(runtime, handler):
    resp = invoke(runtime(handler), ENVELOPE)
    assert names(resp) == ["downstream", "error", "done"]
    assert resp.frames[0]["payload"] == {"ok": 1}
    assert error_of(resp)["type"] == "TypeError"


# ---------------------------------------------------------------------------
# serialisation (protocol.md 6.8)
# ---------------------------------------------------------------------------

SERIAL_CASES = {
    "namedtuple": {"x": 1, "y": 2},
    "typed_namedtuple": {"left": 3, "right": "r"},
    "nested_namedtuple": {"pts": [{"x": 1, "y": 2}, [{"x": 3, "y": 4}, 5]], "pair": {"left": 1, "right": "a"}},
    "dataclass": {"name": "n", "when": "2024-01-02", "point": {"x": 5, "y": 6}, "tags": ["t"]},
    "date": "2024-01-02",
    "time": "03:04:05.000600",
    "datetime": "2024-01-02T03:04:05",
    "datetime_tz": "2024-01-02T03:04:05+02:00",
    "uuid": "12345678-1234-5678-1234-567812345678",
    "decimal": "1.10",
    "bytes": "AP9oaQ==",
    "bytearray": "YWI=",
    "set": [3],
    "frozenset": ["only"],
    "duck_v1": {"a": 1, "ts": "2024-01-02T03:04:05"},
    "mixed": {"d": "2024-01-02", "s": [{"x": 1, "y": 2}], "b": ["eA=="]},
    "pydantic_v2": {
        "a": 1,
        "when": "2024-01-02T03:04:05Z",
        "raw": "hi",
        "ident": "12345678-1234-5678-1234-567812345678",
    },
    "pydantic_v1": {"a": 2, "day": "2024-05-06"},
}


def _needs_pydantic(kind):
    if kind.startswith("pydantic") and not runtime_has_pydantic():
        pytest.skip("pydantic (with pydantic.v1) is not installed for %s" % RUNTIME_PYTHON)


@pytest.mark.parametrize("kind", sorted(SERIAL_CASES))
def test_function_result_serialisation(runtime, kind):
    _needs_pydantic(kind)
    resp = invoke(runtime("rt_handlers.serial"), envelope(payload={"kind": kind}))
    assert resp.status == 200, resp
    assert resp.json["frames"][0]["payload"] == {"value": SERIAL_CASES[kind]}


@pytest.mark.parametrize("kind", ["namedtuple", "dataclass", "mixed", "pydantic_v2"])
def test_generator_emit_and_fly_serialisation(runtime, kind):
    _needs_pydantic(kind)
    resp = invoke(runtime("rt_handlers.gen_serial"), envelope(payload={"kind": kind}))
    want = {"value": SERIAL_CASES[kind]}
    assert resp.events[0] == ("upstream", {"payload": want})
    assert resp.events[1][0] == "downstream"
    assert resp.events[1][1]["payload"] == want


def test_namedtuple_yield_is_emitted_as_object(runtime):
    resp = run_script(runtime("rt_handlers.script"), [["NAMEDTUPLE", "GET", ".id"]], report=False)
    assert resp.frames[0]["payload"] == {"x": "GET", "y": ".id"}


# ---------------------------------------------------------------------------
# generators: SSE shape
# ---------------------------------------------------------------------------


def test_generator_stream_shape_and_close(runtime):
    with UdsClient(runtime("rt_handlers.gen_two")) as client:
        resp = client.invoke(ENVELOPE)
        assert client.closed_by_server
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["connection"] == "close"
    assert "content-length" not in resp.headers
    assert resp.events == [
        ("downstream", expected_frame({"i": 1})),
        ("downstream", expected_frame({"i": 2})),
        ("done", {}),
    ]


def test_generator_emitting_nothing_sends_only_done(runtime):
    assert invoke(runtime("rt_handlers.gen_nothing"), ENVELOPE).events == [("done", {})]


def test_generator_return_value_is_ignored(runtime):
    assert names(invoke(runtime("rt_handlers.gen_returns_value"), ENVELOPE)) == ["downstream", "done"]


def test_generator_failing_before_yield(runtime):
    resp = invoke(runtime("rt_handlers.gen_raise_first"), ENVELOPE)
    assert resp.status == 200 and resp.is_sse
    assert names(resp) == ["error", "done"]
    details = error_of(resp)
    assert details["type"] == "rt_handlers.CustomError"
    assert details["mro"] == ["rt_handlers.AppError", "Exception"]
    assert details["message"] == "before any yield"


def test_generator_failing_after_emit_keeps_streamed_events(runtime):
    resp = invoke(runtime("rt_handlers.gen_raise_after_emit"), ENVELOPE)
    assert names(resp) == ["downstream", "upstream", "error", "done"]
    assert resp.events[1][1] == {"payload": {"partial": True}}
    assert error_of(resp)["type"] == "ValueError"


def test_async_generator_failure(runtime):
    resp = invoke(runtime("rt_handlers.agen_raises"), ENVELOPE)
    assert names(resp) == ["downstream", "error", "done"]
    assert error_of(resp)["type"] == "rt_handlers.CustomError"


# ---------------------------------------------------------------------------
# yield instruction set (both generator kinds)
# ---------------------------------------------------------------------------

SCRIPTS = ["rt_handlers.script", "rt_handlers.ascript"]


@pytest.fixture(params=SCRIPTS, ids=["sync", "async"])
def script(request, runtime):
    return runtime(request.param)


def results_of(resp):
    assert resp.events[-1] == ("done", {}), resp.events
    frames = resp.frames
    return frames[-1]["payload"]["results"]


def test_get_reads_the_context(script):
    ops = [
        ["GET", ".id"],
        ["GET", ".parent_id"],
        ["GET", ".route.prev"],
        ["GET", ".route.curr"],
        ["GET", ".route.next"],
        ["GET", ".route.next[0]"],
        ["GET", ".route.next[-1]"],
        ["GET", ".headers"],
        ["GET", ".headers.h1"],
        ["GET", ".status.phase"],
        ["GET", ".route"],
    ]
    resp = run_script(script, ops)
    assert results_of(resp) == [
        "env-1",
        "",
        ["a"],
        "b",
        ["c", "d"],
        "c",
        "d",
        {"h1": "v1"},
        "v1",
        "processing",
        {"prev": ["a"], "curr": "b", "next": ["c", "d"]},
    ]


def test_get_defaults_for_absent_parent_id_status_and_headers(script):
    env = envelope(
        status=None,
        headers=None,
        payload={"ops": [["GET", ".status"], ["GET", ".headers"], ["GET", ".parent_id"]]},
    )
    assert results_of(invoke(script, env)) == [{}, {}, ""]
    env = envelope(parent_id="p-0", payload={"ops": [["GET", ".parent_id"]]})
    assert results_of(invoke(script, env)) == ["p-0"]


def test_get_returns_a_deep_copy(script):
    ops = [["GET", ".headers"], ["MUTATE"], ["GET", ".headers"], ["GET", ".route.next"], ["MUTATE"], ["GET", ".route.next"]]
    assert results_of(run_script(script, ops)) == ["mutated", {"h1": "v1"}, "mutated", ["c", "d"]]


def test_set_deep_copies_the_value(script):
    ops = [["SET", ".headers.obj", {"k": [1]}], ["MUTATE_SET_VALUE"], ["GET", ".headers.obj"]]
    assert results_of(run_script(script, ops)) == [None, {"k": [1]}]


def test_set_route_next_between_emits_gives_different_routes(script):
    ops = [
        ["SET", ".route.next", ["x", "y"]],
        ["EMIT", {"child": 1}],
        ["SET", ".route.next", []],
        ["EMIT", {"child": 2}],
        ["SET", ".route.next[:0]", ["p"]],
        ["SET", ".route.next[999:]", ["q1", "q2"]],
        ["SET", ".route.next[1:3]", ["r"]],
        ["EMIT", {"child": 3}],
    ]
    frames = run_script(script, ops, report=False).frames
    assert [f["route"] for f in frames] == [
        {"prev": ["a", "b"], "curr": "x", "next": ["y"]},
        {"prev": ["a", "b"], "curr": "", "next": []},
        {"prev": ["a", "b"], "curr": "p", "next": ["r"]},
    ]


def test_headers_and_status_are_snapshotted_per_emit(script):
    ops = [
        ["EMIT", 1],
        ["SET", ".headers.h2", {"n": 2}],
        ["SET", ".status.phase", "custom"],
        ["EMIT", 2],
        ["DEL", ".headers.h1"],
        ["SET", ".headers.h2.n", 3],
        ["EMIT", 3],
    ]
    frames = run_script(script, ops, report=False).frames
    assert [f["headers"] for f in frames] == [{"h1": "v1"}, {"h1": "v1", "h2": {"n": 2}}, {"h2": {"n": 3}}]
    assert [f["status"]["phase"] for f in frames] == ["processing", "custom", "custom"]


def test_deleting_every_header_omits_headers(script):
    frames = run_script(script, [["DEL", ".headers.h1"], ["EMIT", 1]], report=False).frames
    assert frames == [{"payload": 1, "route": ADVANCED_ROUTE, "status": ENVELOPE["status"]}]


def test_deleting_status_omits_status(script):
    frames = run_script(script, [["DEL", ".status"], ["EMIT", 1]], report=False).frames
    assert "status" not in frames[0]
    assert frames[0]["headers"] == {"h1": "v1"}


def test_del_route_next_then_emit_fails(script, tmp_path):
    marker = tmp_path / "closed"
    resp = run_script(script, [["DEL", ".route.next"], ["EMIT", 1]], marker=str(marker))
    assert names(resp) == ["error", "done"]
    assert error_of(resp)["type"] == "KeyError"
    assert marker.read_text() == "closed"


def test_set_route_next_empty_then_emit_works(script):
    frames = run_script(script, [["SET", ".route.next", []], ["EMIT", 1]], report=False).frames
    assert frames[0]["route"] == {"prev": ["a", "b"], "curr": "", "next": []}


def test_del_route_next_index(script):
    frames = run_script(script, [["DEL", ".route.next[0]"], ["EMIT", 1]], report=False).frames
    assert frames[0]["route"] == {"prev": ["a", "b"], "curr": "d", "next": []}


def test_set_then_get(script):
    ops = [
        ["SET", ".headers.new", "v"],
        ["GET", ".headers.new"],
        ["SET", ".headers.a.b.c", 1],
        ["GET", ".headers.a"],
        ['SET', '.status["error.detail"]', "x"],
        ['GET', '.status["error.detail"]'],
        ["DEL", ".headers.new"],
        ["GET", ".headers"],
    ]
    assert results_of(run_script(script, ops)) == [
        None, "v", None, {"b": {"c": 1}}, None, "x", None, {"h1": "v1", "a": {"b": {"c": 1}}},
    ]


def test_fly_is_streamed_in_order_with_frames(script):
    ops = [["FLY", {"partial": True, "text": "a"}], ["EMIT", {"i": 1}], ["FLY", {"partial": True, "text": "b"}], ["EMIT", {"i": 2}]]
    resp = run_script(script, ops, report=False)
    assert resp.events == [
        ("upstream", {"payload": {"partial": True, "text": "a"}}),
        ("downstream", expected_frame({"i": 1})),
        ("upstream", {"payload": {"partial": True, "text": "b"}}),
        ("downstream", expected_frame({"i": 2})),
        ("done", {}),
    ]


@pytest.mark.parametrize(
    "op,payload",
    [
        (["RAW", "text"], "text"),
        (["RAW", 5], 5),
        (["RAW", 2.5], 2.5),
        (["RAW", True], True),
        (["RAW", False], False),
        (["RAW", [1, 2]], [1, 2]),
        (["RAW", {"GET": ".id"}], {"GET": ".id"}),
        (["TUPLE", "GET"], ["GET"]),
        (["TUPLE"], []),
    ],
)
def test_everything_else_is_emitted(script, op, payload):
    resp = run_script(script, [op])
    assert [f["payload"] for f in resp.frames] == [payload, {"results": [None]}]


def test_yield_none_is_a_no_op(script):
    resp = run_script(script, [["RAW", None], ["GET", ".id"]])
    assert [f["payload"] for f in resp.frames] == [{"results": [None, "env-1"]}]


@pytest.mark.parametrize(
    "ops,etype",
    [
        ([["SET", ".id", "x"]], "PermissionError"),
        ([["SET", ".parent_id", "x"]], "PermissionError"),
        ([["SET", ".route.prev", []]], "PermissionError"),
        ([["SET", ".route.curr", "x"]], "PermissionError"),
        ([["SET", ".route", {}]], "PermissionError"),
        ([["SET", ".payload", 1]], "PermissionError"),
        ([["SET", '.route["next"]', []]], "PermissionError"),
        ([["DEL", ".id"]], "PermissionError"),
        ([["DEL", ".route.prev[0]"]], "PermissionError"),
        ([["GET", ".payload"]], "KeyError"),
        ([["GET", ".route.next[9]"]], "IndexError"),
        ([["GET", ".route.curr.x"]], "TypeError"),
        ([["GET", ".route.next[0:1]"]], "ValueError"),
        ([["DEL", ".route.next[0:1]"]], "ValueError"),
        ([["GET", ".route.next[0]x"]], "ValueError"),
        ([["GET", "route"]], "ValueError"),
        ([["TUPLE", "GET", 5]], "ValueError"),
        ([["SET", ".headers..x", 1]], "ValueError"),
        ([["SET", ".route.next[0:1]", "x"]], "TypeError"),
        ([["TUPLE", "SET", ".headers.x"]], "RuntimeError"),
        ([["TUPLE", "BOGUS", 1]], "RuntimeError"),
        ([["TUPLE", "GET", ".id", "extra"]], "RuntimeError"),
        ([["TUPLE", 1, 2]], "RuntimeError"),
    ],
)
def test_abi_errors_end_the_call_and_are_not_thrown_into_the_generator(script, tmp_path, ops, etype):
    marker = tmp_path / "closed"
    resp = run_script(script, [["EMIT", {"before": True}]] + ops + [["EMIT", {"after": True}]], marker=str(marker))
    assert names(resp) == ["downstream", "error", "done"], resp.events
    assert resp.frames[0]["payload"] == {"before": True}
    details = error_of(resp)
    assert details["type"] == etype, details
    assert marker.read_text() == "closed", "the runtime must close the generator"


@pytest.mark.parametrize(
    "ops",
    [
        [["SET", ".route.next", [1]], ["EMIT", 1]],
        [["SET", ".route.next", "c"], ["EMIT", 1]],
        [["SET", ".headers", "h"], ["EMIT", 1]],
        [["SET", ".status", [1]], ["EMIT", 1]],
    ],
)
def test_emit_with_malformed_context_is_type_error(script, ops):
    resp = run_script(script, ops, report=False)
    assert names(resp) == ["error", "done"]
    assert error_of(resp)["type"] == "TypeError"


def test_writable_paths(script):
    ops = [
        ["SET", ".headers.x", 1],
        ["SET", ".status.reason", "r"],
        ["SET", ".route.next[0]", "z"],
        ["DEL", ".headers.x"],
        ["GET", ".route.next"],
    ]
    assert results_of(run_script(script, ops)) == [None, None, None, None, ["z", "d"]]


# ---------------------------------------------------------------------------
# path grammar: shared conformance vectors and unit checks
# ---------------------------------------------------------------------------


def _abi_cases():
    if not ABI_PATHS.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="testdata/abi_paths.json does not exist yet"))]
    cases = json.loads(ABI_PATHS.read_text())["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.mark.parametrize("case", _abi_cases())
def test_abi_path_conformance(case):
    doc = copy.deepcopy(case["doc"])
    op = case["op"]

    def run():
        if op == "get":
            return troupe_runtime.path_get(doc, case["path"])
        if op == "set":
            return troupe_runtime.path_set(doc, case["path"], copy.deepcopy(case["value"]))
        assert op == "del", op
        return troupe_runtime.path_del(doc, case["path"])

    if "error" in case:
        with pytest.raises(Exception) as info:
            run()
        assert type(info.value).__name__ == case["error"], info.value
        return
    result = run()
    if "result" in case:
        assert result == case["result"]
    if "after" in case:
        assert doc == case["after"]


def test_parse_path_segments():
    assert troupe_runtime.parse_path('.a["b.c"][0][1:][:-2][:]') == (
        ("key", "a"),
        ("key", "b.c"),
        ("idx", 0),
        ("slice", 1, None),
        ("slice", None, -2),
        ("slice", None, None),
    )
    with pytest.raises(ValueError, match="unexpected character"):
        troupe_runtime.parse_path(".a!")


# ---------------------------------------------------------------------------
# HTTP surface
# ---------------------------------------------------------------------------


def test_healthz(runtime):
    resp = call(runtime("rt_handlers.echo"), "GET", "/healthz")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json == {"status": "ready"}


@pytest.mark.parametrize(
    "method,target", [("GET", "/nope"), ("POST", "/other"), ("GET", "/invoke"), ("POST", "/healthz"), ("POST", "/invoke/x")]
)
def test_other_paths_are_404(runtime, method, target):
    resp = call(runtime("rt_handlers.echo"), method, target, b"{}" if method == "POST" else None)
    assert resp.status == 404


def test_query_string_is_ignored(runtime):
    assert call(runtime("rt_handlers.echo"), "POST", "/invoke?x=1", ENVELOPE).status == 200


def _route(**kw):
    r = {"prev": [], "curr": "b", "next": []}
    r.update(kw)
    return r


@pytest.mark.parametrize(
    "body,etype",
    [
        (b"", "ValueError"),
        (b"{not json", "json.decoder.JSONDecodeError"),
        (b"\xff\xfe\xfa", "UnicodeDecodeError"),
        (b"[1, 2]", "ValueError"),
        (json.dumps({"route": _route()}).encode(), "ValueError"),
        (json.dumps({"payload": 1}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": "b"}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": _route(prev=None)}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": {"curr": "b", "next": []}}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": _route(curr=3)}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": _route(next="c")}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": _route(), "headers": []}).encode(), "ValueError"),
        (json.dumps({"payload": 1, "route": _route(), "id": 5}).encode(), "ValueError"),
    ],
)
def test_invalid_envelopes_are_400(runtime, body, etype):
    resp = call(runtime("rt_handlers.echo"), "POST", "/invoke", body)
    assert resp.status == 400
    assert resp.json["error"] == "msg_parsing_error"
    details = resp.json["details"]
    assert details["type"] == etype
    assert set(details) == {"message", "type", "mro", "traceback"}
    assert details["message"]


# Asya's runtime (src/asya-runtime/asya_runtime.py, _validate_envelope) words these
# errors; protocol.md 1 promises byte-compatible bodies, so the texts are pinned here.
@pytest.mark.parametrize(
    "envelope_json,message",
    [
        ([1, 2], "Missing required field 'payload' in envelope"),
        ({"route": _route()}, "Missing required field 'payload' in envelope"),
        ({"payload": 1}, "Missing required field 'route' in envelope"),
        ({"payload": 1, "route": "b"}, "Field 'route' must be a dict"),
        ({"payload": 1, "route": {"curr": "b", "next": []}}, "Missing required field 'prev' in route"),
        ({"payload": 1, "route": _route(prev=None)}, "Field 'route.prev' must be a list"),
        ({"payload": 1, "route": {"prev": [], "next": []}}, "Missing required field 'curr' in route"),
        ({"payload": 1, "route": _route(curr=3)}, "Field 'route.curr' must be a string"),
        ({"payload": 1, "route": {"prev": [], "curr": "b"}}, "Missing required field 'next' in route"),
        ({"payload": 1, "route": _route(next="c")}, "Field 'route.next' must be a list"),
        ({"payload": 1, "route": _route(), "headers": []}, "Field 'headers' must be a dict"),
        ({"payload": 1, "route": _route(), "id": 5}, "Field 'id' must be a string"),
    ],
)
def test_validation_messages_are_asyas_word_for_word(runtime, envelope_json, message):
    resp = call(runtime("rt_handlers.echo"), "POST", "/invoke", json.dumps(envelope_json).encode())
    assert resp.status == 400
    assert resp.json["error"] == "msg_parsing_error"
    assert resp.json["details"]["message"] == message
    assert resp.json["details"]["type"] == "ValueError"


def test_unknown_top_level_fields_are_accepted(runtime):
    env = envelope(extra_field={"x": 1})
    assert invoke(runtime("rt_handlers.echo"), env).json == {"frames": [expected_frame({"q": 1})]}


def test_validation_disabled_accepts_loose_envelopes(runtime):
    sock = runtime("rt_handlers.echo", ASYA_ENABLE_VALIDATION="false")
    resp = call(sock, "POST", "/invoke", {"payload": {"a": 1}})
    assert resp.json == {"frames": [{"payload": {"a": 1}, "route": {"prev": [""], "curr": "", "next": []}}]}
    assert call(sock, "POST", "/invoke", {"id": "x"}).status == 204
    assert call(sock, "POST", "/invoke", b"{bad").status == 400


def test_keep_alive_serves_many_requests_on_one_connection(runtime):
    sock = runtime("rt_handlers.raises")
    with UdsClient(sock) as client:
        for n in range(3):
            resp = client.invoke(envelope(payload={"kind": "value", "n": n}))
            assert resp.status == 500 and resp.json["details"]["message"] == "bad value %d" % n
        assert client.request("GET", "/healthz").status == 200
        assert client.request("POST", "/invoke", b"").status == 400
        assert client.request("GET", "/missing").status == 404
        assert client.invoke(envelope(payload={"kind": "custom"})).status == 500
        assert not client.closed_by_server


def test_keep_alive_json_and_204(runtime):
    with UdsClient(runtime("rt_handlers.echo")) as client:
        bodies = [client.invoke(envelope(payload={"i": i})).json for i in range(5)]
        assert [b["frames"][0]["payload"] for b in bodies] == [{"i": i} for i in range(5)]
        assert not client.closed_by_server
    with UdsClient(runtime("rt_handlers.returns_none")) as client:
        assert [client.invoke(ENVELOPE).status for _ in range(3)] == [204, 204, 204]


def test_connection_close_and_http10_close(runtime):
    sock = runtime("rt_handlers.echo")
    with UdsClient(sock) as client:
        resp = client.invoke(ENVELOPE, headers={"Connection": "close"})
        assert resp.status == 200 and resp.headers["connection"] == "close"
        assert client.closed_by_server
    with UdsClient(sock) as client:
        resp = client.invoke(ENVELOPE, version="HTTP/1.0")
        assert resp.status == 200 and client.closed_by_server


def test_idle_keep_alive_connection_does_not_block_others(runtime):
    sock = runtime("rt_handlers.echo")
    with UdsClient(sock) as idle:
        assert idle.invoke(ENVELOPE).status == 200
        with UdsClient(sock, timeout=5) as other:
            assert other.invoke(ENVELOPE).status == 200
        assert idle.invoke(ENVELOPE).status == 200


def test_pipelined_requests(runtime):
    body = json.dumps(ENVELOPE).encode()
    one = b"POST /invoke HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with UdsClient(runtime("rt_handlers.echo")) as client:
        client.send_raw(one + one + b"GET /healthz HTTP/1.1\r\n\r\n")
        assert client.read_response().status == 200
        assert client.read_response().status == 200
        assert client.read_response().json == {"status": "ready"}


def test_chunked_request_body(runtime):
    body = json.dumps(ENVELOPE).encode()
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    with UdsClient(runtime("rt_handlers.echo")) as client:
        client.send_raw(b"POST /invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        assert client.read_response().json == {"frames": [expected_frame({"q": 1})]}
        assert client.invoke(ENVELOPE).status == 200


def test_expect_100_continue(runtime):
    body = json.dumps(ENVELOPE).encode()
    with UdsClient(runtime("rt_handlers.echo")) as client:
        client.send_raw(b"POST /invoke HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.05)
        assert client.sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send_raw(body)
        assert client.read_response().status == 200


def test_body_split_across_writes(runtime):
    body = json.dumps(ENVELOPE).encode()
    with UdsClient(runtime("rt_handlers.echo")) as client:
        client.send_raw(b"POST /invoke HTTP/1.1\r\nContent-")
        time.sleep(0.02)
        client.send_raw(b"Length: %d\r\n\r\n%s" % (len(body), body[:5]))
        time.sleep(0.02)
        client.send_raw(body[5:])
        assert client.read_response().json == {"frames": [expected_frame({"q": 1})]}


def test_large_payload_round_trip(runtime):
    payload = {"blob": "x" * (4 * 1024 * 1024), "items": list(range(10000))}
    resp = invoke(runtime("rt_handlers.echo"), envelope(payload=payload))
    assert resp.json["frames"][0]["payload"] == payload


def test_malformed_request_line_is_400_and_closes(runtime):
    with UdsClient(runtime("rt_handlers.echo")) as client:
        client.send_raw(b"garbage\r\n\r\n")
        resp = client.read_response()
        assert resp.status == 400 and client.closed_by_server


def test_client_gone_mid_stream_does_not_stop_runtime(runtime):
    sock = runtime("rt_handlers.gen_two")
    client = UdsClient(sock)
    body = json.dumps(ENVELOPE).encode()
    client.send_raw(b"POST /invoke HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    client.close()
    assert names(invoke(sock, ENVELOPE)) == ["downstream", "downstream", "done"]


# ---------------------------------------------------------------------------
# decorators (ASYA_IGNORE_DECORATORS)
# ---------------------------------------------------------------------------


def test_decorators_kept_by_default(runtime):
    payload = invoke(runtime("rt_handlers.decorated"), ENVELOPE).frames[0]["payload"]
    assert payload == {"wrapped_by": "my_retry", "inner": {"plain": True}}


@pytest.mark.parametrize("ignore", ["my_retry", "rt_handlers.my_retry", " other , my_retry "])
def test_ignored_decorator_is_unwrapped(runtime, ignore):
    resp = invoke(runtime("rt_handlers.decorated", ASYA_IGNORE_DECORATORS=ignore), ENVELOPE)
    assert resp.frames[0]["payload"] == {"plain": True}


def test_only_named_decorators_are_unwrapped(runtime):
    sock = runtime("rt_handlers.double_decorated", ASYA_IGNORE_DECORATORS="my_timeout")
    assert invoke(sock, ENVELOPE).frames[0]["payload"] == {"wrapped_by": "my_retry", "inner": {"plain": True}}
    sock = runtime("rt_handlers.double_decorated", ASYA_IGNORE_DECORATORS="my_timeout,my_retry")
    assert invoke(sock, ENVELOPE).frames[0]["payload"] == {"plain": True}


def test_unwrapped_generator_is_streamed(runtime):
    resp = invoke(runtime("rt_handlers.decorated_gen", ASYA_IGNORE_DECORATORS="my_retry"), ENVELOPE)
    assert resp.is_sse and resp.frames[0]["payload"] == {"plain": True}


# ---------------------------------------------------------------------------
# process lifecycle
# ---------------------------------------------------------------------------


def test_ready_file_socket_mode_and_sigterm_cleanup(spawn):
    proc = spawn("rt_handlers.echo").wait_ready()
    assert proc.ready.read_text() == "ready"
    st = os.stat(proc.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert invoke(proc.socket, ENVELOPE).status == 200
    rc, _out, _err = proc.stop(signal.SIGTERM)
    assert rc == 0
    assert not proc.ready.exists()
    assert not os.path.exists(proc.socket)


def test_sigint_cleanup_with_open_connection(spawn):
    proc = spawn("rt_handlers.echo").wait_ready()
    with UdsClient(proc.socket) as client:
        assert client.invoke(ENVELOPE).status == 200
        rc, _out, _err = proc.stop(signal.SIGINT)
    assert rc == 0
    assert not proc.ready.exists() and not os.path.exists(proc.socket)


def _start_slow_call(spawn, seconds, env=None):
    proc = spawn("rt_handlers.slow", env).wait_ready()
    client = UdsClient(proc.socket)
    body = json.dumps(envelope(payload={"seconds": seconds})).encode()
    client.send_raw(b"POST /invoke HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.2)
    return proc, client


def test_sigterm_during_a_call_lets_it_finish(spawn):
    """A pod's stop signal: the call in progress is answered, then the runtime exits 0."""
    proc, client = _start_slow_call(spawn, 1.0)
    proc.proc.send_signal(signal.SIGTERM)
    resp = client.read_response()
    client.close()
    assert resp.status == 200
    assert resp.frames[0]["payload"] == {"slept": True}
    assert proc.proc.wait(10) == 0
    assert not proc.ready.exists() and not os.path.exists(proc.socket)


def test_a_call_past_the_shutdown_grace_is_ended(spawn):
    proc, client = _start_slow_call(spawn, 30, {"TROUPE_SHUTDOWN_GRACE": "500ms"})
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    proc.proc.wait(10)
    client.close()
    assert proc.proc.returncode == -signal.SIGALRM
    assert time.monotonic() - started < 5
    assert not proc.ready.exists() and not os.path.exists(proc.socket)


def test_a_second_sigterm_stops_at_once(spawn):
    proc, client = _start_slow_call(spawn, 30)
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    started = time.monotonic()
    rc, _out, _err = proc.stop(signal.SIGTERM)
    client.close()
    assert rc == 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["0o600", "640", "0o660"])
def test_socket_chmod(spawn, mode):
    proc = spawn("rt_handlers.echo", {"ASYA_SOCKET_CHMOD": mode}).wait_ready()
    assert stat.S_IMODE(os.stat(proc.socket).st_mode) == int(mode, 8)


def test_empty_socket_chmod_skips_chmod(spawn):
    umask = os.umask(0)
    os.umask(umask)
    proc = spawn("rt_handlers.echo", {"ASYA_SOCKET_CHMOD": ""}).wait_ready()
    assert stat.S_IMODE(os.stat(proc.socket).st_mode) == 0o777 & ~umask


def test_invalid_socket_chmod_exits_1(spawn):
    proc = spawn("rt_handlers.echo", {"ASYA_SOCKET_CHMOD": "rw-rw-rw-"})
    assert proc.proc.wait(timeout=20) == 1
    _rc, _out, err = proc.stop()
    assert "ASYA_SOCKET_CHMOD" in err


def test_envelope_handler_mode_fails_fast_naming_the_setting(spawn):
    """Asya's envelope mode is not implemented: handing such a handler the payload would
    corrupt its output, so the runtime refuses to start (exit 2) and says what to do."""
    proc = spawn("rt_handlers.echo", {"ASYA_HANDLER_MODE": "envelope"})
    assert proc.proc.wait(timeout=20) == 2
    _rc, _out, err = proc.stop()
    assert "ASYA_HANDLER_MODE=envelope" in err and "remove the setting" in err, err
    assert not os.path.exists(proc.socket)


def test_payload_handler_mode_is_honoured_with_a_deprecation_warning(spawn):
    proc = spawn("rt_handlers.echo", {"ASYA_HANDLER_MODE": "payload"}).wait_ready()
    assert invoke(proc.socket, ENVELOPE).status == 200
    _rc, _out, err = proc.stop()
    assert "ASYA_HANDLER_MODE=payload is deprecated" in err, err


def test_custom_socket_name_and_stale_socket(spawn, tmp_path):
    stale = tmp_path / "custom.sock"
    stale.write_text("stale")
    proc = spawn("rt_handlers.echo", {"ASYA_SOCKET_NAME": "custom.sock"}, sock_dir=tmp_path).wait_ready()
    assert proc.socket == str(stale)
    assert stat.S_ISSOCK(os.stat(proc.socket).st_mode)
    assert invoke(proc.socket, ENVELOPE).status == 200


def test_creates_missing_socket_dir(spawn, tmp_path):
    proc = spawn("rt_handlers.echo", sock_dir=tmp_path / "a" / "b").wait_ready()
    assert invoke(proc.socket, ENVELOPE).status == 200


def test_state_proxy_mounts_are_ignored_with_warning(spawn):
    proc = spawn("rt_handlers.echo", {"ASYA_STATE_PROXY_MOUNTS": "m:/state:write=buffered"}).wait_ready()
    assert invoke(proc.socket, ENVELOPE).status == 200
    _rc, _out, err = proc.stop()
    assert "ASYA_STATE_PROXY_MOUNTS" in err


@pytest.mark.parametrize(
    "level,info_logged,warning_logged",
    [("DEBUG", True, True), ("INFO", True, True), ("WARN", False, True), ("ERROR", False, False)],
)
def test_log_level(spawn, level, info_logged, warning_logged):
    env = {"ASYA_LOG_LEVEL": level, "ASYA_STATE_PROXY_MOUNTS": "m:/s:write=buffered"}
    proc = spawn("rt_handlers.echo", env).wait_ready()
    _rc, _out, err = proc.stop()
    assert ("runtime ready" in err) == info_logged, err
    assert ("ASYA_STATE_PROXY_MOUNTS" in err) == warning_logged, err


def _expect_load_failure(spawn, handler, *needles, env=None):
    proc = spawn(handler, env)
    rc = proc.proc.wait(timeout=20)
    _, _out, err = proc.stop()
    assert rc == 1, err
    for needle in needles:
        assert needle in err, "%r not in stderr:\n%s" % (needle, err)
    assert not proc.ready.exists()
    assert not os.path.exists(proc.socket), "socket must only be bound after the handler loaded"
    return err


@pytest.mark.parametrize(
    "handler,needles",
    [
        ("", ["ASYA_HANDLER is not set"]),
        ("nodots", ["'nodots'", "not a valid handler string"]),
        ("rt_handlers.echo;rm", ["not a valid handler string"]),
        ("rt_handlers.missing_fn", ["rt_handlers.missing_fn", "has no attribute 'missing_fn'"]),
        ("no_such_module_xyz.func", ["no_such_module_xyz.func", "'no_such_module_xyz'", "ModuleNotFoundError"]),
        ("pkg_nope.sub.Class.method", ["'pkg_nope'", "ModuleNotFoundError"]),
        ("rt_handlers.NeedsArg.handle", ["rt_handlers.NeedsArg", "required", "TypeError", "Traceback"]),
        ("rt_handlers.BrokenInit.handle", ["BrokenInit", "init exploded", "Traceback"]),
        ("rt_handlers.Counter.missing", ["has no method 'missing'"]),
        ("rt_handlers.Counter.not_callable", ["Counter.not_callable", "'rt_handlers'", "not callable"]),
        ("rt_handlers.echo.extra", ["is not a class"]),
        ("rt_handlers.a.b.c", ["neither function nor Class.method"]),
    ],
)
def test_load_failures_exit_1(spawn, handler, needles):
    _expect_load_failure(spawn, handler, *needles)


def test_module_failing_at_import(spawn, handlers_dir):
    (handlers_dir / "rt_broken_import.py").write_text("x = 1 / 0\n\ndef handle(p):\n    return p\n")
    _expect_load_failure(
        spawn, "rt_broken_import.handle", "'rt_broken_import'", "ZeroDivisionError", "Traceback", "rt_broken_import.py"
    )


def test_module_with_missing_dependency(spawn, handlers_dir):
    (handlers_dir / "rt_missing_dep.py").write_text("import definitely_missing_dependency\n\ndef handle(p):\n    return p\n")
    _expect_load_failure(spawn, "rt_missing_dep.handle", "'rt_missing_dep'", "definitely_missing_dependency")


def test_stale_ready_file_is_removed_before_loading(spawn, tmp_path):
    (tmp_path / "runtime-ready").write_text("ready")
    proc = spawn("rt_handlers.missing_fn", sock_dir=tmp_path)
    assert proc.proc.wait(timeout=20) == 1
    assert not (tmp_path / "runtime-ready").exists()


def test_sigterm_during_slow_import_exits_0(spawn, handlers_dir):
    importing = handlers_dir / "rt_slow_import.started"
    (handlers_dir / "rt_slow_import.py").write_text(
        f"import time\nopen({str(importing)!r}, 'w').close()\ntime.sleep(30)\n\n"
        "def handle(p):\n    return p\n"
    )
    proc = spawn("rt_slow_import.handle")
    # Signal only once the import is under way: a fixed sleep raced the interpreter's own
    # start on a loaded machine (SIGTERM before the runtime installed its handler).
    deadline = time.monotonic() + 30
    while not importing.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert importing.exists(), "the runtime never started importing the handler"
    started = time.monotonic()
    rc, _out, err = proc.stop(signal.SIGTERM)
    assert rc == 0, err
    assert time.monotonic() - started < 5
    assert not proc.ready.exists() and not os.path.exists(proc.socket)


def test_handler_from_working_directory(spawn, tmp_path):
    (tmp_path / "cwd_handler.py").write_text("def handle(p):\n    return {'cwd': True}\n")
    # The runtime's cwd is its socket dir (see conftest), which is not on PYTHONPATH.
    proc = spawn("cwd_handler.handle", sock_dir=tmp_path).wait_ready()
    assert invoke(proc.socket, ENVELOPE).frames[0]["payload"] == {"cwd": True}


def test_import_has_no_side_effects(tmp_path):
    env = dict(os.environ, ASYA_HANDLER="nope.nope", ASYA_SOCKET_DIR=str(tmp_path / "s"), PYTHONPATH=str(RUNTIME_DIR))
    code = (
        "import logging, signal, troupe_runtime\n"
        "assert not logging.getLogger().handlers\n"
        "assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n"
        "print('ok')\n"
    )
    res = subprocess.run([RUNTIME_PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok" and res.stderr == ""
    assert not (tmp_path / "s").exists()


def test_runtime_file_is_stdlib_only():
    source = RUNTIME_PY.read_text()
    import ast

    tree = ast.parse(source)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None:
        pytest.skip("needs Python 3.10+ for sys.stdlib_module_names")
    assert modules <= set(stdlib), modules - set(stdlib)


def test_check_handler_resolves_without_instantiating(tmp_path, monkeypatch):
    import troupe_runtime as rt

    (tmp_path / "chk_mod.py").write_text(
        "LOADS = []\n"
        "class Model:\n"
        "    def __init__(self, size=1):\n"
        "        LOADS.append(size)\n"
        "    def run(self, p):\n"
        "        return p\n"
        "class Needs:\n"
        "    def __init__(self, path):\n"
        "        pass\n"
        "    def run(self, p):\n"
        "        return p\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rt.check_handler("chk_mod.Model.run")
    import chk_mod

    assert chk_mod.LOADS == [], "the check must not load the model"
    with pytest.raises(rt.HandlerLoadError, match="no method 'nope'"):
        rt.check_handler("chk_mod.Model.nope")
    with pytest.raises(rt.HandlerLoadError, match="parameter\\(s\\) path have no default"):
        rt.check_handler("chk_mod.Needs.run")
    with pytest.raises(rt.HandlerLoadError, match="cannot import module"):
        rt.check_handler("no_such_module_xyz.f")


# -- issue 9: start errors, relayed logs, memory limit -----------------------------------------------

def _load_error(tmp_path, monkeypatch, source):
    (tmp_path / "init_mod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("init_mod", None)
    with pytest.raises(troupe_runtime.HandlerLoadError) as err:
        troupe_runtime.load_handler("init_mod.Model.run")
    return str(err.value)


def test_init_hint_only_for_a_missing_argument(tmp_path, monkeypatch):
    text = _load_error(tmp_path, monkeypatch, "class Model:\n    def __init__(self, p='x'):\n"
                       "        raise ValueError('no weights')\n    def run(self, p):\n        return p\n")
    assert "ValueError: no weights" in text and "needs a default" not in text, text
    text = _load_error(tmp_path, monkeypatch, "def load(a, b):\n    return a\n"
                       "class Model:\n    def __init__(self, p='x'):\n        load(p)\n"
                       "    def run(self, p):\n        return p\n")
    assert "TypeError" in text and "needs a default" in text, text


def test_relayed_log_lines_have_no_timestamp(spawn):
    proc = spawn("rt_handlers.echo", {"TROUPE_LOG_RELAY": "1", "ASYA_LOG_LEVEL": "INFO"}).wait_ready()
    _code, _out, err = proc.stop()
    ready = [line for line in err.splitlines() if "runtime ready" in line]
    assert ready and ready[0].startswith("INFO troupe.runtime: runtime ready"), err


def test_memory_limit_turns_a_leak_into_a_memory_error_and_exits(spawn, handlers_dir):
    (handlers_dir / "leak_mod.py").write_text(
        "def leak(p):\n    hold = [bytearray(8 << 20) for _ in range(p['mb'] // 8)]\n    return len(hold)\n")
    proc = spawn("leak_mod.leak", {"TROUPE_MEMORY_LIMIT": str(128 << 20),
                                   "TROUPE_MEMORY_LIMIT_TEXT": "128Mi"}).wait_ready()
    resp = invoke(proc.socket, envelope(payload={"mb": 16}))
    assert resp.status == 200, resp.body
    resp = invoke(proc.socket, envelope(payload={"mb": 512}))
    assert resp.status == 500, resp.body
    details = resp.json["details"]
    assert (details["type"], details["message"]) == ("MemoryError", "exceeded resources.limits.memory 128Mi")
    assert proc.proc.wait(10) == troupe_runtime.EXIT_OVER_MEMORY
