#!/usr/bin/env python3
"""Benchmark: no-op handler round trips over one keep-alive Unix-socket connection.

Usage: python3 tests/python/bench_runtime.py [N] [--handler echo|none|gen] [--payload-kb K]

Prints calls/s (wall clock, client and runtime together) and the runtime process's CPU
time per call (utime + stime from /proc/<pid>/stat, measured over the timed loop only).
Not collected by pytest (no test_ prefix).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIME_PY = Path(__file__).resolve().parents[2] / "crates" / "troupe-runtime" / "python" / "troupe_runtime.py"

HANDLERS = '''
def echo(payload):
    return payload

def none(payload):
    return None

def gen(payload):
    yield payload
'''


def cpu_seconds(pid):
    """(user, system) CPU seconds of process `pid`."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    tick = float(os.sysconf("SC_CLK_TCK"))
    return int(fields[11]) / tick, int(fields[12]) / tick


def sidecar_like_envelope(payload_kb):
    return {
        "id": "5f0c7a1e-3b7e-4e8e-9a57-2f0d7f1f9c11",
        "route": {"prev": ["ingest"], "curr": "bench", "next": ["store"]},
        "headers": {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "x-asya-first-attempt": "2026-01-01T00:00:00Z",
        },
        "status": {
            "phase": "processing",
            "actor": "bench",
            "attempt": 1,
            "max_attempts": 0,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        },
        "payload": {"query": "hello", "blob": "x" * (payload_kb * 1024)},
    }


def read_response(sock, buf):
    """Read one Content-Length/204 response or an SSE stream; returns (status, rest)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("runtime closed the connection")
        buf += data
    head = buf[:end]
    status = int(head[9:12])
    rest = buf[end + 4 :]
    lower = head.lower()
    idx = lower.find(b"content-length:")
    if idx < 0:
        if status == 204:
            return status, rest
        while True:  # SSE: read to EOF
            data = sock.recv(262144)
            if not data:
                return status, b""
    length = int(head[idx + 15 : head.find(b"\r\n", idx) if head.find(b"\r\n", idx) >= 0 else None])
    while len(rest) < length:
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("runtime closed the connection mid-body")
        rest += data
    return status, rest[length:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=20000)
    parser.add_argument("--handler", default="echo", choices=["echo", "none", "gen"])
    parser.add_argument("--payload-kb", type=int, default=0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="troupe-bench-"))
    (tmp / "bench_handlers.py").write_text(HANDLERS)
    env = dict(
        os.environ,
        ASYA_HANDLER="bench_handlers." + args.handler,
        ASYA_SOCKET_DIR=str(tmp),
        PYTHONPATH=str(tmp),
        ASYA_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen([sys.executable, str(RUNTIME_PY)], env=env)
    try:
        deadline = time.monotonic() + 20
        while not (tmp / "runtime-ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("runtime did not start")
            time.sleep(0.01)
        body = json.dumps(sidecar_like_envelope(args.payload_kb), separators=(",", ":")).encode()
        request = (
            b"POST /invoke HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        sse = args.handler == "gen"
        sock_path = str(tmp / "asya-runtime.sock")

        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            return s

        sock = connect()
        buf = b""
        for _ in range(min(1000, args.n)):  # warm-up
            sock.sendall(request)
            _, buf = read_response(sock, buf)
            if sse:
                sock.close()
                sock, buf = connect(), b""
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        for _ in range(args.n):
            sock.sendall(request)
            status, buf = read_response(sock, buf)
            if sse:
                sock.close()
                sock, buf = connect(), b""
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(proc.pid)
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        cpu = user + system
        assert status in (200, 204), status
        sock.close()
        print(
            "handler=%s calls=%d body=%dB  %.0f calls/s  wall %.1f us/call  "
            "runtime CPU %.1f us/call (user %.1f, sys %.1f)"
            % (
                args.handler,
                args.n,
                len(body),
                args.n / elapsed,
                elapsed / args.n * 1e6,
                cpu / args.n * 1e6,
                user / args.n * 1e6,
                system / args.n * 1e6,
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
