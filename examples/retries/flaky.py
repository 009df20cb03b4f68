"""Handlers of the retries example (plain Python, no Troupe import).

fetch  -- fails with TransientError on its first FETCH_FAIL_FIRST attempts, then succeeds.
          It reads its attempt number with ("GET", ".status.attempt") and keeps an attempt
          log in a file keyed by the task id, so the result shows when each attempt ran.
charge -- always raises PaymentDeclined; after the policy's attempts the task fails.
"""

import json
import os
import time
from pathlib import Path


class TransientError(Exception):
    """The upstream is briefly unavailable; worth retrying."""


class PaymentDeclined(ValueError):
    """The card was declined."""


def fetch(payload):
    task_id = yield "GET", ".id"
    attempt = yield "GET", ".status.attempt"

    # Handlers must be idempotent per task id; a file per id is the simplest state store.
    state = Path(os.environ.get("FETCH_STATE_DIR", "state/fetch"))
    state.mkdir(parents=True, exist_ok=True)
    log_file = state / f"{task_id}.json"
    log = json.loads(log_file.read_text()) if log_file.exists() else []
    log.append({"attempt": attempt, "at": round(time.time(), 3)})
    log_file.write_text(json.dumps(log))

    fail_first = int(payload.get("fail_first", os.environ.get("FETCH_FAIL_FIRST", "2")))
    if attempt <= fail_first:
        raise TransientError(f"upstream unavailable for {payload.get('url')} (attempt {attempt})")

    yield {
        "url": payload.get("url"),
        "body": f"contents of {payload.get('url')}",
        "succeeded_on_attempt": attempt,
        "attempts": log,
    }


def charge(payload):
    raise PaymentDeclined(f"card {payload.get('card', '?')} declined for {payload.get('amount')}")
