"""Streams in flight per provider instance, so a replaced provider is closed
only after the streams it serves have ended.

``track`` wraps an instance's ``stream`` (an instance attribute, so
``isinstance`` and the class are untouched); the wrapper costs one async
generator hop per batch. ``retire`` waits for the count to reach zero, then
closes the instance (its HTTP session, or its worker process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("sluiceway.settings")


class Inflight:
    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle: asyncio.Event | None = None  # made when retired, on the loop that waits


def track(provider: Any) -> None:
    if getattr(provider, "_sw_inflight", None) is not None:
        return
    state = Inflight()
    inner = provider.stream

    async def stream(req: Any, *, deadline: Any) -> AsyncIterator[list[Any]]:
        state.count += 1
        it = inner(req, deadline=deadline)
        try:
            async for batch in it:
                yield batch
        finally:
            state.count -= 1
            try:
                close = getattr(it, "aclose", None)
                if close is not None:
                    await close()
            finally:
                if state.count == 0 and state.idle is not None:
                    state.idle.set()

    try:
        provider.stream = stream
        provider._sw_inflight = state
    except AttributeError:  # a slotted class: it is closed after the grace period instead
        log.debug("provider %s cannot be tracked", getattr(provider, "name", provider))


def inflight(provider: Any) -> int:
    state = getattr(provider, "_sw_inflight", None)
    return state.count if state is not None else 0


async def retire(provider: Any, grace: float = 900.0) -> None:
    """Close ``provider`` once its streams have ended (at most ``grace`` seconds)."""
    state: Inflight | None = getattr(provider, "_sw_inflight", None)
    if state is not None and state.count:
        state.idle = asyncio.Event()
        try:
            async with asyncio.timeout(grace):
                await state.idle.wait()
        except TimeoutError:
            log.warning("closing provider %s with %d streams still open", provider.name, state.count)
    elif state is None:
        await asyncio.sleep(min(grace, 60.0))
    try:
        await provider.aclose()
        log.info("closed replaced provider instance %s", provider.name)
    except Exception:
        log.exception("closing replaced provider %s", provider.name)
