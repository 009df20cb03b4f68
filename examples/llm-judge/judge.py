"""Handlers of the llm-judge example (plain Python, no Troupe import).

The "LLM" is simulated so the example runs anywhere: the judge scores an answer by how
many of the question's key terms it covers (plus a little for length), and the rewriter
"improves" an answer by working in up to two missing terms per pass.
"""

import os
import re

STOPWORDS = frozenset(
    "what which when where does how why the and for with from that this into your about "
    "there their have will would should could explain describe after before handle".split()
)


def key_terms(question):
    """The words of the question an answer is expected to address."""
    words = re.findall(r"[a-z][a-z-]+", question.lower())
    seen = []
    for w in words:
        if len(w) > 3 and w not in STOPWORDS and w not in seen:
            seen.append(w)
    return seen


def score_answer(question, answer):
    """Returns (score in [0, 1], terms the answer misses)."""
    terms = key_terms(question)
    text = answer.lower()
    missing = [t for t in terms if t not in text]
    coverage = 1.0 if not terms else (len(terms) - len(missing)) / len(terms)
    length = min(len(answer.split()) / 25.0, 1.0)
    return round(0.8 * coverage + 0.2 * length, 3), missing


def judge(payload):
    """A generator handler: scores the answer, then sets the rest of the route by score."""
    threshold = float(os.environ.get("JUDGE_THRESHOLD", "0.75"))
    budget = int(payload.get("max_rewrites", os.environ.get("JUDGE_MAX_REWRITES", "3")))
    score, missing = score_answer(payload["question"], payload["answer"])
    rewrites = payload.get("rewrites", 0)
    payload["scores"] = payload.get("scores", []) + [score]
    payload["missing"] = missing

    if score >= threshold:
        payload["verdict"] = "accepted"
        yield "SET", ".route.next", ["publish"]
    elif rewrites < budget:
        # Low score with budget left: loop through the rewriter and come back here.
        payload["verdict"] = "rewrite"
        yield "SET", ".route.next", ["rewrite", "judge"]
    else:
        # The attempt counter in the payload guards the loop.
        payload["verdict"] = "needs_review"
        yield "SET", ".route.next", ["publish"]
    yield payload


def rewrite(payload):
    """Works up to two of the missing terms into the answer."""
    add = payload.get("missing", [])[:2]
    if add:
        payload["answer"] = payload["answer"].rstrip() + " It also covers " + " and ".join(add) + "."
    payload["rewrites"] = payload.get("rewrites", 0) + 1
    return payload


def publish(payload):
    """The final record."""
    return {
        "question": payload["question"],
        "answer": payload["answer"],
        "verdict": "published" if payload["verdict"] == "accepted" else payload["verdict"],
        "score": payload["scores"][-1],
        "scores": payload["scores"],
        "rewrites": payload.get("rewrites", 0),
    }
