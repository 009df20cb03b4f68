"""One measured run of Celery or Dramatiq, started by `troupe-bench brokers`.

    harness.py celery|dramatiq --broker-url URL --work noop|cpu1ms --pipelines N
        --time-limit S [--warmup W] [--unloaded U] [--broker-pid PID] [--prefix P]
        [--celery-pool solo|prefork] [--dramatiq-threads T]

Starts one worker process per queue (a, b, c), then, the same phases as troupe-bench's
Troupe and floor runs:

1. warm-up: W pipelines one at a time (not measured; the first one waits for the workers);
2. unloaded: U pipelines one at a time, each timed from just before the publish call to the
   arrival of its completion datagram (the last step calls `work.done`);
3. loaded: worker a is stopped, N pipelines are published onto queue a, worker a is started
   again; throughput is counted from the first completion to the last ((n - 1) pipelines over
   that span, so worker start-up is excluded), and the CPU time of the worker process trees and
   of the broker is read at those two instants.

Bounded: every wait has a deadline, the loaded phase stops after S seconds whatever has
arrived, and every process this script starts is stopped by its pid before it exits.
Prints one JSON object on stdout.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")
FIRST_TIMEOUT = 90.0  # the first warm-up pipeline waits for three Python workers to start
STEP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def log(msg):
    print(f"harness: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc accounting


def proc_table():
    """pid -> (ppid, cpu ticks) for every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = text.rsplit(")", 1)[1].split()
        table[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return table


def tree(table, root):
    """`root` and its descendants."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(p for p, (pp, _) in table.items() if pp == pid)
    return out


def cpu_of(table, roots):
    """CPU seconds of each root's process tree."""
    return [sum(table[p][1] for p in tree(table, r)) / TICKS for r in roots]


# ---------------------------------------------------------------- workers


class Workers:
    def __init__(self, system, args, env):
        self.system, self.args, self.env = system, args, env
        self.app = __import__(f"{system}_app")
        self.procs = {}

    def command(self, queue):
        if self.system == "celery":
            return self.app.worker_command(sys.executable, queue, self.args.celery_pool)
        return self.app.worker_command(sys.executable, queue, self.args.dramatiq_threads)

    def start(self, queue):
        log_path = os.path.join(self.env["BENCH_RUN_DIR"], f"worker-{queue}.log")
        out = open(log_path, "ab")
        self.procs[queue] = subprocess.Popen(
            self.command(queue),
            cwd=HERE,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def stop(self, queue):
        proc = self.procs.pop(queue, None)
        if proc is None:
            return
        # Children (Dramatiq's worker process, prefork's pool) are stopped by their parent;
        # any left after it exits are killed by pid.
        kids = tree(proc_table(), proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"worker {queue} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        for pid in kids:
            if pid != proc.pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_all(self):
        for q in list(self.procs):
            self.stop(q)

    def pids(self):
        return [self.procs[q].pid for q in sorted(self.procs)]

    def check_alive(self):
        for q, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(
                    f"worker {q} exited with {p.returncode}; see {self.env['BENCH_RUN_DIR']}/worker-{q}.log"
                )


# ---------------------------------------------------------------- phases


def receive_until(sock, want, deadline, workers):
    """Waits for the completion datagram of pipeline `want`; returns its arrival time."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            workers.check_alive()
            raise TimeoutError(f"pipeline {want} did not complete in time")
        sock.settimeout(min(left, 1.0))
        try:
            data = sock.recv(256)
        except socket.timeout:
            workers.check_alive()
            continue
        now = time.perf_counter()
        if data.decode() == want:
            return now


def sequential(sock, publish, n, workers, first_timeout=STEP_TIMEOUT):
    lat = []
    for i in range(n):
        pid = str(uuid.uuid4())
        p = {"id": pid, "seq": i, "text": "hello"}
        t0 = time.perf_counter()
        publish(p)
        t1 = receive_until(
            sock, pid, time.monotonic() + (first_timeout if i == 0 else STEP_TIMEOUT), workers
        )
        lat.append(t1 - t0)
    return lat


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    import math

    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[max(1, min(rank, len(sorted_values))) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["celery", "dramatiq"])
    ap.add_argument("--broker-url", required=True)
    ap.add_argument("--work", choices=["noop", "cpu1ms"], default="noop")
    ap.add_argument("--pipelines", type=int, default=2000)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--unloaded", type=int, default=200)
    ap.add_argument("--broker-pid", type=int, default=0)
    ap.add_argument("--prefix", default=f"bench_{os.getpid()}_")
    ap.add_argument("--celery-pool", choices=["solo", "prefork"], default="solo")
    ap.add_argument("--dramatiq-threads", type=int, default=1)
    args = ap.parse_args()
    if args.pipelines < 2:
        ap.error("--pipelines must be at least 2")

    run_dir = tempfile.mkdtemp(prefix="troupe-brokers-")
    sock_path = os.path.join(run_dir, "done.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    # Room for a whole loaded run's completions even if this process is descheduled.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    env = dict(os.environ)
    env.update(
        BENCH_BROKER_URL=args.broker_url,
        BENCH_QUEUE_PREFIX=args.prefix,
        BENCH_WORK=args.work,
        BENCH_DONE_SOCK=sock_path,
        BENCH_RUN_DIR=run_dir,
        PYTHONPATH=HERE + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    # This process publishes with the same app module as the workers.
    os.environ.update(env)
    sys.path.insert(0, HERE)
    workers = Workers(args.system, args, env)
    app = workers.app
    qa, qb, qc = app.queues()
    result = {"system": args.system, "work": args.work, "run_dir": run_dir}
    if args.system == "celery":
        result["settings"] = {
            "pool": args.celery_pool,
            "concurrency": 1,
            "task_acks_late": True,
            "worker_prefetch_multiplier": app.app.conf.worker_prefetch_multiplier,
            "result_backend": None,
            "flags": "--without-gossip --without-mingle --without-heartbeat",
        }
    else:
        result["settings"] = {"processes": 1, "threads": args.dramatiq_threads}
    try:
        for q in (qa, qb, qc):
            workers.start(q)
        log(f"{args.system}: workers started, warming up")
        sequential(sock, app.publish, args.warmup, workers, first_timeout=FIRST_TIMEOUT)

        roots = workers.pids()
        t = proc_table()
        c0 = cpu_of(t, roots)
        b0 = cpu_of(t, [args.broker_pid])[0] if args.broker_pid else 0.0
        start = time.perf_counter()
        lat = sorted(sequential(sock, app.publish, args.unloaded, workers))
        wall = time.perf_counter() - start
        t = proc_table()
        c1 = cpu_of(t, roots)
        b1 = cpu_of(t, [args.broker_pid])[0] if args.broker_pid else 0.0
        result["unloaded"] = {
            "pipelines": args.unloaded,
            "wall_s": wall,
            "p50_us": percentile(lat, 50) * 1e6,
            "p99_us": percentile(lat, 99) * 1e6,
            "cpu_workers_s": sum(c1) - sum(c0),
            "cpu_broker_s": b1 - b0,
        }
        log(f"{args.system}: unloaded p50 {percentile(lat, 50) * 1e3:.2f} ms")

        # Loaded: queue the whole batch while nothing consumes queue a.
        workers.stop(qa)
        ids = set()
        t0 = time.perf_counter()
        for i in range(args.pipelines):
            pid = str(uuid.uuid4())
            ids.add(pid)
            app.publish({"id": pid, "seq": i, "text": "hello"})
        result["preload_s"] = time.perf_counter() - t0
        workers.start(qa)
        deadline = time.monotonic() + args.time_limit
        arrivals = []
        seen = set()
        first = None
        while len(seen) < len(ids):
            left = deadline - time.monotonic()
            if left <= 0:
                log(f"{args.system}: time limit reached after {len(seen)} pipelines")
                break
            sock.settimeout(min(left, 1.0))
            try:
                data = sock.recv(256)
            except socket.timeout:
                workers.check_alive()
                continue
            now = time.perf_counter()
            pid = data.decode()
            if pid not in ids or pid in seen:
                continue
            seen.add(pid)
            arrivals.append(now)
            if first is None:
                t = proc_table()
                first = (cpu_of(t, workers.pids()), cpu_of(t, [args.broker_pid])[0] if args.broker_pid else 0.0)
        t = proc_table()
        last = (cpu_of(t, workers.pids()), cpu_of(t, [args.broker_pid])[0] if args.broker_pid else 0.0)
        n = len(arrivals)
        if n < 2:
            raise RuntimeError(f"only {n} pipelines completed in the loaded phase")
        result["loaded"] = {
            "pipelines": n - 1,
            "requested": args.pipelines,
            "timed_out": n < args.pipelines,
            "wall_s": arrivals[-1] - arrivals[0],
            "cpu_workers_s": sum(last[0]) - sum(first[0]),
            "cpu_by_queue_s": [l - f for l, f in zip(last[0], first[0])],
            "cpu_broker_s": last[1] - first[1],
        }
        log(f"{args.system}: loaded {(n - 1) / (arrivals[-1] - arrivals[0]):.0f} pipelines/s")
    finally:
        workers.stop_all()
        sock.close()
        try:
            os.unlink(sock_path)
        except OSError:
            pass
    print(json.dumps(result))


if __name__ == "__main__":
    main()
