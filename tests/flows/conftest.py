"""The differential tests reuse the end-to-end tests' mesh helpers (tests/e2e/conftest.py):
loaded here under its own module name, since both folders' conftest modules are called
`conftest`."""

import importlib.util
import sys
from pathlib import Path

_E2E_CONFTEST = Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"

_spec = importlib.util.spec_from_file_location("e2e_conftest", _E2E_CONFTEST)
e2e = importlib.util.module_from_spec(_spec)
sys.modules["e2e_conftest"] = e2e
_spec.loader.exec_module(e2e)

troupe_bin = e2e.troupe_bin  # the fixture: the built binary, or a clear failure
