"""Corpus: async flows (await, method calls), `async with asyncio.timeout(..)` as
configuration, @flow sub-flows (inlined as a group), local defs that unfold, and
platform.md §4.1's example flow, in their nestings.
"""

import asyncio

from asya_lab.flow import flow
from handlers import RateLimitError


async def async_seq(p):
    p = await a(p)
    p = b(p)
    p = await c(p)
    await d(p)
    return p


async def method_call(p):
    p = await tools.shout(p)
    if p["s"] == "HI":
        p = await a(p)
    return p


async def timeout_block(p):
    async with asyncio.timeout(30):
        p = await a(p)
        if p["x"] > 0:
            p = await b(p)
    p = await c(p)
    return p


async def timeout_in_loop(p):
    p["n"] = 0
    while p["n"] < p["limit"]:
        async with asyncio.timeout(10):
            p = await inc(p)
    return p


@flow
def sub_mark(p):
    p = a(p)
    if p["x"] > 0:
        p = b(p)
        return p
    p = c(p)
    return p


@flow
def uses_subflow(p):
    p = sub_mark(p)
    p = d(p)
    return p


@flow
def subflow_twice(p):
    p = sub_mark(p)
    p["x"] -= 5
    p = sub_mark(p)
    return p


@flow
def sub_risky(p):
    p = risky(p)
    p = b(p)
    return p


@flow
def subflow_in_try(p):
    try:
        p = sub_risky(p)
    except ValueError:
        p = on_value(p)
    p = finish(p)
    return p


@flow
def subflow_in_loop(p):
    p["i"] = 0
    while p["i"] < p["limit"]:
        p["i"] += 1
        p = sub_mark(p)
        p["x"] -= 1
    return p


@flow
async def async_sub(p):
    p = await inc(p)
    p = await inc(p)
    return p


@flow
async def uses_async_subflow(p):
    p["n"] = 0
    p = await async_sub(p)
    if p["n"] == 2:
        p = await a(p)
    return p


def twice_inc(p):
    p = inc(p)
    p = inc(p)
    return p


def guard_positive(p):
    if p["x"] < 0:
        p["guarded"] = True
        return p
    p = a(p)
    return p


def uses_unfold(p):
    p["n"] = 0
    p = twice_inc(p)
    p = guard_positive(p)
    if p["n"] > 1:
        p = b(p)
    return p


def unfold_in_loop(p):
    p["n"] = 0
    while p["n"] < p["limit"]:
        p = twice_inc(p)
    p = guard_positive(p)
    return p


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


def payload_param(payload):
    payload = a(payload)
    payload["seen"] = payload["x"] + 1
    return payload


def state_param(state):
    if state["x"] > 0:
        state = b(state)
    return state


INPUTS = {
    "async_seq": [{}],
    "method_call": [{"s": "hi"}, {"s": "no"}],
    "timeout_block": [{"x": 1}, {"x": 0}],
    "timeout_in_loop": [{"limit": 3}],
    "uses_subflow": [{"x": 1}, {"x": 0}],
    "subflow_twice": [{"x": 6}, {"x": 3}],
    "subflow_in_try": [{}, {"fail": {"risky": "value"}}, {"fail": {"risky": "quota"}}],
    "subflow_in_loop": [{"x": 1, "limit": 3}, {"x": 0, "limit": 0}],
    "uses_async_subflow": [{}],
    "uses_unfold": [{"x": 1}, {"x": -1}],
    "unfold_in_loop": [{"x": 1, "limit": 5}, {"x": -1, "limit": 0}],
    "research": [{"topic": "t", "queries": ["q1", "query two"]}, {"topic": "t", "queries": []},
                 {"topic": "t", "queries": ["q"], "fail": {"write": "rate"}},
                 {"topic": "t", "queries": [], "fail": {"write": "openai"}},
                 {"topic": "t", "queries": [], "fail": {"write": "value"}}],
    "payload_param": [{"x": 1}],
    "state_param": [{"x": 1}, {"x": 0}],
}
