import asyncio
import openai
from asya_lab.flow import flow
from errors import RateLimitError


@flow
async def research(p: dict) -> dict:
    p = await plan(p)
    if p["needs_search"]:
        p["hits"] = [search(q) for q in p["queries"]]
    try:
        p = await write(p)
    except (RateLimitError, openai.APITimeoutError):
        p = apologize(p)
    p["done"] = True
    return p
