"""Handlers used by test_runtime.py. Copied into a temp dir on the runtimes' PYTHONPATH.

They never import Troupe: the runtime must run Asya-style handlers unchanged.
"""

import asyncio
import collections
import dataclasses
import datetime
import decimal
import functools
import os
import typing
import uuid

# --- function handlers -------------------------------------------------------


def echo(payload):
    return payload


def returns_none(payload):
    return None


def add_one(payload):
    return {"n": payload["n"] + 1}


def returns_list(payload):
    return [1, "two", {"three": 3}]


def returns_falsy(payload):
    return payload["value"]


class AppError(Exception):
    pass


class CustomError(AppError):
    pass


def raises(payload):
    kind = payload.get("kind", "value")
    if kind == "value":
        raise ValueError("bad value %s" % payload.get("n"))
    if kind == "custom":
        raise CustomError("custom failure")
    if kind == "key":
        return {}["missing"]
    if kind == "nested":
        class Local(ValueError):
            pass

        raise Local("local class")
    raise RuntimeError("unknown kind")


def not_serialisable(payload):
    return {"x": object()}


def returns_nan(payload):
    return {"x": float("nan")}


def gen_unserialisable(payload):
    yield {"ok": 1}
    yield {"x": object()}
    yield {"never": True}


def gen_unserialisable_fly(payload):
    yield {"ok": 1}
    yield "FLY", {"x": 1j}
    yield {"never": True}


# --- serialisation -----------------------------------------------------------

Point = collections.namedtuple("Point", ["x", "y"])


class Pair(typing.NamedTuple):
    left: int
    right: str


@dataclasses.dataclass
class Item:
    name: str
    when: datetime.date
    point: Point
    tags: typing.List[str] = dataclasses.field(default_factory=list)


class DuckV1:
    """Shaped like a pydantic v1 model: __fields__ plus .dict()."""

    __fields__ = {"a": None, "ts": None}

    def __init__(self):
        self.a = 1
        self.ts = datetime.datetime(2024, 1, 2, 3, 4, 5)

    def dict(self):
        return {"a": self.a, "ts": self.ts}


def _pydantic_values(kind):
    import pydantic

    if kind == "pydantic_v2":

        class Model(pydantic.BaseModel):
            a: int
            when: datetime.datetime
            raw: bytes
            ident: uuid.UUID

        return Model(
            a=1,
            when=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            raw=b"hi",
            ident=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        )
    from pydantic import v1

    class V1Model(v1.BaseModel):
        a: int
        day: datetime.date

    return V1Model(a=2, day=datetime.date(2024, 5, 6))


def serial(payload):
    kind = payload["kind"]
    values = {
        "namedtuple": lambda: Point(1, 2),
        "typed_namedtuple": lambda: Pair(3, "r"),
        "nested_namedtuple": lambda: {"pts": [Point(1, 2), (Point(3, 4), 5)], "pair": Pair(1, "a")},
        "dataclass": lambda: Item("n", datetime.date(2024, 1, 2), Point(5, 6), ["t"]),
        "date": lambda: datetime.date(2024, 1, 2),
        "time": lambda: datetime.time(3, 4, 5, 600),
        "datetime": lambda: datetime.datetime(2024, 1, 2, 3, 4, 5),
        "datetime_tz": lambda: datetime.datetime(
            2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        "uuid": lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": lambda: decimal.Decimal("1.10"),
        "bytes": lambda: b"\x00\xffhi",
        "bytearray": lambda: bytearray(b"ab"),
        "set": lambda: {3},
        "frozenset": lambda: frozenset(["only"]),
        "duck_v1": DuckV1,
        "pydantic_v2": lambda: _pydantic_values("pydantic_v2"),
        "pydantic_v1": lambda: _pydantic_values("pydantic_v1"),
        "mixed": lambda: {"d": datetime.date(2024, 1, 2), "s": {Point(1, 2)}, "b": [b"x"]},
    }
    return {"value": values[kind]()}


def gen_serial(payload):
    """The same values, but emitted by a generator (and sent as FLY)."""
    result = serial(payload)
    yield "FLY", result
    yield result


# --- async functions ---------------------------------------------------------


async def async_echo(payload):
    await asyncio.sleep(0)
    return {"async": True, "payload": payload}


async def async_none(payload):
    await asyncio.sleep(0)
    return None


async def async_raises(payload):
    await asyncio.sleep(0)
    raise CustomError("async failure")


_LEFTOVER = {"cancelled": 0, "started": 0}


async def async_leaves_task(payload):
    """Starts a task that never ends; reports how many earlier ones were cancelled."""

    async def forever():
        _LEFTOVER["started"] += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _LEFTOVER["cancelled"] += 1
            raise

    asyncio.get_running_loop().create_task(forever())
    await asyncio.sleep(0)
    return dict(_LEFTOVER)


def sync_returns_coroutine(payload):
    """A plain function wrapping an async one (e.g. an unmarked decorator)."""
    return async_echo(payload)


# --- classes ------------------------------------------------------------------


class Counter:
    instances = 0

    def __init__(self, start=0):
        Counter.instances += 1
        self.n = start

    def handle(self, payload):
        self.n += 1
        return {"n": self.n, "instances": Counter.instances}

    def stream(self, payload):
        self.n += 1
        yield {"n": self.n}

    async def astream(self, payload):
        await asyncio.sleep(0)
        yield {"n": 1}
        yield {"n": 2}

    not_callable = 5


class NeedsArg:
    def __init__(self, required):
        self.required = required

    def handle(self, payload):
        return payload


class BrokenInit:
    def __init__(self):
        raise RuntimeError("init exploded")

    def handle(self, payload):
        return payload


# --- generators ------------------------------------------------------------------


def gen_two(payload):
    yield {"i": 1}
    yield {"i": 2}


def gen_nothing(payload):
    return
    yield  # pragma: no cover - makes this a generator


def gen_raise_first(payload):
    raise CustomError("before any yield")
    yield  # pragma: no cover


def gen_raise_after_emit(payload):
    yield {"i": 1}
    yield "FLY", {"partial": True}
    raise ValueError("after emit")


def gen_returns_value(payload):
    yield {"i": 1}
    return {"ignored": True}


def _apply(op):
    """Translate a JSON op from the test into what the handler yields."""
    verb = op[0]
    if verb == "EMIT":
        return op[1]
    if verb == "RAW":
        return op[1]
    if verb == "TUPLE":
        return tuple(op[1:])
    if verb == "NAMEDTUPLE":
        return Point(op[1], op[2])
    if verb == "SET" and len(op) == 3:
        # Keep a handle on the object handed to the runtime (see MUTATE_SET_VALUE).
        _SET_VALUES.append(op[2])
    return tuple(op)


def _local_op(op, results):
    """Ops that only touch handler-side objects (to prove copies); True if handled."""
    if op[0] == "MUTATE":
        last = results[-1]
        if isinstance(last, dict):
            last["mutated"] = True
        else:
            last.append("mutated")
        results[-1] = "mutated"
        return True
    if op[0] == "MUTATE_SET_VALUE":
        value = _SET_VALUES[-1]
        if isinstance(value, dict):
            value["mutated"] = True
        else:
            value.append("mutated")
        return True
    return False


_SET_VALUES = []


def script(payload):
    """Yields payload["ops"] in order, records what came back, emits the record last.

    Each op is ["GET", path] / ["SET", path, value] / ["DEL", path] / ["FLY", obj] /
    ["EMIT", payload] / ["RAW", value] / ["TUPLE", items...] / ["NAMEDTUPLE", x, y];
    ["MUTATE"] mutates the last value GET returned, ["MUTATE_SET_VALUE"] the last value
    passed to SET (both without yielding).
    A yield that raises inside the generator is recorded as {"caught": type}, which
    must never happen for ABI errors. payload["marker"], if set, is a file written in
    the generator's finally block (proves the runtime closed it).
    """
    results = []
    try:
        for op in payload.get("ops", []):
            if _local_op(op, results):
                continue
            try:
                results.append((yield _apply(op)))
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, GeneratorExit):
                    raise
                results.append({"caught": type(exc).__name__})
                yield {"caught": type(exc).__name__}
                return
        if payload.get("report", True):
            yield {"results": results}
    finally:
        if payload.get("marker"):
            with open(payload["marker"], "w") as fh:
                fh.write("closed")


async def ascript(payload):
    """Async-generator twin of `script`."""
    results = []
    try:
        for op in payload.get("ops", []):
            await asyncio.sleep(0)
            if _local_op(op, results):
                continue
            try:
                results.append((yield _apply(op)))
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, GeneratorExit):
                    raise
                results.append({"caught": type(exc).__name__})
                yield {"caught": type(exc).__name__}
                return
        if payload.get("report", True):
            yield {"results": results}
    finally:
        if payload.get("marker"):
            with open(payload["marker"], "w") as fh:
                fh.write("closed")


async def agen_raises(payload):
    yield {"i": 1}
    await asyncio.sleep(0)
    raise CustomError("async generator failure")


def _plain_wrapper(fn):
    def wrapper(payload):
        return fn(payload)

    return wrapper


hidden_generator = _plain_wrapper(gen_two)


# --- decorators -------------------------------------------------------------------


def my_retry(times):
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(payload):
            return {"wrapped_by": "my_retry", "inner": fn(payload)}

        return wrapper

    return decorate


def my_timeout(fn):
    @functools.wraps(fn)
    def timeout_wrapper(payload):
        return {"wrapped_by": "my_timeout", "inner": fn(payload)}

    return timeout_wrapper


@my_retry(3)
def decorated(payload):
    return {"plain": True}


@my_timeout
@my_retry(2)
def double_decorated(payload):
    return {"plain": True}


@my_retry(3)
def decorated_gen(payload):
    yield {"plain": True}


# --- misc ---------------------------------------------------------------------------


def slow(payload):
    import time

    time.sleep(payload.get("seconds", 0.2))
    return {"slept": True}


def pid(payload):
    return {"pid": os.getpid()}


class CallableObject:
    def __call__(self, payload):
        yield {"from": "callable object"}


callable_gen = CallableObject()
