"""Keep-alive comments and stalled clients, for one streamed response.

One timer per stream, re-armed at most once per keep-alive period: a write
only stamps two floats (``last``, ``blocked``), which the next tick reads.
So neither costs anything per chunk, where a watchdog task or an
``asyncio.timeout`` around every write would make and cancel a timer each
time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..protocols import sse

log = logging.getLogger("sluiceway.stream")
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Pacer:
    __slots__ = ("keepalive", "stall", "last", "blocked", "stalled", "loop", "_task", "_send", "_timer")

    def __init__(self, keepalive: float, stall: float) -> None:
        self.keepalive, self.stall = keepalive, stall
        self.last = 0.0  # when the last write was handed to the server
        self.blocked = 0.0  # when the current write started waiting for the client (0: not waiting)
        self.stalled = False  # the stream's task was cancelled because the client stopped reading
        self.loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._send: Send | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, send: Send) -> None:
        """Watch the current task's writes through ``send``."""
        self._task, self._send = asyncio.current_task(), send
        self.last = self.loop.time()
        if self.keepalive > 0 or self.stall > 0:
            self._arm(self.last)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def write(self, data: bytes) -> None:
        """One body chunk, with the stamps the timer reads. (Hot loops inline this.)"""
        assert self._send is not None
        self.last = self.blocked = self.loop.time()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.blocked = 0.0

    def _arm(self, now: float) -> None:
        if self.blocked:
            when = self.blocked + self.stall if self.stall > 0 else now + 1.0
        elif self.keepalive > 0:
            when = self.last + self.keepalive
        else:
            when = now + min(self.stall, 1.0)  # only the stall to watch: look for a blocked write every second
        self._timer = self.loop.call_at(when, self._tick)

    def _tick(self) -> None:
        """Sends a keep-alive comment after ``keepalive`` seconds of silence,
        and cancels the stream's task when its client has not accepted a
        write for ``stall`` seconds (``stalled`` tells the task why)."""
        self._timer = None
        now = self.loop.time()
        if self.blocked:
            if self.stall > 0 and now - self.blocked >= self.stall and self._task is not None:
                self.stalled = True
                self._task.cancel()
                return
        elif self.keepalive > 0 and now - self.last >= self.keepalive:
            self.last = now
            asyncio.ensure_future(self._keepalive())
        self._arm(now)

    async def _keepalive(self) -> None:
        try:
            await self.write(sse.KEEPALIVE)
        except Exception:  # the client left: the stream finds out on its own
            log.debug("keep-alive write failed", exc_info=True)
