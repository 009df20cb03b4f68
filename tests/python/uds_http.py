"""Minimal HTTP/1.1 client over a Unix socket for testing the Python runtime.

Keeps one connection open across calls (keep-alive) and never reconnects on its own, so
tests can tell whether the server kept the connection. Reads SSE bodies to EOF.
"""

import json
import socket

ENVELOPE = {
    "id": "env-1",
    "route": {"prev": ["a"], "curr": "b", "next": ["c", "d"]},
    "headers": {"h1": "v1"},
    "status": {"phase": "processing", "actor": "b", "attempt": 1, "max_attempts": 0},
    "payload": {"q": 1},
}


def envelope(**overrides):
    """A copy of ENVELOPE with top-level fields replaced (None deletes a field)."""
    env = json.loads(json.dumps(ENVELOPE))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class Response:
    """A parsed HTTP response."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def is_sse(self):
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def events(self):
        """SSE events as [(event, parsed data)], parsed strictly per the wire format."""
        out = []
        text = self.body.decode()
        assert text.endswith("\n\n"), "SSE body must end with a blank line: %r" % text[-50:]
        for block in text[:-2].split("\n\n"):
            lines = block.split("\n")
            assert len(lines) == 2, "each event is exactly one event line and one data line: %r" % block
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            out.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
        return out

    @property
    def frames(self):
        """Frames from either a JSON or an SSE reply."""
        if self.is_sse:
            return [data for name, data in self.events if name == "downstream"]
        if self.status == 204:
            return []
        return self.json["frames"]

    def __repr__(self):
        return "Response(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


class UdsClient:
    """One HTTP connection to a Unix socket."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.closed_by_server = False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, target, body=None, headers=None, version="HTTP/1.1"):
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        lines = ["%s %s %s" % (method, target, version), "Host: runtime"]
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
            hdrs.setdefault("Content-Length", str(len(body)))
        for key, value in hdrs.items():
            lines.append("%s: %s" % (key, value))
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
        self.sock.sendall(raw)
        return self.read_response()

    def invoke(self, env, **kw):
        return self.request("POST", "/invoke", env, **kw)

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("server closed the connection before a full response head")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, _reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        status = int(status)
        if status == 100:
            return self.read_response()
        if status == 204:
            body = b""
        elif "content-length" in headers:
            need = int(headers["content-length"])
            while len(self.buf) < need:
                if not self._fill():
                    raise ConnectionError("server closed the connection mid-body")
            body, self.buf = self.buf[:need], self.buf[need:]
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
            self.closed_by_server = True
        if headers.get("connection", "").lower() == "close" and not self.closed_by_server:
            assert not self.buf, "bytes after a Connection: close response"
            assert self.sock.recv(1) == b"", "server must close after Connection: close"
            self.closed_by_server = True
        return Response(status, headers, body)


def call(path, method, target, body=None, **kw):
    """One request on a fresh connection."""
    with UdsClient(path) as client:
        return client.request(method, target, body, **kw)


def invoke(path, env):
    """POST /invoke on a fresh connection."""
    return call(path, "POST", "/invoke", env)
