"""The smallest end-to-end check: two actors, one class handler, --wait prints the result."""

import json


def test_two_step_pipeline_with_wait(mesh):
    mesh.write("troupe.yaml", """
        actors:
          - actor: upper
            handler: pipe.upper
          - actor: exclaim
            handler: pipe.Exclaim.run
    """)
    mesh.write("pipe.py", """
        def upper(p):
            p["text"] = p["text"].upper()
            return p

        class Exclaim:
            def __init__(self):
                self.suffix = "!"

            def run(self, p):
                p["text"] += self.suffix
                return p
    """)
    mesh.start()
    res = mesh.cli("send", "upper", '{"text": "hi"}', "--route", "exclaim", "--wait", "--timeout", "20s")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"text": "HI!"}
    assert "Processing in upper" in res.stderr
    assert mesh.stop() == 0
