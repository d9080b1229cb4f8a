"""Streams open per provider instance, counted where the router opens and
closes them (``Deployment.acquire`` / ``release``), so a provider replaced at
runtime (``engine/settings``) is closed only after its last stream has ended.
An entry exists only while a stream is open or a retirement waits."""

from __future__ import annotations

import asyncio
from typing import Any


class _Count:
    __slots__ = ("n", "idle")

    def __init__(self) -> None:
        self.n = 0
        self.idle: asyncio.Event | None = None  # made by a retirement waiting for zero


_counts: dict[Any, _Count] = {}  # keyed by the provider instance itself


def opened(provider: Any) -> None:
    c = _counts.get(provider)
    if c is None:
        c = _counts[provider] = _Count()
    c.n += 1


def closed(provider: Any) -> None:
    c = _counts.get(provider)
    if c is None:
        return
    c.n -= 1
    if c.n <= 0:
        del _counts[provider]
        if c.idle is not None:
            c.idle.set()


def inflight(provider: Any) -> int:
    c = _counts.get(provider)
    return c.n if c is not None else 0


async def wait_idle(provider: Any, within: float) -> bool:
    """True once ``provider`` has no open stream, False if ``within`` seconds passed first."""
    c = _counts.get(provider)
    if c is None:
        return True
    if c.idle is None:
        c.idle = asyncio.Event()
    try:
        async with asyncio.timeout(within):
            await c.idle.wait()
    except TimeoutError:
        return False
    return True
