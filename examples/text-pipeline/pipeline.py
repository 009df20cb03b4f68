"""Handlers of the text-pipeline example: plain Python, no Troupe import.

clean      -- a function: normalises whitespace and strips markup.
analyse    -- a class handler: loads a (pretend) sentiment model once per replica in
              __init__, then scores every message with it.
summarize  -- a function: builds the final summary from the analysis.
"""

import os
import re
import time
import uuid
from collections import Counter

# How many times this process loaded the model. A class handler is instantiated once per
# runtime process, so this stays at 1 however many messages the replica handles.
MODEL_LOADS = 0

STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in is it its of on or that the this "
    "to was were will with we you our they their".split()
)


def clean(payload):
    """Strips HTML tags and collapses whitespace."""
    text = re.sub(r"<[^>]+>", " ", payload["text"])
    text = re.sub(r"\s+", " ", text)
    payload["text"] = re.sub(r" ([.,:;!?])", r"\1", text).strip()
    return payload


class Analyzer:
    """A 'model' that is expensive to load and cheap to call."""

    def __init__(self):
        global MODEL_LOADS
        started = time.monotonic()
        # Stand-in for loading weights: build a lookup table and pay a fixed load cost.
        time.sleep(float(os.environ.get("MODEL_LOAD_SECONDS", "0.5")))
        positive = "good great excellent love happy fast reliable delightful wonderful".split()
        negative = "bad poor terrible hate slow broken awful buggy disappointing".split()
        self.lexicon = {w: 1.0 for w in positive}
        self.lexicon.update({w: -1.0 for w in negative})
        MODEL_LOADS += 1
        self.load_id = uuid.uuid4().hex[:12]
        self.load_seconds = round(time.monotonic() - started, 3)
        self.calls = 0

    def process(self, payload):
        self.calls += 1
        words = re.findall(r"[a-z']+", payload["text"].lower())
        hits = [self.lexicon[w] for w in words if w in self.lexicon]
        score = sum(hits) / len(hits) if hits else 0.0
        keywords = Counter(w for w in words if w not in STOPWORDS and len(w) > 2)
        payload["analysis"] = {
            "words": len(words),
            "sentiment": round(score, 3),
            "keywords": [w for w, _ in keywords.most_common(3)],
        }
        # Which model instance served this message, so you (and the tests) can see that
        # the model is loaded once per replica, not once per message.
        payload["model"] = {
            "load_id": self.load_id,
            "pid": os.getpid(),
            "loads_in_process": MODEL_LOADS,
            "calls": self.calls,
            "load_seconds": self.load_seconds,
        }
        return payload


def summarize(payload):
    """Turns the analysis into a one-line summary."""
    a = payload["analysis"]
    label = "positive" if a["sentiment"] > 0.2 else "negative" if a["sentiment"] < -0.2 else "neutral"
    first = re.split(r"(?<=[.!?])\s", payload["text"], maxsplit=1)[0]
    payload["summary"] = {
        "label": label,
        "headline": first,
        "about": ", ".join(a["keywords"]),
    }
    return payload
