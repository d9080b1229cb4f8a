"""The in-process run log: each run's ``Event`` objects in order, numbered
1, 2, 3… (the number is the SSE ``id``). Nothing is serialised to pass
events on; a run's canonical JSON (for the session-chat wire and the debug
trace) is made on first demand and kept, so each event is encoded at most
once however many readers want it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...core import Event, encode_event

Entry = tuple[int, Event]  # (sequence number, event)
JsonEntry = tuple[int, bytes]  # (sequence number, the event's canonical JSON)


class RunLog(Protocol):
    async def create(self, run_id: str, meta: dict[str, Any]) -> None: ...

    async def append(self, run_id: str, events: list[Event], *, end: bool = False) -> None: ...

    def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        """Entries after ``after``, then the live tail, ending after the
        terminal entry; an empty list after ``heartbeat`` seconds of silence."""
        ...

    def read_json(self, run_id: str, after: int, *,
                  heartbeat: float | None = None) -> AsyncIterator[list[JsonEntry]]:
        """``read``, each event as its canonical JSON."""
        ...

    def json(self, run_id: str) -> list[bytes]:
        """The canonical JSON of a run's events so far, when this process has them."""
        ...

    async def meta(self, run_id: str) -> dict[str, Any] | None: ...

    async def is_live(self, run_id: str) -> bool: ...

    async def live_among(self, run_ids: list[str]) -> set[str]: ...

    async def wait_ended(self, run_id: str) -> None: ...

    async def request_stop(self, run_id: str, reason: str) -> None: ...

    # aliases: a stable name (e.g. an AI SDK chat id) → the run answering it now
    async def set_alias(self, name: str, run_id: str) -> None: ...

    async def get_alias(self, name: str) -> str | None: ...

    async def drop_alias(self, name: str, run_id: str) -> None:
        """Forget ``name`` if it still points at ``run_id`` (a newer run keeps it)."""
        ...

    async def open(self, on_stop: Callable[[str, str], Awaitable[None]]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _MemRun:
    meta: dict[str, Any]
    entries: list[Event] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)  # JSON of entries[:len(encoded)], made on demand
    ended: bool = False
    # one future per reader waiting for more (a future each: a reader cancelled while it waits
    # cancels only its own); append wakes them all
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)


class MemoryRunLog:
    """Run logs in this process. A finished run's log is kept ``ttl`` seconds."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._runs: dict[str, _MemRun] = {}
        self._aliases: dict[str, str] = {}
        self._alias_of: dict[str, str] = {}

    async def open(self, on_stop: Callable[[str, str], Awaitable[None]]) -> None:
        pass  # every run is local: the service stops it directly

    async def create(self, run_id: str, meta: dict[str, Any]) -> None:
        self._runs[run_id] = _MemRun(meta)

    async def append(self, run_id: str, events: list[Event], *, end: bool = False) -> None:
        r = self._runs.get(run_id)
        if r is None:
            return
        r.entries.extend(events)
        if end:
            r.ended = True
            asyncio.get_running_loop().call_later(self.ttl, self._expire, run_id)
        waiters, r.waiters = r.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(True)

    async def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        r = self._runs.get(run_id)
        if r is None:
            return
        i = max(after, 0)
        # the heartbeat: one timer per reader, re-armed when it fires early, not one per wait
        # (asyncio.wait_for made a task and a timer every time the reader caught up)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] | None = None
        timer: asyncio.TimerHandle | None = None
        due = loop.time() + heartbeat if heartbeat else 0.0

        def beat() -> None:
            nonlocal timer
            timer = None
            if waiter is None or waiter.done():
                return
            if loop.time() >= due:
                waiter.set_result(False)
            else:
                timer = loop.call_at(due, beat)

        try:
            while True:
                if i < len(r.entries):  # no await between this check and the wait: no lost wake-up
                    n = len(r.entries)
                    yield list(zip(range(i + 1, n + 1), r.entries[i:n], strict=True))
                    i = n
                    if heartbeat:
                        due = loop.time() + heartbeat
                    continue
                if r.ended:
                    return
                waiter = loop.create_future()
                r.waiters.append(waiter)
                if heartbeat and timer is None:
                    timer = loop.call_at(due, beat)
                more = await waiter
                waiter = None
                if not more:
                    due = loop.time() + heartbeat  # type: ignore[operator]
                    yield []
        finally:
            if timer is not None:
                timer.cancel()

    async def read_json(self, run_id: str, after: int, *,
                        heartbeat: float | None = None) -> AsyncIterator[list[JsonEntry]]:
        r = self._runs.get(run_id)
        async for entries in self.read(run_id, after, heartbeat=heartbeat):
            if not entries:
                yield []
                continue
            enc = _encoded(r, entries[-1][0]) if r is not None else None
            yield ([(n, enc[n - 1]) for n, _ in entries] if enc is not None
                   else [(n, encode_event(ev)) for n, ev in entries])

    def json(self, run_id: str) -> list[bytes]:
        r = self._runs.get(run_id)
        return [] if r is None else list(_encoded(r, len(r.entries)))

    def has(self, run_id: str) -> bool:
        return run_id in self._runs

    async def meta(self, run_id: str) -> dict[str, Any] | None:
        r = self._runs.get(run_id)
        return None if r is None else {**r.meta, "ended": r.ended, "events": len(r.entries)}

    async def is_live(self, run_id: str) -> bool:
        r = self._runs.get(run_id)
        return r is not None and not r.ended

    async def live_among(self, run_ids: list[str]) -> set[str]:
        return {r for r in run_ids if await self.is_live(r)}

    async def wait_ended(self, run_id: str) -> None:
        r = self._runs.get(run_id)
        if r is not None:
            async for _ in self.read(run_id, len(r.entries)):
                pass

    async def request_stop(self, run_id: str, reason: str) -> None:
        pass  # no other process can own a run

    def _expire(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        name = self._alias_of.pop(run_id, None)
        if name is not None and self._aliases.get(name) == run_id:
            del self._aliases[name]

    async def set_alias(self, name: str, run_id: str) -> None:
        self._aliases[name] = run_id
        self._alias_of[run_id] = name  # so the alias expires with the run's log

    async def get_alias(self, name: str) -> str | None:
        run_id = self._aliases.get(name)
        if run_id is not None and run_id not in self._runs:  # its log expired
            del self._aliases[name]
            return None
        return run_id

    async def drop_alias(self, name: str, run_id: str) -> None:
        if self._aliases.get(name) == run_id:
            del self._aliases[name]
            self._alias_of.pop(run_id, None)

    async def aclose(self) -> None:
        self._runs.clear()
        self._aliases.clear()
        self._alias_of.clear()


def _encoded(r: _MemRun, upto: int) -> list[bytes]:
    """The run's JSON list, made to cover its first ``upto`` events."""
    enc = r.encoded
    if len(enc) < upto:
        enc.extend([encode_event(ev) for ev in r.entries[len(enc):upto]])
    return enc
