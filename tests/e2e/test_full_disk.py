"""A full disk under `troupe up`'s state dir: sends fail, inputs are requeued with backoff
(one WARN per outage, not one per retry), and everything finishes once space is freed
(issue 9, item 12). Needs a real small filesystem: a tmpfs, so root (skipped otherwise)."""

import os
import subprocess
import time

import pytest


@pytest.fixture
def small_disk(mesh):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mesh.state_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mesh.state_dir)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mesh
    mesh.stop()
    subprocess.run(["umount", "-l", str(mesh.state_dir)], check=False)


def fill(path):
    """Writes `path` until not one more byte fits on its filesystem."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_full_disk_backs_off_and_warns_once(small_disk):
    mesh = small_disk
    mesh.write("troupe.yaml", """
        actors:
          - actor: slow
            handler: h.slow
          - actor: after
            handler: h.after
    """)
    mesh.write("h.py", """
        import os, time

        HERE = os.path.dirname(os.path.abspath(__file__))

        def slow(p):
            open(os.path.join(HERE, "started"), "a").close()
            time.sleep(1.5)
            return p

        def after(p):
            return p
    """)
    mesh.start()
    # 8 KiB payloads: every write needs new pages (a write into the last page of a
    # file still succeeds on a full tmpfs).
    ids = [mesh.send("slow", {"i": i, "pad": "x" * 8192}, route=["after"]) for i in range(3)]
    # The runtime starts (it needs the disk) and takes the first message.
    mesh.wait_for((mesh.root / "started").exists, timeout=30, what="the handler to start")
    filler = mesh.state_dir / "filler"
    fill(filler)
    mark = len(mesh.log())
    time.sleep(10)
    during = mesh.log()[mark:]
    warns = [l for l in during.splitlines() if " WARN " in l or '"WARN"' in l]
    # Before: every retry logged a WARN at once (3,495 lines in 10 s).
    assert 1 <= len(warns) <= 4, "\n".join(warns[:20])
    assert any("send failed" in l or "write failed" in l for l in warns), warns

    filler.unlink()
    for task_id in ids:
        env = mesh.wait_result(task_id, "succeeded", timeout=30)
        assert env["payload"]["i"] in (0, 1, 2)
    assert "sends succeed again" in mesh.log()[mark:]
