"""A flow with each construct the graph draws (crates/troupe-flow/tests/outputs.rs).
Actors are called by bare names this file does not import (the mesh declares them)."""


async def research(p: dict) -> dict:
    p = await plan(p)
    if p["needs_search"]:
        p["hits"] = [search(q) for q in p["queries"]]
    elif p["topic"].startswith("x"):
        p["hits"] = []
    while p["rounds"] < 3:
        p["rounds"] += 1
        p = await review(p)
        if p["good"]:
            break
    try:
        p = await write(p)
    except (ValueError, KeyError):
        p = await apologize(p)
    p["both"] = [summarize(p), notify(p["hits"])]
    p["done"] = True
    return p
