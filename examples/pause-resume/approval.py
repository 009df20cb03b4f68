"""Handlers of the pause-resume example (plain Python, no Troupe import)."""


def draft(payload):
    """Drafts a reply for a support ticket; a human reviews it at x-pause."""
    question = payload["question"].strip()
    payload["draft"] = (
        f"Hello, thanks for reaching out about ticket #{payload['ticket']}. "
        f"Regarding \"{question}\": we are looking into it and will follow up shortly."
    )
    return payload


def finalize(payload):
    """Runs after the resume, with the reviewer's fields merged into the payload."""
    if payload.get("approved"):
        reply = payload["draft"]
        if payload.get("note"):
            reply += " " + payload["note"]
        return {"ticket": payload["ticket"], "status": "sent", "reply": reply}
    return {"ticket": payload["ticket"], "status": "discarded", "reply": None}
