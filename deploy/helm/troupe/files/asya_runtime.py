#!/usr/bin/env python3
"""Troupe actor runtime: serves one Python handler over HTTP on a Unix socket.

Wire-compatible with Asya's runtime (docs/spec/protocol.md sections 6 and 7). Standard
library only, so it runs in any image that has a Python 3.8+ interpreter.

Configuration (environment):
    ASYA_HANDLER             module.function or module.Class.method (required)
    ASYA_SOCKET_DIR          socket directory (default /var/run/asya)
    ASYA_SOCKET_NAME         socket file name (default asya-runtime.sock)
    ASYA_SOCKET_CHMOD        octal socket mode (default 0o666; empty = no chmod)
    ASYA_ENABLE_VALIDATION   validate incoming envelopes (default true)
    ASYA_LOG_LEVEL           DEBUG, INFO, WARN, ERROR (default INFO)
    ASYA_IGNORE_DECORATORS   comma-separated decorators to unwrap at load (best effort)
    ASYA_STATE_PROXY_MOUNTS  not supported by this runtime; ignored with a warning

Design notes:
- One request at a time, single thread. Idle keep-alive connections wait in a poll set,
  so an idle client never blocks another one.
- Async handlers share one event loop for the life of the process instead of a fresh
  loop per call (a fresh loop costs a selector, a self-pipe and several syscalls per
  call). After every call the tasks the handler left running are cancelled and awaited,
  as asyncio.run() does, so nothing leaks from one call into the next. Differences that
  remain are permissive only: objects bound to the loop (clients, locks) stay usable
  across calls, and async generators a handler abandons are finalised by the garbage
  collector rather than at the end of the call.
- Choices where the spec is silent: a yielded namedtuple is data (EMIT), not an
  instruction; GET/DEL/FLY take exactly 2 items and SET exactly 3, other arities are
  protocol errors (RuntimeError); an absent `headers` reads as {} in the context; an
  emit whose route.next/headers/status are malformed (not a list of strings / not an
  object) fails as a TypeError handler error instead of producing an unparseable frame;
  a function whose result is a coroutine is awaited and one whose result is a generator
  is streamed, so wrappers without proper async/generator markings still work.
- Handlers in the working directory are importable (cwd is appended to sys.path).
- Importing this file has no side effects; main() runs only as a script.
"""

import asyncio
import base64
import copy
import dataclasses
import datetime
import decimal
import gc
import importlib
import inspect
import threading
import time
import json
import logging
import os
import re
import select
import signal
import socket
import sys
import traceback
import types
import uuid

__all__ = [
    "parse_path",
    "path_get",
    "path_set",
    "path_del",
    "HandlerLoadError",
    "load_handler",
    "main",
]

logger = logging.getLogger("troupe.runtime")

# ---------------------------------------------------------------------------
# Path grammar (protocol.md 6.4)
# ---------------------------------------------------------------------------

_KEY = "key"
_IDX = "idx"
_SLICE = "slice"

_ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT_CHARS = frozenset("0123456789")
_IDENT_START = frozenset(_ASCII_LETTERS + "_")
_IDENT_CHARS = frozenset(_ASCII_LETTERS + "0123456789_-")

_PATH_CACHE = {}
_PATH_CACHE_MAX = 4096


def _parse_int(text, path, offset):
    digits = text[1:] if text.startswith("-") else text
    if not digits or any(ch not in _DIGIT_CHARS for ch in digits):
        raise ValueError(
            "invalid integer %r at offset %d in path %r (expected [-]digits)" % (text, offset, path)
        )
    return int(text)


def parse_path(path):
    """Parse an ABI path into a tuple of segments.

    Segments are ("key", str), ("idx", int) or ("slice", start|None, stop|None).
    Any character the grammar does not consume raises ValueError.
    """
    segs = _PATH_CACHE.get(path) if isinstance(path, str) else None
    if segs is not None:
        return segs
    if not isinstance(path, str):
        raise ValueError("path must be a string, got %s" % type(path).__name__)
    if not path.startswith("."):
        raise ValueError("path %r must start with '.'" % path)
    out = []
    i = 0
    n = len(path)
    while i < n:
        ch = path[i]
        if ch == ".":
            j = i + 1
            if j >= n or path[j] not in _IDENT_START:
                raise ValueError(
                    "expected an identifier (letter or '_' first) after '.' at offset %d in path %r"
                    % (i, path)
                )
            j += 1
            while j < n and path[j] in _IDENT_CHARS:
                j += 1
            out.append((_KEY, path[i + 1 : j]))
            i = j
        elif ch == "[":
            if path.startswith('["', i):
                end = path.find('"', i + 2)
                if end < 0:
                    raise ValueError("unterminated quoted key at offset %d in path %r" % (i, path))
                if end == i + 2:
                    raise ValueError("empty quoted key at offset %d in path %r" % (i, path))
                if end + 1 >= n or path[end + 1] != "]":
                    raise ValueError(
                        "expected ']' after quoted key at offset %d in path %r" % (end + 1, path)
                    )
                out.append((_KEY, path[i + 2 : end]))
                i = end + 2
            else:
                end = path.find("]", i + 1)
                if end < 0:
                    raise ValueError("unterminated '[' at offset %d in path %r" % (i, path))
                inner = path[i + 1 : end]
                if ":" in inner:
                    first, _, second = inner.partition(":")
                    if ":" in second:
                        raise ValueError(
                            "slice steps are not supported at offset %d in path %r" % (i, path)
                        )
                    start = _parse_int(first, path, i + 1) if first else None
                    stop = _parse_int(second, path, i + 2 + len(first)) if second else None
                    out.append((_SLICE, start, stop))
                else:
                    out.append((_IDX, _parse_int(inner, path, i + 1)))
                i = end + 1
        else:
            raise ValueError("unexpected character %r at offset %d in path %r" % (ch, i, path))
    segs = tuple(out)
    if len(_PATH_CACHE) >= _PATH_CACHE_MAX:
        _PATH_CACHE.clear()
    _PATH_CACHE[path] = segs
    return segs


def _reject_slices(segs, verb, path):
    for seg in segs:
        if seg[0] is _SLICE:
            raise ValueError("slices are not allowed in %s (path %r)" % (verb, path))


def path_get(root, path):
    """Value at `path` in `root` (no copy). Slices are rejected with ValueError.

    Each step is plain Python subscripting, so navigation errors are Python's own:
    KeyError (missing key, or an index into an object), IndexError, TypeError.
    """
    segs = parse_path(path)
    _reject_slices(segs, "GET", path)
    node = root
    for seg in segs:
        node = node[seg[1]]
    return node


def path_set(root, path, value):
    """Store `value` at `path`; missing intermediate object keys are created as {}.

    The last segment may be a key (target must be an object), an index (target must be
    a list, index in range) or a slice (target and value must be lists; Python slice
    assignment, so `[:0]` prepends and `[999:]` appends).
    """
    segs = parse_path(path)
    for seg in segs[:-1]:
        if seg[0] is _SLICE:
            raise ValueError("a slice may only be the last segment of a SET path (%r)" % path)
    node = root
    for seg in segs[:-1]:
        kind = seg[0]
        if kind is _KEY and isinstance(node, dict):
            nxt = node.get(seg[1], _MISSING)
            if nxt is _MISSING:
                nxt = {}
                node[seg[1]] = nxt
            node = nxt
        elif kind is _KEY:
            raise TypeError(
                "cannot set key %r inside a %s in path %r" % (seg[1], type(node).__name__, path)
            )
        else:
            node = node[seg[1]]
    last = segs[-1]
    kind = last[0]
    if kind is _KEY:
        if not isinstance(node, dict):
            raise TypeError(
                "cannot set key %r on a %s in path %r" % (last[1], type(node).__name__, path)
            )
        node[last[1]] = value
    elif kind is _IDX:
        if not isinstance(node, list):
            raise TypeError(
                "cannot assign index [%d] of a %s in path %r" % (last[1], type(node).__name__, path)
            )
        node[last[1]] = value
    else:
        if not isinstance(node, list):
            raise TypeError("cannot assign a slice of a %s in path %r" % (type(node).__name__, path))
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                "a slice can only be set to a list, got %s (path %r)" % (type(value).__name__, path)
            )
        node[last[1] : last[2]] = value


def path_del(root, path):
    """Remove the key or index at `path` (plain Python `del`). Slices raise ValueError."""
    segs = parse_path(path)
    _reject_slices(segs, "DEL", path)
    node = root
    for seg in segs[:-1]:
        node = node[seg[1]]
    del node[segs[-1][1]]


_MISSING = object()

# SET/DEL may only touch these parts of the context (protocol.md 6.5); the check is on the
# raw path string, as in Asya.
_WRITABLE_PREFIXES = (".route.next", ".headers", ".status")

# ---------------------------------------------------------------------------
# Copies and serialisation (protocol.md 6.8)
# ---------------------------------------------------------------------------

_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))


def _dcopy(obj):
    """Deep copy, fast for JSON-shaped data, copy.deepcopy for anything else."""
    t = type(obj)
    if t in _SCALAR_TYPES:
        return obj
    if t is dict:
        return {k: _dcopy(v) for k, v in obj.items()}
    if t is list:
        return [_dcopy(v) for v in obj]
    return copy.deepcopy(obj)


def _normalise(obj):
    """Turn namedtuples (anywhere in lists/dicts/tuples) into objects.

    The json encoder writes every tuple, namedtuples included, as an array without
    consulting `default`, so they must be converted up front. Returns `obj` itself when
    nothing needs changing, so plain JSON data is never copied.
    """
    t = type(obj)
    if t in _SCALAR_TYPES:
        return obj
    if isinstance(obj, dict):
        new = None
        for k, v in obj.items():
            if type(v) in _SCALAR_TYPES:
                continue
            nv = _normalise(v)
            if nv is not v:
                if new is None:
                    new = dict(obj)
                new[k] = nv
        return obj if new is None else new
    if isinstance(obj, list):
        new = None
        for i, v in enumerate(obj):
            if type(v) in _SCALAR_TYPES:
                continue
            nv = _normalise(v)
            if nv is not v:
                if new is None:
                    new = list(obj)
                new[i] = nv
        return obj if new is None else new
    if isinstance(obj, tuple):
        fields = getattr(type(obj), "_fields", None)
        if isinstance(fields, tuple):
            return _normalise(dict(zip(fields, obj)))
        items = [_normalise(v) for v in obj]
        if any(a is not b for a, b in zip(items, obj)):
            return items
        return obj
    return obj


def _json_default(obj):
    """`default` hook of the encoder for the non-JSON types protocol.md 6.8 lists."""
    if not isinstance(obj, type):
        dump = getattr(obj, "model_dump", None)
        if callable(dump):
            return _normalise(dump(mode="json"))
        as_dict = getattr(obj, "dict", None)
        if callable(as_dict) and hasattr(obj, "__fields__"):
            return _normalise(as_dict())
        if dataclasses.is_dataclass(obj):
            return _normalise(dataclasses.asdict(obj))
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, (uuid.UUID, decimal.Decimal)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, (set, frozenset)):
        return _normalise(list(obj))
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default, allow_nan=False)


def _make_fast_encoder():
    """The C encoder built once; JSONEncoder.encode() rebuilds it on every call.

    Without circular-reference markers: a self-referencing result hits the recursion
    limit instead, which _encode reports as a TypeError all the same.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        enc = make(
            None, _json_default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
        )
        if "".join(enc({"a": [1, 2.5, "\u00e9", None, True]}, 0)) != '{"a":[1,2.5,"\\u00e9",null,true]}':
            return None
    except Exception:  # noqa: BLE001 - fall back to the pure-Python path
        return None
    return enc


_FAST_ENCODER = _make_fast_encoder()

if _FAST_ENCODER is not None:

    def _encode_raw(obj, _enc=_FAST_ENCODER, _join="".join):
        return _join(_enc(obj, 0))

else:  # pragma: no cover - interpreters without the _json accelerator
    _encode_raw = _ENCODER.encode


def _encode(obj):
    """Compact one-line JSON as bytes; any failure is a TypeError (a handler error)."""
    try:
        return _encode_raw(obj).encode()
    except TypeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise TypeError("result is not JSON serializable: %s" % exc) from exc


_DECODER = json.JSONDecoder()
_raw_decode = _DECODER.raw_decode
_JSON_WS = " \t\n\r"


def _decode(body):
    """json.loads for request bodies, minus its per-call overhead on UTF-8 input.

    Anything unusual (leading/trailing whitespace, BOM, UTF-16/32, errors) goes through
    json.loads itself so results and error types stay exactly json.loads'.
    """
    try:
        text = body.decode()
        obj, end = _raw_decode(text)
    except ValueError:
        return json.loads(body)
    if end != len(text) and text[end:].strip(_JSON_WS):
        return json.loads(body)
    return obj


# ---------------------------------------------------------------------------
# Error details (protocol.md 7)
# ---------------------------------------------------------------------------


def _fqn(cls):
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if not module or module == "builtins":
        return name
    return module + "." + name


def error_details(exc):
    """`{message, type, mro, traceback}` for an exception."""
    cls = type(exc)
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the reply
        message = "<unprintable %s>" % cls.__name__
    return {
        "message": message,
        "type": _fqn(cls),
        "mro": [_fqn(b) for b in cls.__mro__[1:] if b is not object and b is not BaseException],
        "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__)),
    }


def _error_body(code, exc):
    return _encode_raw({"error": code, "details": error_details(exc)}).encode()


# ---------------------------------------------------------------------------
# Handler loading (protocol.md 6.1)
# ---------------------------------------------------------------------------

_HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

KIND_FUNC = "function"
KIND_ASYNC = "async function"
KIND_GEN = "generator"
KIND_ASYNC_GEN = "async generator"


class HandlerLoadError(Exception):
    """The handler could not be loaded; the message says what to fix."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


def _code_nested_in(code, outer, depth=0):
    """Whether code object `code` is `outer` or defined (transitively) inside it."""
    if code is outer:
        return True
    if depth > 8:
        return False
    for const in outer.co_consts:
        if isinstance(const, types.CodeType) and _code_nested_in(code, const, depth + 1):
            return True
    return False


def _decorator_matches(layer, names):
    """Whether the wrapper `layer` was made by one of the decorators in `names`.

    functools.wraps copies __module__/__qualname__ from the wrapped function, so the
    wrapper is identified by where its code was defined instead: inside the named
    decorator's code, in the named decorator's module, or (class-based wrappers) as an
    instance of the named class.
    """
    func = getattr(layer, "__func__", layer)
    if inspect.isfunction(func):
        module = func.__globals__.get("__name__", "") or ""
        code = func.__code__
        qual = getattr(code, "co_qualname", None) or code.co_name
        scope = func.__globals__
    else:
        module = getattr(type(func), "__module__", "") or ""
        code = None
        qual = getattr(type(func), "__qualname__", "") or ""
        scope = {}
    mod_parts = module.split(".")
    qual_parts = [p for p in qual.split(".") if p != "<locals>"]
    for name in names:
        dmod, _, dname = name.rpartition(".")
        if dmod:
            target = getattr(sys.modules.get(dmod), dname, None)
        else:
            target = scope.get(dname)
        if target is not None:
            if inspect.isclass(target) and isinstance(func, target):
                return True
            tcode = getattr(getattr(target, "__func__", target), "__code__", None)
            if code is not None and isinstance(tcode, types.CodeType) and _code_nested_in(code, tcode):
                return True
        if dmod:
            if module == dmod or module.startswith(dmod + ".") or mod_parts[0] == dmod.split(".")[0]:
                return True
        elif dname in qual_parts or dname in mod_parts:
            return True
    return False


def _unwrap_ignored(func, names):
    """Peel `__wrapped__` layers made by ignored decorators (best effort)."""
    if not names:
        return func
    bound_self = None
    if inspect.ismethod(func):
        bound_self = func.__self__
        func = func.__func__
    seen = set()
    while id(func) not in seen:
        seen.add(id(func))
        inner = getattr(func, "__wrapped__", None)
        if inner is None or not _decorator_matches(func, names):
            break
        logger.debug("unwrapped decorator layer %r", func)
        func = inner
    if bound_self is not None and inspect.isfunction(func):
        return types.MethodType(func, bound_self)
    return func


def handler_kind(func):
    """Classify a handler callable as one of the four kinds of protocol.md 6.2."""
    candidates = [func]
    if not inspect.isroutine(func) and not isinstance(func, type):
        call = getattr(func, "__call__", None)
        if call is not None:
            candidates.append(call)
    for cand in candidates:
        if inspect.isasyncgenfunction(cand):
            return KIND_ASYNC_GEN
        if inspect.isgeneratorfunction(cand):
            return KIND_GEN
        if inspect.iscoroutinefunction(cand):
            return KIND_ASYNC
    return KIND_FUNC


def check_handler(spec):
    """Import and resolve `spec` without instantiating a class handler (no model load);
    raises HandlerLoadError like load_handler. Used by `troupe up` before it starts."""
    load_handler(spec, instantiate=False)


def load_handler(spec, ignore_decorators=(), instantiate=True):
    """Import and resolve `spec`; returns (callable, kind). Raises HandlerLoadError.

    With instantiate=False a Class.method handler is checked (method exists, every
    __init__ parameter has a default) but the class is not instantiated."""
    if not spec:
        raise HandlerLoadError("ASYA_HANDLER is not set; set it to module.function or module.Class.method")
    if not _HANDLER_RE.match(spec):
        raise HandlerLoadError(
            "ASYA_HANDLER=%r is not a valid handler string; expected module.function or "
            "module.Class.method (letters, digits, '_' and dots only)" % spec
        )
    parts = spec.split(".")
    module = None
    module_name = None
    misses = []
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (name == missing or name.startswith(missing + ".")):
                misses.append((name, exc))
                continue
            raise HandlerLoadError(
                "handler %r: importing module %r failed: %s: %s" % (spec, name, type(exc).__name__, exc),
                exc,
            ) from exc
        except BaseException as exc:  # noqa: BLE001 - any import-time failure is fatal
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise HandlerLoadError(
                "handler %r: importing module %r failed: %s: %s" % (spec, name, type(exc).__name__, exc),
                exc,
            ) from exc
        module_name = name
        break
    if module is None:
        name, exc = misses[-1]
        raise HandlerLoadError(
            "handler %r: cannot import module %r: %s: %s (is it installed or on PYTHONPATH?)"
            % (spec, name, type(exc).__name__, exc),
            exc,
        )
    rest = parts[len(module_name.split(".")) :]
    not_found = ""
    if misses:
        not_found = " (module %r was not found either)" % misses[-1][0]
    if len(rest) == 1:
        try:
            func = getattr(module, rest[0])
        except AttributeError as exc:
            raise HandlerLoadError(
                "handler %r: module %r has no attribute %r%s" % (spec, module_name, rest[0], not_found),
                exc,
            ) from exc
    elif len(rest) == 2:
        try:
            cls = getattr(module, rest[0])
        except AttributeError as exc:
            raise HandlerLoadError(
                "handler %r: module %r has no attribute %r%s" % (spec, module_name, rest[0], not_found),
                exc,
            ) from exc
        if not inspect.isclass(cls):
            raise HandlerLoadError(
                "handler %r: %s.%s is not a class; expected module.function or module.Class.method"
                % (spec, module_name, rest[0])
            )
        if not instantiate:
            _check_constructible(spec, module_name, rest[0], cls)
            if not callable(getattr(cls, rest[1], None)):
                raise HandlerLoadError(
                    "handler %r: class %s.%s has no method %r" % (spec, module_name, rest[0], rest[1])
                )
            return None, None
        try:
            instance = cls()
        except Exception as exc:  # noqa: BLE001 - any constructor failure is fatal
            # The default-argument hint only fits a call that lacked arguments.
            hint = ""
            if isinstance(exc, TypeError) and "required" in str(exc) and "argument" in str(exc):
                hint = " (every __init__ parameter needs a default)"
            raise HandlerLoadError(
                "handler %r: instantiating %s.%s() with no arguments failed: %s: %s%s"
                % (spec, module_name, rest[0], type(exc).__name__, exc, hint),
                exc,
            ) from exc
        try:
            func = getattr(instance, rest[1])
        except AttributeError as exc:
            raise HandlerLoadError(
                "handler %r: class %s.%s has no method %r" % (spec, module_name, rest[0], rest[1]),
                exc,
            ) from exc
    else:
        raise HandlerLoadError(
            "handler %r: after module %r the rest %r is neither function nor Class.method%s"
            % (spec, module_name, ".".join(rest), not_found)
        )
    if not callable(func):
        raise HandlerLoadError(
            "handler %r: %s in module %r is %r, which is not callable" % (spec, ".".join(rest), module_name, func)
        )
    func = _unwrap_ignored(func, ignore_decorators)
    return func, handler_kind(func)


def _check_constructible(spec, module_name, cls_name, cls):
    """Every __init__ parameter (after self) must have a default (protocol.md 6.1)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        raise HandlerLoadError(
            "handler %r: %s.%s() cannot be instantiated with no arguments: parameter(s) %s "
            "have no default (every __init__ parameter needs a default)"
            % (spec, module_name, cls_name, ", ".join(required))
        )


# ---------------------------------------------------------------------------
# Event loop for async handlers
# ---------------------------------------------------------------------------

_LOOP = None


def _get_loop():
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
        asyncio.set_event_loop(_LOOP)
    return _LOOP


def _reap_tasks(loop):
    """Cancel and await what a call left running, like asyncio.run() on exit."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task left running by the handler",
                    "exception": task.exception(),
                    "task": task,
                }
            )


def _run_coroutine(coro):
    loop = _get_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        _reap_tasks(loop)


# ---------------------------------------------------------------------------
# Generator driving (protocol.md 6.3 - 6.7)
# ---------------------------------------------------------------------------


class _ClientGone(Exception):
    """The sidecar closed the connection mid-stream; stop without replying."""


class _Stream:
    """SSE writer for one generator call; the HTTP head goes out with the first event."""

    __slots__ = ("sock", "head")

    def __init__(self, sock):
        self.sock = sock
        self.head = _SSE_HEAD

    def event(self, name, data):
        chunk = b"event: " + name + b"\ndata: " + data + b"\n\n"
        if self.head is not None:
            chunk = self.head + chunk
            self.head = None
        try:
            self.sock.sendall(chunk)
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc


class _Call:
    """ABI state of one generator call: the context and the input route."""

    __slots__ = ("ctx", "prev_out", "stream")

    def __init__(self, msg, stream):
        route = msg["route"]
        prev = route["prev"]
        curr = route["curr"]
        headers = msg.get("headers")
        status = msg.get("status")
        parent = msg.get("parent_id")
        # The envelope was parsed for this call only and is dropped afterwards, so the
        # context may own its containers without copying them.
        self.ctx = {
            "id": msg.get("id", ""),
            "parent_id": parent if parent is not None else "",
            "route": {"prev": prev, "curr": curr, "next": list(route["next"])},
            "headers": headers if headers is not None else {},
            "status": status if status is not None else {},
        }
        self.prev_out = list(prev) + [curr]
        self.stream = stream

    def emit(self, payload):
        ctx = self.ctx
        nxt = ctx["route"]["next"]  # KeyError after DEL .route.next (reproduced quirk)
        # A frame the sidecar cannot parse would be reported as an unreachable runtime;
        # failing here makes it a handler error that names the cause.
        if not isinstance(nxt, list):
            raise TypeError("route.next must be a list when emitting, got %s" % type(nxt).__name__)
        for actor in nxt:
            if not isinstance(actor, str):
                raise TypeError("route.next must hold actor names (strings), got %r" % (actor,))
        frame = {
            "payload": payload,
            "route": {
                "prev": self.prev_out,
                "curr": nxt[0] if nxt else "",
                "next": nxt[1:],
            },
        }
        headers = ctx.get("headers")
        if headers:
            if not isinstance(headers, dict):
                raise TypeError("headers must be an object when emitting, got %s" % type(headers).__name__)
            frame["headers"] = headers
        status = ctx.get("status")
        if status:
            if not isinstance(status, dict):
                raise TypeError("status must be an object when emitting, got %s" % type(status).__name__)
            frame["status"] = status
        # Serialising now is the per-emit snapshot: later SET/DEL cannot reach this frame.
        self.stream.event(b"downstream", _encode(_normalise(frame)))

    def step(self, item):
        """Execute one yielded value; returns what to send back into the generator."""
        if item is None:
            return None
        if isinstance(item, tuple) and len(item) >= 2 and not hasattr(type(item), "_fields"):
            verb = item[0]
            if verb == "GET" and len(item) == 2:
                return _dcopy(path_get(self.ctx, item[1]))
            if verb == "SET" and len(item) == 3:
                path = item[1]
                _check_writable(path)
                path_set(self.ctx, path, _dcopy(item[2]))
                return None
            if verb == "DEL" and len(item) == 2:
                path = item[1]
                _check_writable(path)
                path_del(self.ctx, path)
                return None
            if verb == "FLY" and len(item) == 2:
                self.stream.event(b"upstream", _encode({"payload": _normalise(item[1])}))
                return None
            raise RuntimeError(
                "invalid ABI instruction %s; expected (\"GET\", path), (\"SET\", path, value), "
                "(\"DEL\", path) or (\"FLY\", obj)" % _describe(item)
            )
        self.emit(item)
        return None


def _describe(item):
    try:
        text = repr(item)
    except Exception:  # noqa: BLE001
        text = "<tuple>"
    if len(text) > 200:
        text = text[:200] + "..."
    return "%s of %d items" % (text, len(item))


def _check_writable(path):
    if not isinstance(path, str):
        raise ValueError("path must be a string, got %s" % type(path).__name__)
    if not path.startswith(_WRITABLE_PREFIXES):
        raise PermissionError(
            "path %r is read-only: SET/DEL may only target .route.next, .headers or .status" % path
        )


def _drive_sync(gen, call):
    send = gen.send
    step = call.step
    value = None
    try:
        while True:
            try:
                item = send(value)
            except StopIteration:
                return
            value = step(item)
    finally:
        try:
            gen.close()
        except Exception:  # noqa: BLE001 - the call's outcome is already decided
            logger.debug("closing the handler generator failed", exc_info=True)


async def _drive_async(agen, call):
    asend = agen.asend
    step = call.step
    value = None
    try:
        while True:
            try:
                item = await asend(value)
            except StopAsyncIteration:
                return
            value = step(item)
    finally:
        try:
            await agen.aclose()
        except Exception:  # noqa: BLE001 - the call's outcome is already decided
            logger.debug("closing the handler async generator failed", exc_info=True)


# ---------------------------------------------------------------------------
# HTTP over the Unix socket (protocol.md 7)
# ---------------------------------------------------------------------------

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)
_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}
_DONE_EVENT = b"event: done\ndata: {}\n\n"
_HEALTH_BODY = b'{"status":"ready"}'
_NOT_FOUND_BODY = b'{"error":"not_found"}'
_MAX_HEAD = 64 * 1024
_RECV = 256 * 1024


class _BadRequest(Exception):
    """Malformed HTTP; answered with 400 and the connection closed."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _response(status, body, close, content_type=b"application/json"):
    if status == 204:
        head = b"HTTP/1.1 204 No Content\r\n"
    else:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            content_type,
            len(body),
        )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


class _Conn:
    """One client connection and its unread bytes."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""


def _recv_more(conn):
    data = conn.sock.recv(_RECV)
    if not data:
        raise _ClientGone("connection closed mid-request")
    conn.buf += data


def _read_chunked(conn, pos):
    """Decode a chunked body starting at conn.buf[pos:]; returns (body, end offset)."""
    parts = []
    while True:
        while True:
            eol = conn.buf.find(b"\r\n", pos)
            if eol >= 0:
                break
            if len(conn.buf) - pos > 4096:
                raise _BadRequest("chunk size line too long")
            _recv_more(conn)
        size_text = conn.buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest("invalid chunk size %r" % size_text[:40]) from None
        if size < 0:
            raise _BadRequest("invalid chunk size")
        pos = eol + 2
        if size == 0:
            # Trailers end with an empty line.
            while True:
                eol = conn.buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(conn.buf) - pos > _MAX_HEAD:
                        raise _BadRequest("trailers too long")
                    _recv_more(conn)
                    continue
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        while len(conn.buf) < pos + size + 2:
            _recv_more(conn)
        if conn.buf[pos + size : pos + size + 2] != b"\r\n":
            raise _BadRequest("chunk not terminated by CRLF")
        parts.append(conn.buf[pos : pos + size])
        pos += size + 2


def _header_value(hdrs, marker):
    i = hdrs.find(marker) + len(marker)
    return hdrs[i : hdrs.find(b"\r", i)]


def _read_request(conn):
    """Read one request: (method, target, body, close) or None on a clean EOF."""
    buf = conn.buf
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > _MAX_HEAD:
            raise _BadRequest("request head too large", 431)
        data = conn.sock.recv(_RECV)
        if not data:
            conn.buf = b""
            return None
        buf += data
        end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(data) - 3))
    line_end = buf.find(b"\r\n")
    request_line = buf[:line_end]
    pieces = request_line.split(b" ")
    if len(pieces) != 3 or not pieces[2].startswith(b"HTTP/"):
        conn.buf = buf
        raise _BadRequest("malformed request line %r" % request_line[:100])
    method, target, version = pieces
    close = version != b"HTTP/1.1"
    length = None
    chunked = False
    expect = False
    if line_end < end:
        # Lower-cased header block with a "\n" before every name, so each header is
        # found by one substring search instead of splitting every line.
        hdrs = buf[line_end + 1 : end + 2].lower()
        i = hdrs.find(b"\ncontent-length:")
        if i >= 0:
            text = hdrs[i + 16 : hdrs.find(b"\r", i)]
            try:
                length = int(text)
            except ValueError:
                raise _BadRequest("invalid Content-Length %r" % text.strip()[:40]) from None
            if length < 0:
                raise _BadRequest("negative Content-Length")
        if b"\ntransfer-encoding:" in hdrs:
            chunked = b"chunked" in _header_value(hdrs, b"\ntransfer-encoding:")
        if b"\nconnection:" in hdrs and b"close" in _header_value(hdrs, b"\nconnection:"):
            close = True
        if b"\nexpect:" in hdrs:
            expect = _header_value(hdrs, b"\nexpect:").strip() == b"100-continue"
    start = end + 4
    if chunked:
        conn.buf = buf
        if expect:
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, stop = _read_chunked(conn, start)
        conn.buf = conn.buf[stop:]
    elif length:
        stop = start + length
        if len(buf) >= stop:
            body = buf[start:stop]
            conn.buf = buf[stop:]
        else:
            if expect:
                conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            parts = [buf[start:]]
            need = stop - len(buf)
            recv = conn.sock.recv
            while need > 0:
                data = recv(need if need < 4 * _RECV else 4 * _RECV)
                if not data:
                    raise _ClientGone("connection closed mid-body")
                parts.append(data)
                need -= len(data)
            body = b"".join(parts)
            if need < 0:
                conn.buf = body[length:]
                body = body[:length]
            else:
                conn.buf = b""
    else:
        body = b""
        conn.buf = buf[start:]
    query = target.find(b"?")
    if query >= 0:
        target = target[:query]
    return method, target, body, close


def _validate(msg):
    """Envelope checks of protocol.md 7 (Validation); raises ValueError."""
    if isinstance(msg, (list, str)):
        # What Asya's `"payload" not in e` says about these.
        raise ValueError("Missing required field 'payload' in envelope")
    if not isinstance(msg, dict):
        raise ValueError("envelope must be a JSON object, got %s" % type(msg).__name__)
    if "payload" not in msg:
        raise ValueError("Missing required field 'payload' in envelope")
    route = msg.get("route", _MISSING)
    if route is _MISSING:
        raise ValueError("Missing required field 'route' in envelope")
    # The texts are Asya's, byte for byte (protocol.md 1: bodies are byte-compatible).
    if not isinstance(route, dict):
        raise ValueError("Field 'route' must be a dict")
    for key, kind, name in (("prev", list, "a list"), ("curr", str, "a string"), ("next", list, "a list")):
        if key not in route:
            raise ValueError("Missing required field '%s' in route" % key)
        if not isinstance(route[key], kind):
            raise ValueError("Field 'route.%s' must be %s" % (key, name))
    if "headers" in msg and not isinstance(msg["headers"], dict):
        raise ValueError("Field 'headers' must be a dict")
    if "id" in msg and not isinstance(msg["id"], str):
        raise ValueError("Field 'id' must be a string")


def _lenient(msg):
    """Shape an unvalidated body into an envelope (ASYA_ENABLE_VALIDATION=false)."""
    if not isinstance(msg, dict):
        raise ValueError("envelope must be a JSON object, got %s" % type(msg).__name__)
    route = msg.get("route")
    if not isinstance(route, dict):
        route = {}
    prev = route.get("prev")
    curr = route.get("curr")
    nxt = route.get("next")
    out = {
        "payload": msg.get("payload"),
        "route": {
            "prev": prev if isinstance(prev, list) else [],
            "curr": curr if isinstance(curr, str) else "",
            "next": nxt if isinstance(nxt, list) else [],
        },
    }
    for key in ("id", "parent_id", "headers", "status"):
        if msg.get(key) is not None:
            out[key] = msg[key]
    if not isinstance(out.get("headers", {}), dict):
        del out["headers"]
    return out


# Set by `troupe up` (TROUPE_LOG_RELAY): its sidecar logs every handler failure itself,
# at WARN when it will retry and at ERROR when final, so the runtime's own line would be
# a duplicate at the wrong level; it is kept at DEBUG, with the traceback.
_RELAYED = False
# resources.limits.memory as written ("256Mi"), when the launcher set a limit.
_MEMORY_LIMIT_TEXT = ""
# A MemoryError under a memory limit leaves the heap fragmented and near the limit: the
# runtime answers the call, then exits so that a fresh process replaces it.
_EXIT_AFTER_CALL = False


def _log_failure(msg, exc):
    task = msg.get("id") if isinstance(msg, dict) else None
    if _RELAYED:
        logger.debug("task %s: handler raised %s: %s", task, _fqn(type(exc)), exc, exc_info=exc)
    else:
        logger.error(
            "task %s: handler raised %s: %s", task, _fqn(type(exc)), exc, exc_info=logger.isEnabledFor(logging.DEBUG)
        )


def _over_memory(exc):
    """A MemoryError under resources.limits.memory, reworded to say which limit it hit."""
    global _EXIT_AFTER_CALL
    if not _MEMORY_LIMIT_TEXT or not isinstance(exc, MemoryError):
        return exc
    _EXIT_AFTER_CALL = True
    logger.warning(
        "handler exceeded resources.limits.memory %s; this runtime exits after the reply and is replaced",
        _MEMORY_LIMIT_TEXT,
    )
    out = MemoryError("exceeded resources.limits.memory %s" % _MEMORY_LIMIT_TEXT)
    out.__traceback__ = exc.__traceback__
    return out


def _apply_memory_limit():
    """Caps the heap at TROUPE_MEMORY_LIMIT bytes (resources.limits.memory, set by the
    launcher): RLIMIT_DATA counts what a leak grows (heap and private mappings) but not
    the address space reserved for thread stacks and shared libraries."""
    global _MEMORY_LIMIT_TEXT
    text = (os.environ.get("TROUPE_MEMORY_LIMIT") or "").strip()
    if not text:
        return None
    if not text.isdigit():
        return "TROUPE_MEMORY_LIMIT=%r is not a number of bytes" % text
    import resource

    limit = int(text)
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError) as exc:
        return "cannot set the memory limit %s: %s" % (text, exc)
    _MEMORY_LIMIT_TEXT = (os.environ.get("TROUPE_MEMORY_LIMIT_TEXT") or "").strip() or ("%d bytes" % limit)
    return None


class Runtime:
    """The loaded handler plus the request loop."""

    def __init__(self, func, kind, validate=True):
        self.func = func
        self.kind = kind
        self.validate = validate

    # -- /invoke -----------------------------------------------------------

    def invoke(self, sock, body, close):
        """Serve POST /invoke; returns whether the connection stays open."""
        if not body:
            sock.sendall(
                _response(400, _error_body("msg_parsing_error", ValueError("empty request body")), close)
            )
            return not close
        try:
            msg = _decode(body)
            if self.validate:
                _validate(msg)
            else:
                msg = _lenient(msg)
        except (ValueError, RecursionError) as exc:
            sock.sendall(_response(400, _error_body("msg_parsing_error", exc), close))
            return not close
        kind = self.kind
        if kind is KIND_GEN or kind is KIND_ASYNC_GEN:
            self._stream(sock, msg, None)
            return False
        try:
            result = self.func(msg["payload"])
            if type(result) not in _PLAIN_RESULT_TYPES:
                if kind is KIND_ASYNC or inspect.isawaitable(result):
                    result = _run_coroutine(result)
                if inspect.isgenerator(result) or inspect.isasyncgen(result):
                    # A wrapper hid a generator function; serve it as what it really is.
                    self._stream(sock, msg, result)
                    return False
            if result is None:
                sock.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n" if close else _NO_CONTENT)
                return not close
            route = msg["route"]
            nxt = route["next"]
            frame = {
                "payload": _normalise(result),
                "route": {
                    "prev": route["prev"] + [route["curr"]],
                    "curr": nxt[0] if nxt else "",
                    "next": nxt[1:],
                },
            }
            headers = msg.get("headers")
            if headers:
                frame["headers"] = headers
            status = msg.get("status")
            if status:
                frame["status"] = status
            out = _encode({"frames": [frame]})
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - every handler failure is a 500
            exc = _over_memory(exc)
            _log_failure(msg, exc)
            sock.sendall(_response(500, _error_body("processing_error", exc), close))
            return not close
        if close:
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(out), out)
            )
            return False
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(out), out)
        )
        return True

    def _stream(self, sock, msg, started):
        stream = _Stream(sock)
        call = _Call(msg, stream)
        try:
            gen = started if started is not None else self.func(msg["payload"])
            if inspect.isasyncgen(gen):
                _run_coroutine(_drive_async(gen, call))
            elif inspect.isgenerator(gen):
                _drive_sync(gen, call)
            else:
                raise TypeError(
                    "generator handler returned %s instead of a generator" % type(gen).__name__
                )
        except _ClientGone:
            logger.warning("client closed the connection during a streamed call")
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - every handler failure is an SSE error
            exc = _over_memory(exc)
            _log_failure(msg, exc)
            try:
                stream.event(b"error", _error_body("processing_error", exc))
            except _ClientGone:
                return
        chunk = _DONE_EVENT
        if stream.head is not None:
            chunk = stream.head + chunk
            stream.head = None
        try:
            sock.sendall(chunk)
        except OSError:
            pass

    # -- connection handling ----------------------------------------------

    def serve_conn(self, conn):
        """Serve the requests buffered or arriving on `conn`; False = close it."""
        sock = conn.sock
        while True:
            try:
                req = _read_request(conn)
            except _BadRequest as exc:
                body = _encode_raw({"error": "bad_request", "details": {"message": str(exc)}}).encode()
                try:
                    sock.sendall(_response(exc.status, body, True))
                except OSError:
                    pass
                return False
            except (_ClientGone, OSError):
                return False
            if req is None:
                return False
            method, target, body, close = req
            try:
                if target == b"/invoke" and method == b"POST":
                    keep = self.invoke(sock, body, close)
                elif target == b"/healthz" and method == b"GET":
                    sock.sendall(_response(200, _HEALTH_BODY, close))
                    keep = not close
                else:
                    sock.sendall(_response(404, _NOT_FOUND_BODY, close))
                    keep = not close
            except OSError:
                return False
            if _EXIT_AFTER_CALL:
                raise SystemExit(EXIT_OVER_MEMORY)
            if not keep:
                return False
            if not conn.buf:
                return True

    def serve_forever(self, lsock):
        lsock.setblocking(False)
        lfd = lsock.fileno()
        poller = select.poll()
        poller.register(lfd, select.POLLIN)
        conns = {}
        poll = poller.poll
        serve = self.serve_conn
        state = _SHUTDOWN
        while True:
            if state["stopping"]:
                raise SystemExit(0)
            for fd, _ in poll():
                if fd == lfd:
                    try:
                        sock, _addr = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    sock.setblocking(True)
                    conn = _Conn(sock)
                    conns[sock.fileno()] = conn
                    poller.register(sock.fileno(), select.POLLIN)
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                # A SIGTERM while this is set lets the call finish (see _stop_gracefully).
                state["busy"] = True
                try:
                    keep = serve(conn)
                finally:
                    state["busy"] = False
                if state["stopping"]:
                    raise SystemExit(0)
                if not keep:
                    poller.unregister(fd)
                    del conns[fd]
                    try:
                        conn.sock.close()
                    except OSError:
                        pass


_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
# Exit code after a MemoryError under resources.limits.memory (the launcher knows it).
EXIT_OVER_MEMORY = 75
# Results of these exact types need no coroutine/generator checks.
_PLAIN_RESULT_TYPES = frozenset((dict, list, str, int, float, bool, type(None)))

# ---------------------------------------------------------------------------
# Process entry point
# ---------------------------------------------------------------------------


def _env_flag(name, default):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("false", "0", "no", "off")


def _configure_logging():
    level_name = (os.environ.get("ASYA_LOG_LEVEL") or "INFO").strip().upper()
    if level_name == "WARN":
        level_name = "WARNING"
    level = getattr(logging, level_name, None)
    if not isinstance(level, int):
        level = logging.INFO
    global _RELAYED
    _RELAYED = _env_flag("TROUPE_LOG_RELAY", False)
    handler = logging.StreamHandler(sys.stderr)
    if _RELAYED:
        # `troupe up` re-logs each line with its own timestamp, at the level named here.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def _fatal(message, cause=None):
    sys.stderr.write("troupe-runtime: FATAL: %s\n" % message)
    if cause is not None:
        sys.stderr.write("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)))
    sys.stderr.flush()
    return 1


# Shared between the request loop and the SIGTERM handler: whether a request is being
# served, and whether a stop was asked for while it was.
_SHUTDOWN = {"busy": False, "stopping": False}
# A pod's terminationGracePeriodSeconds defaults to 30 s; stopping 5 s earlier leaves the
# sidecar time to route the result before the kubelet's SIGKILL.
DEFAULT_SHUTDOWN_GRACE = 25.0
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _shutdown_grace():
    """TROUPE_SHUTDOWN_GRACE (`25s`, `1m30s`, `500ms` or plain seconds), default 25 s."""
    text = (os.environ.get("TROUPE_SHUTDOWN_GRACE") or "").strip()
    if not text:
        return DEFAULT_SHUTDOWN_GRACE
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        logger.warning("TROUPE_SHUTDOWN_GRACE=%r is not a duration such as 25s; using %gs", text, DEFAULT_SHUTDOWN_GRACE)
        return DEFAULT_SHUTDOWN_GRACE
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _exit_past_grace(_signum, _frame):
    logger.warning("the call in progress did not finish within TROUPE_SHUTDOWN_GRACE; exiting")
    os._exit(1)


def _stop_gracefully(signum, cleanup):
    """SIGTERM/SIGINT: exit now when idle; else let the running call finish, at most the grace.

    The hard stop is an interval timer whose SIGALRM keeps its default action, so the
    kernel ends the process even when the handler never returns to the interpreter
    (a C extension holding the GIL) - a watchdog thread could not. As PID 1 of a
    container the kernel drops default-action signals, so there a Python handler exits
    instead (and the kubelet's SIGKILL covers a handler stuck in C code). A second
    signal stops at once.
    """
    state = _SHUTDOWN
    if not state["busy"] or state["stopping"]:
        logger.info("received signal %d, shutting down", signum)
        cleanup()
        raise SystemExit(0)
    state["stopping"] = True
    grace = _shutdown_grace()
    logger.info("received signal %d: finishing the call in progress (at most %gs), then exiting", signum, grace)
    cleanup()
    signal.signal(signal.SIGALRM, _exit_past_grace if os.getpid() == 1 else signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, max(grace, 0.001))


def _watch_parent(cleanup):
    """Exit when the launching process dies (Troupe extension, TROUPE_PARENT_PID).

    `troupe up` may be killed with SIGKILL, which it cannot forward; without this its
    runtimes (and the models they hold) would outlive it. Polling getppid() needs no
    privileges and works wherever the runtime runs; in a pod the variable is unset.
    """
    text = (os.environ.get("TROUPE_PARENT_PID") or "").strip()
    if not text.isdigit():
        return
    parent = int(text)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                logger.warning("parent process %d is gone; exiting", parent)
                cleanup()
                os._exit(0)

    threading.Thread(target=watch, name="troupe-parent-watch", daemon=True).start()


def main():
    """Load ASYA_HANDLER, bind the socket, serve until SIGTERM/SIGINT; returns the exit code."""
    _configure_logging()
    problem = _apply_memory_limit()
    if problem:
        return _fatal(problem)
    sock_dir = os.environ.get("ASYA_SOCKET_DIR") or "/var/run/asya"
    sock_name = os.environ.get("ASYA_SOCKET_NAME") or "asya-runtime.sock"
    sock_path = os.path.join(sock_dir, sock_name)
    ready_path = os.path.join(sock_dir, "runtime-ready")
    bound = []

    def cleanup():
        paths = [ready_path] + bound
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass

    def on_signal(signum, _frame):
        _stop_gracefully(signum, cleanup)

    # Installed first so a stop request during a slow handler import still exits 0.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _watch_parent(cleanup)
    # A ready file left by an earlier run must not announce this one while it loads.
    try:
        os.unlink(ready_path)
    except OSError:
        pass

    chmod_text = os.environ.get("ASYA_SOCKET_CHMOD", "0o666").strip()
    mode = None
    if chmod_text:
        try:
            mode = int(chmod_text, 8)
        except ValueError:
            return _fatal("ASYA_SOCKET_CHMOD=%r is not an octal mode such as 0o666 (empty = no chmod)" % chmod_text)
    cwd = os.getcwd()
    if cwd not in sys.path:
        # Handlers usually live in the container's working directory.
        sys.path.append(cwd)
    if os.environ.get("ASYA_STATE_PROXY_MOUNTS"):
        logger.warning("ASYA_STATE_PROXY_MOUNTS is set but not supported by this runtime; ignoring it")
    handler_mode = (os.environ.get("ASYA_HANDLER_MODE") or "").strip()
    if handler_mode.lower() == "payload":
        logger.warning("ASYA_HANDLER_MODE=payload is deprecated: handlers always receive the payload; remove the setting")
    elif handler_mode:
        # Silently handing an envelope-mode handler the payload would corrupt its output.
        _fatal("ASYA_HANDLER_MODE=%s: envelope mode is not supported (Asya's current runtime removed it too); "
               "handlers receive the payload and read or change the route, headers and status with the ABI "
               "(yield \"GET\", \"/route/next\" ...; protocol.md section 6.3); remove the setting" % handler_mode)
        return 2
    spec = (os.environ.get("ASYA_HANDLER") or "").strip()
    ignore = [d.strip() for d in (os.environ.get("ASYA_IGNORE_DECORATORS") or "").split(",") if d.strip()]
    try:
        func, kind = load_handler(spec, ignore)
    except HandlerLoadError as exc:
        return _fatal(str(exc), exc.cause)
    validate = _env_flag("ASYA_ENABLE_VALIDATION", True)
    # Import-time objects (often large ML libraries) never become garbage; keeping them
    # out of the collector's scans keeps full collections cheap on the request path.
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()

    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.makedirs(sock_dir, exist_ok=True)
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        lsock.bind(sock_path)
        bound.append(sock_path)
        lsock.listen(128)
        if mode is not None:
            os.chmod(sock_path, mode)
        # Logged before the ready file exists, so whoever waits for the file also sees
        # the line (a stop right after readiness must not race it).
        logger.info("runtime ready: handler=%s kind=%s socket=%s", spec, kind, sock_path)
        with open(ready_path, "w") as fh:
            fh.write("ready")
    except OSError as exc:
        lsock.close()
        cleanup()
        return _fatal("cannot set up the runtime socket %s: %s" % (sock_path, exc), exc)

    runtime = Runtime(func, kind, validate)
    try:
        runtime.serve_forever(lsock)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - report and exit non-zero
        return _fatal("runtime loop failed: %s" % exc, exc)
    finally:
        cleanup()
        try:
            lsock.close()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
