"""Handlers of the A2A end-to-end test (plain Python, no Troupe import)."""

import time


def generate(payload):
    """Streams the words of the query back as FLY tokens, then returns them."""
    words = payload.get("query", "").split() or ["nothing"]
    # Leaves the adapter time to follow the task: FLY events are never replayed.
    time.sleep(0.5)
    for word in words:
        time.sleep(0.05)
        yield "FLY", {"partial": True, "text": word}
    yield {"text": " ".join(words), "words": len(words), "task": payload["a2a"]["task"]["id"]}


def review(payload):
    """Drafts a reply, then routes it through x-pause (a human approves) to finalize."""
    payload["draft"] = "Re: " + payload.get("query", "")
    yield "SET", ".route.next", ["x-pause", "finalize"]
    yield payload


def finalize(payload):
    """Runs after the resume, with the reviewer's fields merged into the payload."""
    return {"draft": payload["draft"], "approved": bool(payload.get("approved")),
            "note": payload.get("note")}


def sleeper(payload):
    """Works long enough to be canceled."""
    for _ in range(50):
        time.sleep(0.1)
    return payload
