"""Handlers of the fan-out example (plain Python, no Troupe import).

A generator handler that emits several payloads fans out: the first frame keeps the
input task's id, every further frame becomes a child task with a fresh id and
parent_id = the input id. Each frame takes the route.next in effect when it is yielded,
so the manifest can end at once while the chunks go on to `embed`.
"""

import hashlib


def split(payload):
    """Splits a document into chunks of `chunk_words` words; one child task per chunk."""
    words = payload["text"].split()
    size = max(1, int(payload.get("chunk_words", 8)))
    chunks = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]

    task_id = yield "GET", ".id"
    downstream = yield "GET", ".route.next"

    # Frame 0 keeps this task's id: make it the manifest and end its route here.
    yield "SET", ".route.next", []
    yield {"document": payload.get("name", "document"), "chunks": len(chunks)}

    # Frames 1..N are the children; they continue to embed (or the route given with --route).
    yield "SET", ".route.next", downstream or ["embed"]
    for index, text in enumerate(chunks):
        yield {"document_task": task_id, "index": index, "text": text}


class Embedder:
    """Pretend embedding model: a hash-based 4-d vector per chunk."""

    def __init__(self):
        self.dims = 4

    def embed(self, payload):
        digest = hashlib.sha256(payload["text"].encode()).digest()
        payload["vector"] = [round(b / 255, 3) for b in digest[: self.dims]]
        payload["words"] = len(payload["text"].split())
        return payload
