"""Helpers for the broker end-to-end tests (test_brokers.py): throwaway brokers started by
scripts/services/*.sh, plain broker clients (pika, boto3) that publish and read raw
bytes the way Asya's components do, and pods made of real processes: a `troupe runtime`
next to a `troupe sidecar`, configured only by the environment (protocol.md §15).

Every process is started in its own session and stopped by PID; every wait is bounded.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services"
# Python handlers the pods run (fixture files).
HANDLERS = Path(__file__).resolve().parent / "brokers"

# Keys a Troupe envelope may carry on the wire (protocol.md §2), and those it must.
ENVELOPE_KEYS = {"id", "parent_id", "route", "headers", "status", "payload"}
REQUIRED_KEYS = {"id", "route", "payload"}
STATUS_KEYS = {"phase", "reason", "actor", "attempt", "max_attempts", "created_at",
               "updated_at", "deadline_at", "error"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def wait_until(predicate, timeout, what, interval=0.1, details=None):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r}){extra}")
        time.sleep(interval)


def unique_namespace():
    return "t" + uuid.uuid4().hex[:10]


def envelope(task_id, curr, nxt=(), payload=None, prev=(), headers=None, status=None):
    """Asya's envelope as its gateway publishes it (protocol.md §2)."""
    env = {"id": task_id, "route": {"prev": list(prev), "curr": curr, "next": list(nxt)},
           "payload": {} if payload is None else payload}
    if headers:
        env["headers"] = headers
    if status:
        env["status"] = status
    return json.dumps(env).encode()


def clean_env(extra=None):
    """The test process's environment without any ASYA_/TROUPE_/AWS_ setting."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASYA_", "TROUPE_", "AWS_"))}
    env.update(extra or {})
    return env


# -- brokers -----------------------------------------------------------------------------

class Service:
    """A broker started by scripts/services/NAME.sh in its own folder."""

    def __init__(self, name, folder):
        self.name = name
        self.script = SERVICES / f"{name}.sh"
        self.dir = Path(folder)
        self.url = None

    def _run(self, *args, env=None, timeout=150):
        res = subprocess.run(["bash", str(self.script), *args], capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, **(env or {})},
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise AssertionError(f"{self.script.name} {' '.join(args)} failed ({res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res.stdout.strip()

    def start(self, *args, env=None, attempts=2):
        """Starts the server; a failed start (say, a port taken between the script's
        check and the server's bind) is retried on fresh ports."""
        for attempt in range(attempts):
            try:
                self.url = self._run("start", str(self.dir), *args, env=env).splitlines()[-1]
                return self.url
            except AssertionError:
                try:
                    self.stop()
                except AssertionError:
                    pass
                if attempt + 1 == attempts:
                    raise
        return self.url

    def stop(self):
        self._run("stop", str(self.dir))

    def restart(self):
        out = self._run("restart", str(self.dir))
        if out:
            self.url = out.splitlines()[-1]
        return self.url


class Message:
    """A message read with a plain client: raw body plus broker-level metadata."""

    def __init__(self, body, **meta):
        self.body = body
        self.meta = meta

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"Message({self.body[:200]!r}, {self.meta!r})"


class RabbitSpace:
    """One namespace (and exchange) on a RabbitMQ node, seen through pika."""

    kind = "rabbitmq"

    def __init__(self, url, namespace, exchange):
        import pika

        self.pika = pika
        self.url = url
        self.ns = namespace
        self.exchange = exchange
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def env(self):
        """The sidecar's transport variables (protocol.md §15)."""
        return {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": self.url,
                "ASYA_RABBITMQ_EXCHANGE": self.exchange}

    def queue(self, actor):
        return f"asya-{self.ns}-{actor}"

    def publish(self, actor, body, properties=None, timeout=10):
        """As Asya's gateway and sidecar publish: exchange, key = actor, persistent JSON.
        A message returned unroutable was not stored (the consumer declared its queue but
        has not bound it yet), so it is published again."""
        props = properties or self.pika.BasicProperties(content_type="application/json",
                                                        delivery_mode=2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ch.basic_publish(self.exchange, actor, body, props, mandatory=True)
                return
            except self.pika.exceptions.UnroutableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def exists(self, queue):
        ch = self.conn.channel()
        try:
            ch.queue_declare(queue, passive=True)
            return True
        except self.pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if ch.is_open:
                ch.close()

    def wait_queue(self, actor, timeout=30):
        q = self.queue(actor)
        wait_until(lambda: self.exists(q), timeout, f"queue {q} to be declared")

    def depth(self, queue):
        ch = self.conn.channel()
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        except self.pika.exceptions.ChannelClosedByBroker:
            return 0
        finally:
            if ch.is_open:
                ch.close()

    def get(self, queue, timeout=20):
        """Takes one message off `queue` (acked); None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.exists(queue):
                time.sleep(0.1)
                continue
            method, props, body = self.ch.basic_get(queue, auto_ack=True)
            if method is not None:
                return Message(body, exchange=method.exchange, routing_key=method.routing_key,
                               redelivered=method.redelivered, content_type=props.content_type,
                               delivery_mode=props.delivery_mode, headers=props.headers or {},
                               properties=props)
            time.sleep(0.1)
        return None

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - already closed by the broker
            pass


class SqsSpace:
    """One namespace on an SQS endpoint (moto), seen through boto3."""

    kind = "sqs"
    region = "us-east-1"

    def __init__(self, endpoint, namespace):
        import boto3

        self.endpoint = endpoint
        self.ns = namespace
        self.client = boto3.client("sqs", endpoint_url=endpoint, region_name=self.region,
                                   aws_access_key_id="test", aws_secret_access_key="test")
        self.urls = {}

    def env(self):
        # The visibility timeout bounds how long a killed sidecar's message stays hidden.
        return {"ASYA_TRANSPORT": "sqs", "ASYA_AWS_REGION": self.region,
                "ASYA_SQS_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "ASYA_SQS_VISIBILITY_TIMEOUT": "10",
                "ASYA_SQS_WAIT_TIME_SECONDS": "2"}

    def queue(self, actor):
        return f"asya-{self.ns}-{actor}"

    def url_of(self, queue):
        if queue not in self.urls:
            self.urls[queue] = self.client.get_queue_url(QueueName=queue)["QueueUrl"]
        return self.urls[queue]

    def exists(self, queue):
        try:
            self.url_of(queue)
            return True
        except self.client.exceptions.QueueDoesNotExist:
            return False

    def wait_queue(self, actor, timeout=30):
        q = self.queue(actor)
        wait_until(lambda: self.exists(q), timeout, f"queue {q} to be created")

    def publish(self, actor, body, attributes=None):
        """As Asya's gateway and sidecar send: SendMessage with the envelope as body."""
        kwargs = {"QueueUrl": self.url_of(self.queue(actor)), "MessageBody": body.decode("utf-8")}
        if attributes:
            kwargs["MessageAttributes"] = attributes
        self.client.send_message(**kwargs)

    def depth(self, queue):
        if not self.exists(queue):
            return 0
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.url_of(queue), AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def get(self, queue, timeout=20):
        """Takes one message off `queue` (deleted); None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.exists(queue):
                time.sleep(0.2)
                continue
            res = self.client.receive_message(
                QueueUrl=self.url_of(queue), MaxNumberOfMessages=1, WaitTimeSeconds=1,
                MessageAttributeNames=["All"], AttributeNames=["All"])
            for m in res.get("Messages", []):
                self.client.delete_message(QueueUrl=self.url_of(queue),
                                           ReceiptHandle=m["ReceiptHandle"])
                return Message(m["Body"].encode("utf-8"),
                               attributes=m.get("MessageAttributes") or {},
                               system=m.get("Attributes") or {})
        return None

    def close(self):
        pass


class PubSubSpace:
    """One namespace on a Pub/Sub emulator, seen through its REST API (no credentials)."""

    kind = "pubsub"
    project = "troupe-test"

    def __init__(self, endpoint, namespace):
        self.endpoint = endpoint.rstrip("/")
        self.hostport = self.endpoint.split("://", 1)[-1]
        self.ns = namespace

    def env(self):
        # The ack deadline (2 x the actor timeout) bounds how long a killed sidecar's
        # message stays out.
        return {"ASYA_TRANSPORT": "pubsub", "ASYA_PUBSUB_PROJECT_ID": self.project,
                "ASYA_PUBSUB_ENDPOINT": self.hostport, "ASYA_RESILIENCY_ACTOR_TIMEOUT": "5s"}

    def queue(self, actor):
        return f"asya-{self.ns}-{actor}"

    def _call(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.endpoint}/v1/projects/{self.project}/{path}",
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def exists(self, queue):
        """The subscription exists (a topic alone would drop what is published)."""
        return self._call("GET", f"subscriptions/{queue}")[0] == 200

    def wait_queue(self, actor, timeout=30):
        q = self.queue(actor)
        wait_until(lambda: self.exists(q), timeout, f"subscription {q} to be created")

    def publish(self, actor, body, attributes=None):
        """As Asya's gateway publishes: the envelope is the message data."""
        msg = {"data": base64.b64encode(body).decode()}
        if attributes:
            msg["attributes"] = attributes
        code, reply = self._call("POST", f"topics/{self.queue(actor)}:publish", {"messages": [msg]})
        assert code == 200, (code, reply)

    def _pull(self, queue, n):
        code, reply = self._call("POST", f"subscriptions/{queue}:pull",
                                 {"maxMessages": n, "returnImmediately": True})
        return reply.get("receivedMessages", []) if code == 200 else []

    def depth(self, queue):
        """Ready messages, counted by pulling them and handing them straight back."""
        if not self.exists(queue):
            return 0
        got = self._pull(queue, 100)
        if got:
            self._call("POST", f"subscriptions/{queue}:modifyAckDeadline",
                       {"ackIds": [m["ackId"] for m in got], "ackDeadlineSeconds": 0})
        return len(got)

    def get(self, queue, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exists(queue):
                for m in self._pull(queue, 1):
                    self._call("POST", f"subscriptions/{queue}:acknowledge", {"ackIds": [m["ackId"]]})
                    msg = m["message"]
                    return Message(base64.b64decode(msg.get("data", "")),
                                   attributes=msg.get("attributes") or {})
            time.sleep(0.2)
        return None

    def close(self):
        pass


class _Resp:
    """A minimal RESP client (one connection, one command at a time)."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise AssertionError(f"unexpected RESP reply {line!r}")

    def close(self):
        self.sock.close()


class RedisError(str):
    pass


class RedisSpace:
    """One namespace on a Redis server (streams, consumer group `asya`), over RESP."""

    kind = "redis"

    def __init__(self, url, namespace):
        self.url = url
        host, port = re.match(r"redis://([^:/]+):(\d+)", url).groups()
        self.ns = namespace
        self.r = _Resp(host, port)

    def env(self):
        # Entries of a killed consumer are reclaimed after 2 x the actor timeout.
        return {"ASYA_TRANSPORT": "redis", "TROUPE_REDIS_URL": self.url,
                "ASYA_RESILIENCY_ACTOR_TIMEOUT": "3s"}

    def queue(self, actor):
        return f"asya-{self.ns}-{actor}"

    def exists(self, queue):
        groups = self.r.cmd("XINFO", "GROUPS", queue)
        return isinstance(groups, list) and len(groups) > 0

    def wait_queue(self, actor, timeout=30):
        q = self.queue(actor)
        wait_until(lambda: self.exists(q), timeout, f"stream {q} and its group")

    def publish(self, actor, body):
        reply = self.r.cmd("XADD", self.queue(actor), "*", "body", body)
        assert not isinstance(reply, RedisError), reply

    def depth(self, queue):
        n = self.r.cmd("XLEN", queue)
        return n if isinstance(n, int) else 0

    def get(self, queue, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = self.r.cmd("XRANGE", queue, "-", "+", "COUNT", "1")
            if isinstance(entries, list) and entries:
                entry_id, fields = entries[0]
                self.r.cmd("XDEL", queue, entry_id)
                f = dict(zip(fields[::2], fields[1::2]))
                return Message(f.get(b"body", b""), fields={k.decode(): v for k, v in f.items()})
            time.sleep(0.1)
        return None

    def close(self):
        self.r.close()


class NatsSpace:
    """One namespace on a NATS JetStream server, over the plain NATS text protocol."""

    kind = "nats"

    def __init__(self, url, namespace):
        self.url = url
        host, port = re.match(r"nats://([^:/]+):(\d+)", url).groups()
        self.ns = namespace
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")
        info = self.file.readline()
        assert info.startswith(b"INFO "), info
        self.inbox = f"_INBOX.{uuid.uuid4().hex}"
        self.seq = 0
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'
                          + f"SUB {self.inbox}.* 1\r\nPING\r\n".encode())
        while True:
            line = self.file.readline()
            assert line and not line.startswith(b"-ERR"), line
            if line.startswith(b"PONG"):
                break

    def env(self):
        # A killed consumer's message is redelivered after AckWait = 2 x the actor timeout.
        return {"ASYA_TRANSPORT": "nats", "TROUPE_NATS_URL": self.url,
                "ASYA_RESILIENCY_ACTOR_TIMEOUT": "3s"}

    def queue(self, actor):
        return f"asya-{self.ns}-{actor}"

    def request(self, subject, payload=b"", timeout=10):
        """Publishes with a reply subject and returns the reply's payload (bytes)."""
        self.seq += 1
        reply = f"{self.inbox}.{self.seq}"
        self.sock.sendall(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")
        self.sock.settimeout(timeout)
        while True:
            line = self.file.readline()
            if not line:
                raise AssertionError("NATS connection closed")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise AssertionError(line)
            elif line.startswith((b"MSG ", b"HMSG ")):
                parts = line.split()
                if parts[0] == b"HMSG":
                    hlen, total = int(parts[-2]), int(parts[-1])
                    data = self.file.read(total + 2)[hlen:-2]
                else:
                    data = self.file.read(int(parts[-1]) + 2)[:-2]
                if parts[1].decode() == reply:
                    return data

    def api(self, subject, body=None):
        return json.loads(self.request(f"$JS.API.{subject}",
                                       json.dumps(body).encode() if body is not None else b""))

    def exists(self, queue):
        return "error" not in self.api(f"STREAM.INFO.{queue}")

    def wait_queue(self, actor, timeout=30):
        q = self.queue(actor)
        wait_until(lambda: self.exists(q), timeout, f"stream {q}")

    def publish(self, actor, body):
        ack = json.loads(self.request(self.queue(actor), body))
        assert "error" not in ack and ack.get("seq"), ack

    def depth(self, queue):
        info = self.api(f"STREAM.INFO.{queue}")
        return 0 if "error" in info else info["state"]["messages"]

    def get(self, queue, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.api(f"STREAM.INFO.{queue}")
            if "error" not in info and info["state"]["messages"] > 0:
                seq = info["state"]["first_seq"]
                got = self.api(f"STREAM.MSG.GET.{queue}", {"seq": seq})
                if "message" in got:
                    self.api(f"STREAM.MSG.DELETE.{queue}", {"seq": seq})
                    m = got["message"]
                    return Message(base64.b64decode(m.get("data", "")), subject=m.get("subject"))
            time.sleep(0.1)
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- processes -----------------------------------------------------------------------------

class Proc:
    """A child process in its own session, output to a log file, stopped by PID."""

    def __init__(self, name, argv, env, log_path, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.proc = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still runs after {timeout}s:\n{self.tail()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=6000):
        return f"--- {self.name} ({self.log_path}) ---\n{self.log()[-n:]}"

    def wait_log(self, pattern, timeout, count=1):
        """Waits until `pattern` (regex) matched `count` lines of the log; returns the lines."""
        rx = re.compile(pattern)

        def found():
            lines = [ln for ln in self.log().splitlines() if rx.search(ln)]
            return lines if len(lines) >= count else None

        return wait_until(found, timeout, f"{self.name} to log /{pattern}/ x{count}",
                          details=self.tail)


class Sidecar(Proc):
    """`troupe sidecar`; probes and metrics on a port the kernel picks (read from its log)."""

    # Text (`addr=H:P`) or JSON (`"addr":"H:P"`) log lines.
    LISTEN = re.compile(r'sidecar probes listening.*?"?addr"?[=:]"?([0-9.]+:[0-9]+)')

    def __init__(self, binary, name, env, log_path):
        super().__init__(name, [binary, "sidecar"], env, log_path)
        self._addr = None
        self._offset = 0

    def start(self):
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._addr = None
        return super().start()

    @property
    def addr(self):
        if self._addr is None:
            def listening():
                if not self.alive():
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
                with open(self.log_path, "rb") as f:
                    f.seek(self._offset)
                    m = self.LISTEN.search(f.read().decode(errors="replace"))
                return m.group(1) if m else None

            self._addr = wait_until(listening, 30, f"{self.name} to listen", details=self.tail)
        return self._addr

    def http(self, path):
        try:
            with urllib.request.urlopen(f"http://{self.addr}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            return None, str(e)

    def ready(self):
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        return self.http("/readyz")[0] == 200

    def wait_ready(self, timeout=60):
        wait_until(self.ready, timeout, f"{self.name} /readyz 200", interval=0.1, details=self.tail)

    def metrics(self):
        """{(name, ((label, value), ...)): float} from /metrics."""
        code, text = self.http("/metrics")
        assert code == 200, (code, text)
        return parse_prometheus(text)

    def metric(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        total = 0.0
        for (n, lbls), v in self.metrics().items():
            d = dict(lbls)
            if n == name and all(d.get(k) == str(val) for k, val in labels.items()):
                total += v
        return total


SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line.strip())
        if not m:
            continue
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class Pod:
    """One actor as Kubernetes would run it: a `troupe runtime` process and a `troupe
    sidecar` process sharing a runtime socket folder."""

    def __init__(self, group, actor, handler, env, runtime_env=None):
        self.group = group
        self.actor = actor
        self.sock = Path(tempfile.mkdtemp(prefix="trp-", dir="/tmp"))
        group.cleanup_dirs.append(self.sock)
        logs = group.root / "logs"
        rt_env = clean_env({
            "ASYA_HANDLER": handler, "ASYA_SOCKET_DIR": str(self.sock),
            "PYTHONPATH": str(HANDLERS), "PYTHONDONTWRITEBYTECODE": "1",
            "CALLS_DIR": str(group.calls_dir), "TROUPE_PARENT_PID": str(os.getpid()),
            **(runtime_env or {}),
        })
        self.runtime = Proc(f"{actor}-runtime", [group.binary, "runtime", "--dir", self.sock / "rt"],
                            rt_env, logs / f"{actor}-runtime.log")
        self.sidecar = group.sidecar(actor, {**env, "ASYA_SOCKET_DIR": str(self.sock)},
                                     start=False)
        group.procs.append(self.runtime)

    def start(self):
        self.runtime.start()
        self.sidecar.start()
        return self

    def wait_ready(self, timeout=60):
        self.sidecar.wait_ready(timeout)

    def calls(self):
        return self.group.calls(self.actor)


class Group:
    """Every process one test starts; `stop_all` runs in the fixture's finalizer."""

    def __init__(self, binary, root):
        self.binary = Path(binary)
        self.root = Path(root)
        self.procs = []
        self.cleanup_dirs = []
        self.calls_dir = self.root / "calls"
        self.calls_dir.mkdir(parents=True, exist_ok=True)

    def sidecar_env(self, actor, namespace, transport_env, extra=None):
        return clean_env({
            "ASYA_ACTOR_NAME": actor, "ASYA_NAMESPACE": namespace,
            "ASYA_METRICS_ADDR": "127.0.0.1:0", "TROUPE_SHUTDOWN_GRACE": "5s",
            "ASYA_RUNTIME_READY_TIMEOUT": "60s", **transport_env, **(extra or {}),
        })

    def sidecar(self, actor, env, start=True, name=None):
        sc = Sidecar(self.binary, name or f"{actor}-sidecar", env,
                     self.root / "logs" / f"{name or actor}-sidecar.log")
        self.procs.append(sc)
        return sc.start() if start else sc

    def pod(self, actor, handler, namespace, transport_env, extra=None, runtime_env=None):
        env = self.sidecar_env(actor, namespace, transport_env, extra)
        return Pod(self, actor, handler, env, runtime_env).start()

    def crew(self, crew, namespace, transport_env, mount=None, extra=None):
        """A native crew sidecar (TROUPE_CREW); results under `mount` when given."""
        more = {"TROUPE_CREW": crew, **(extra or {})}
        if mount is not None:
            Path(mount).mkdir(parents=True, exist_ok=True)
            more["ASYA_PERSISTENCE_MOUNT"] = str(mount)
        return self.sidecar(crew, self.sidecar_env(crew, namespace, transport_env, more))

    def calls(self, actor):
        """Payload indexes a handler was called with, in call order (one line per call)."""
        path = self.calls_dir / f"{actor}.calls"
        try:
            return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def logs(self):
        return "\n".join(p.tail(3000) for p in self.procs if p.proc is not None)

    def stop_all(self):
        # Sidecars first, so none reports a lost runtime; then the runtimes. Every
        # process gets its stop even if an earlier one misbehaves.
        errors = []
        ordered = [p for p in self.procs if isinstance(p, Sidecar)] + \
                  [p for p in self.procs if not isinstance(p, Sidecar)]
        for p in ordered:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - reported after the others stopped
                errors.append(f"{p.name}: {e!r}")
        for d in self.cleanup_dirs:
            shutil.rmtree(d, ignore_errors=True)
        assert not errors, errors


def results(folder):
    """{id: envelope} of the JSON files in a crew results folder."""
    out = {}
    folder = Path(folder)
    if folder.exists():
        for f in folder.glob("*.json"):
            try:
                out[f.stem] = json.loads(f.read_text())
            except ValueError:  # being written
                continue
    return out
