"""troupe-bench floor: the three POST /invoke round trips of the pipeline, made directly
against the runtime sockets by one sequential stdlib client (keep-alive HTTP/1.1).

usage: floor_client.py N WARMUP PID,PID,... ACTOR=SOCKET [ACTOR=SOCKET ...]
Prints one JSON line: pipelines, elapsed_s, cpu_s (this client), runtime_cpu_s (the
runtime PIDs, from /proc), p50_us, p99_us, mean_us, all for the measured loop only.
"""

import json
import socket
import sys
import time
import uuid


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return [path, s, s.makefile("rb")]


def invoke(conn, body):
    path, s, rf = conn
    s.sendall(
        b"POST /invoke HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status = rf.readline()
    length = 0
    close = False
    while True:
        line = rf.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    data = rf.read(length)
    if close:
        # The runtime may close after a response; the next call needs a fresh connection.
        rf.close()
        s.close()
        conn[:] = connect(path)
    if not status.startswith(b"HTTP/1.1 200"):
        raise SystemExit("runtime at %s answered %r: %r" % (path, status, data[:500]))
    return json.loads(data)


def pipeline(conns, actors, pid, seq):
    # The same envelope the sidecars send: stamped status, first-attempt header, and the
    # route and payload of the previous hop's frame.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    route = {"prev": [], "curr": actors[0], "next": actors[1:]}
    headers = {}
    payload = {"seq": seq, "text": "hello"}
    for conn, actor in zip(conns, actors):
        headers["x-asya-first-attempt"] = stamp
        env = {
            "id": pid,
            "route": route,
            "headers": headers,
            "status": {
                "phase": "processing",
                "actor": actor,
                "attempt": 1,
                "max_attempts": 0,
                "created_at": stamp,
                "updated_at": stamp,
            },
            "payload": payload,
        }
        out = invoke(conn, json.dumps(env, separators=(",", ":")).encode())
        frame = out["frames"][0]
        route = frame["route"]
        payload = frame["payload"]
        headers = frame.get("headers") or headers
    if route["curr"] != "" or payload.get("seq") != seq:
        raise SystemExit("pipeline %s ended with route %r payload %r" % (pid, route, payload))


def runtime_cpu(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / 100.0  # USER_HZ


def main():
    n = int(sys.argv[1])
    warmup = int(sys.argv[2])
    pids = [int(p) for p in sys.argv[3].split(",") if p]
    pairs = [a.split("=", 1) for a in sys.argv[4:]]
    actors = [a for a, _ in pairs]
    conns = [connect(p) for _, p in pairs]
    for i in range(warmup):
        pipeline(conns, actors, str(uuid.uuid4()), -1 - i)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    lat = []
    clock = time.perf_counter
    rt0 = runtime_cpu(pids)
    cpu0 = time.process_time()
    t0 = clock()
    for i, pid in enumerate(ids):
        s = clock()
        pipeline(conns, actors, pid, i)
        lat.append(clock() - s)
    elapsed = clock() - t0
    cpu = time.process_time() - cpu0
    rt = runtime_cpu(pids) - rt0
    lat.sort()

    def pct(p):
        return lat[max(1, min(len(lat), -(-int(p * len(lat)) // 100))) - 1] * 1e6 if lat else 0.0

    print(json.dumps({
        "pipelines": n,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "runtime_cpu_s": rt,
        "p50_us": pct(50),
        "p99_us": pct(99),
        "mean_us": (sum(lat) / len(lat) * 1e6) if lat else 0.0,
    }))


if __name__ == "__main__":
    main()
