"""Handler of the streaming example (plain Python, no Troupe import).

("FLY", obj) sends obj to the gateway as a live event: never queued or stored, so it is
for progress and tokens only. {"partial": True, "text": tok} is the token convention
that `troupe send --wait` and the mesh API's SSE stream show as text.
"""

import asyncio
import os

CANNED = {
    "haiku": "Messages wait in line / a replica wakes to serve / the queue drains to calm.",
}
DEFAULT = "Troupe streams every token as it is generated, then returns the full text."


def compose(prompt):
    """Stand-in for a language model: picks a canned reply."""
    for key, text in CANNED.items():
        if key in prompt.lower():
            return text
    return DEFAULT


def tokens_of(text):
    """Splits text into word tokens, keeping the leading space like LLM tokenizers do."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


async def generate(payload):
    prefill = float(os.environ.get("PREFILL_SECONDS", "0.3"))
    delay = float(os.environ.get("TOKEN_DELAY_SECONDS", "0.05"))
    text = compose(payload.get("prompt", ""))
    tokens = tokens_of(text)
    await asyncio.sleep(prefill)  # pretend prompt processing before the first token
    for tok in tokens:
        await asyncio.sleep(delay)  # pretend decoding time
        yield "FLY", {"partial": True, "text": tok}
    yield {"prompt": payload.get("prompt", ""), "text": text, "tokens": len(tokens)}
