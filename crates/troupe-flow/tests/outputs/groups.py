"""A flow calling a @flow sub-flow, drawn as a group (crates/troupe-flow/tests/outputs.rs)."""
from asya_lab.flow import flow


@flow
async def enrich(p: dict) -> dict:
    p = await lookup(p)
    if p["found"]:
        p = await score(p)
        return p
    p["score"] = 0
    return p


@flow
async def main(p: dict) -> dict:
    p = await intake(p)
    p = await enrich(p)
    p = await score(p)
    p = await finish(p)
    return p
