"""Python function tools for the agent tests, registered by import path
(``tests.mcp_servers.py_tools:<name>``)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

# state the tests read: which tools started, which were cancelled
STATE: dict[str, asyncio.Event] = {}
_ARRIVED: list[str] = []


def event(name: str) -> asyncio.Event:
    return STATE.setdefault(name, asyncio.Event())


class Order(BaseModel):
    item: str
    quantity: int = 1


def price(order: Order, currency: str = "EUR") -> dict:
    """Price an order (a pydantic model argument)."""
    return {"item": order.item, "total": 2.5 * order.quantity, "currency": currency}


async def rendezvous(name: str) -> str:
    """Completes only once two calls have arrived: proves calls run concurrently."""
    _ARRIVED.append(name)
    for _ in range(500):
        if len(_ARRIVED) >= 2:
            return f"{name} met {[n for n in _ARRIVED if n != name][0]}"
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{name} waited alone: the calls did not run concurrently")


def reset_rendezvous() -> None:
    _ARRIVED.clear()


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


async def hang(tag: str) -> str:
    """Never returns; records that it started and that it was cancelled."""
    event(f"{tag}:started").set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        event(f"{tag}:cancelled").set()
        raise
    return "unreachable"


def get_current_city() -> dict:
    """Where the user is (the seed's example tool)."""
    return {"city": "深圳"}


def add_one(n: int) -> int:
    """n + 1."""
    return n + 1
