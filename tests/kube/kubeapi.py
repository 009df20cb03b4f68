"""A minimal client for the test API server (scripts/services/kube.sh): plain HTTPS with
the kubeconfig's inline client certificate, so the tests need no Kubernetes library and
see exactly what the API server stores. Every wait is bounded."""

import base64
import json
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


class ApiError(Exception):
    """A request the API server answered with an error status."""

    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def kubeconfig_fields(text):
    """The fields of a one-cluster, one-user kubeconfig (kube.sh writes such), without a
    YAML library: {"server": ..., "certificate-authority-data": ..., ...}."""
    fields = {}
    for key in ("server", "certificate-authority-data", "client-certificate-data",
                "client-key-data"):
        found = re.findall(rf"^\s*{key}:\s*(\S+)\s*$", text, re.M)
        if len(found) != 1:
            raise ValueError(f"the kubeconfig should have one {key}, has {len(found)}")
        fields[key] = found[0]
    return fields


class Kube:
    """The API server of a kubeconfig whose user carries inline certificate data."""

    def __init__(self, kubeconfig):
        config = kubeconfig_fields(Path(kubeconfig).read_text())
        cluster = user = config
        self.server = config["server"].rstrip("/")
        self._files = tempfile.TemporaryDirectory(prefix="kubeapi-")
        files = Path(self._files.name)
        for field, name in (("client-certificate-data", "client.crt"),
                            ("client-key-data", "client.key")):
            (files / name).write_bytes(base64.b64decode(user[field]))
        self._ssl = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self._ssl.load_cert_chain(files / "client.crt", files / "client.key")

    def request(self, method, path, body=None, content_type="application/json"):
        """The decoded JSON answer; raises ApiError on an error status."""
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=30) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(method, path, e.code, e.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def get(self, path):
        return self.request("GET", path)

    def create(self, path, obj):
        return self.request("POST", path, obj)

    def apply(self, path, obj, manager="troupe-tests"):
        """Server-side apply of `obj` at its own `path` (created when missing)."""
        return self.request("PATCH", f"{path}?fieldManager={manager}&force=true",
                            json.dumps(obj).encode(), "application/apply-patch+yaml")

    def delete(self, path):
        try:
            return self.request("DELETE", path)
        except ApiError as e:
            if e.status != 404:
                raise
            return None


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
        time.sleep(interval)
