"""Runs: generations owned by the server, not by the HTTP request.

A run is an asyncio task that pulls the provider's batches, hands each batch
to an observer (the recorder) and appends its events to a *run log*. Clients
never read the provider directly: they read the run log, from any position,
so a client that reconnects with ``Last-Event-ID: n`` gets events ``n+1…``
and then the live tail, with no duplicates and no gaps. Several clients can
read one run; a run survives its client leaving (unless the disconnect
policy says ``cancel``) and can be stopped by id.

Run logs: ``MemoryRunLog`` (this process only) here, ``RedisRunLog`` (shared
by replicas, a Redis Stream with a TTL) in ``hub_redis``. Both number events
1, 2, 3… per run; the number is the SSE ``id``.

Ordering rule: the terminal event (finish / error / abort) is appended only
after the observer has saved the message, so a client that has seen the end
of a run can read the stored answer.

Imports only ``sluiceway.core``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..core import TERMINAL_TYPES, Abort, Event, SluicewayError, Usage

log = logging.getLogger("sluiceway.hub")

Entry = tuple[int, bytes]  # (sequence number, canonical event JSON)


def encode_event(ev: Event) -> bytes:
    """Canonical event → compact JSON with its ``type`` first. orjson
    serialises the (slotted) dataclass natively; ``type`` is a ClassVar, so it
    is spliced in front."""
    body = orjson.dumps(ev)
    head = b'{"type":"' + ev.type.encode() + b'"'
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


def _event_classes() -> dict[str, type]:
    from ..core import events as ev_mod

    return {cls.type: cls for cls in vars(ev_mod).values()
            if isinstance(cls, type) and isinstance(getattr(cls, "type", None), str)}


_EVENT_CLASSES = _event_classes()


def decode_event(payload: bytes) -> Event:
    """The inverse of ``encode_event``: a run log entry back to its event, for
    encoders of other protocols that replay a run (e.g. the AI SDK's resume)."""
    d = orjson.loads(payload)
    cls = _EVENT_CLASSES[d.pop("type")]
    if "usage" in d and isinstance(d["usage"], dict):
        d["usage"] = Usage(**d["usage"])
    return cls(**d)


class Source(Protocol):
    """What a run consumes: the router's ``Opened`` fits."""

    def batches(self) -> AsyncIterator[list[Event]]: ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    def batch(self, events: list[Event], encoded: list[bytes]) -> None: ...  # encoded[i] is events[i] as JSON

    async def end(self, status: str) -> None: ...  # "complete" | "interrupted" | "error"


class RunLog(Protocol):
    async def create(self, run_id: str, meta: dict[str, Any]) -> None: ...

    async def append(self, run_id: str, payloads: list[bytes], *, end: bool = False) -> None: ...

    def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        """Entries after ``after``, then the live tail, ending after the
        terminal entry; an empty list after ``heartbeat`` seconds of silence."""
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


# ------------------------------------------------------------------ memory
@dataclass(slots=True)
class _MemRun:
    meta: dict[str, Any]
    entries: list[bytes] = field(default_factory=list)
    ended: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryRunLog:
    """Run logs in this process. A finished run's log is kept ``ttl`` seconds."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._runs: dict[str, _MemRun] = {}
        self._aliases: dict[str, str] = {}
        self._alias_of: dict[str, str] = {}

    async def open(self, on_stop: Callable[[str, str], Awaitable[None]]) -> None:
        pass  # every run is local: the hub stops it directly

    async def create(self, run_id: str, meta: dict[str, Any]) -> None:
        self._runs[run_id] = _MemRun(meta)

    async def append(self, run_id: str, payloads: list[bytes], *, end: bool = False) -> None:
        r = self._runs.get(run_id)
        if r is None:
            return
        r.entries.extend(payloads)
        if end:
            r.ended = True
            asyncio.get_running_loop().call_later(self.ttl, self._expire, run_id)
        # wake every reader: swap in a fresh Event, set the old one
        changed, r.changed = r.changed, asyncio.Event()
        changed.set()

    async def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        r = self._runs.get(run_id)
        if r is None:
            return
        i = max(after, 0)
        while True:
            changed = r.changed  # taken before the checks: no await in between, so no lost wake-up
            if i < len(r.entries):
                n = len(r.entries)
                yield [(j + 1, r.entries[j]) for j in range(i, n)]
                i = n
                continue
            if r.ended:
                return
            try:
                await asyncio.wait_for(changed.wait(), heartbeat)
            except TimeoutError:
                yield []

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


# --------------------------------------------------------------------- hub
@dataclass(slots=True)
class Run:
    id: str
    open: Callable[[], Awaitable[Source]]
    observer: Observer
    meta: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    closing: bool = False  # saving: a stop now would cut the save short
    status: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    def __init__(self, runlog: RunLog | None = None, *, disconnect: str = "continue",
                 shutdown_grace: float = 3.0) -> None:
        if disconnect not in ("continue", "cancel"):
            raise ValueError(f"disconnect policy must be 'continue' or 'cancel', not {disconnect!r}")
        self.log: RunLog = runlog or MemoryRunLog()
        self.disconnect = disconnect
        self.shutdown_grace = shutdown_grace
        self.runs: dict[str, Run] = {}  # active runs owned by this process
        self._chores: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        await self.log.open(self._stop_requested)

    def every(self, seconds: float, chore: Callable[[], Awaitable[Any]]) -> None:
        """Run ``chore`` every ``seconds`` until the hub closes (errors are logged)."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await chore()
                except Exception:
                    log.exception("hub chore failed")
        self._chores.append(asyncio.create_task(loop(), name="hub-chore"))

    async def start(self, run_id: str, open_: Callable[[], Awaitable[Source]], observer: Observer,
                    meta: dict[str, Any] | None = None) -> Run:
        run = Run(run_id, open_, observer, meta or {})
        await self.log.create(run_id, run.meta)
        self.runs[run_id] = run
        run.task = asyncio.create_task(self._drive(run), name=f"run-{run_id}")
        return run

    def read(self, run_id: str, after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        return self.log.read(run_id, after, heartbeat=heartbeat)

    async def exists(self, run_id: str) -> bool:
        return run_id in self.runs or await self.log.meta(run_id) is not None

    async def wait(self, run_id: str) -> str | None:
        """Wait for a local run to end; its final status."""
        run = self.runs.get(run_id)
        if run is None:
            return None
        await run.done.wait()
        return run.status

    async def stop(self, run_id: str, reason: str = "stopped", *, wait_up_to: float = 10.0) -> bool:
        """Stop a run wherever it runs and wait until it has ended (and so
        been saved). False when no such run is active."""
        run = self.runs.get(run_id)
        if run is not None:
            self._cancel(run, reason)
            try:
                async with asyncio.timeout(wait_up_to):
                    await run.done.wait()
            except TimeoutError:
                log.warning("run %s did not end within %.1fs of stop", run_id, wait_up_to)
            return True
        if not await self.log.is_live(run_id):
            return False
        await self.log.request_stop(run_id, reason)
        try:  # the owner appends the end only after saving: wait for it
            async with asyncio.timeout(wait_up_to):
                await self.log.wait_ended(run_id)
        except TimeoutError:
            log.warning("remote run %s did not end within %.1fs of stop", run_id, wait_up_to)
        return True

    async def _stop_requested(self, run_id: str, reason: str) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            self._cancel(run, reason)

    def _cancel(self, run: Run, reason: str) -> None:
        if run.stop_reason is None and not run.closing and run.task is not None:
            run.stop_reason = reason
            run.task.cancel()

    async def aclose(self) -> None:
        """Graceful shutdown: ``stop_runs``, then close the run log."""
        await self.stop_runs()
        await self.log.aclose()

    async def stop_runs(self) -> None:
        """Let active runs finish for ``shutdown_grace`` seconds, then stop the
        rest (each is saved as interrupted). Safe to call more than once: the
        server calls it as soon as shutdown begins, so streams attached to
        runs end instead of holding the HTTP server's drain."""
        for t in self._chores:
            t.cancel()
        active = [r for r in self.runs.values() if not r.done.is_set()]
        if active and self.shutdown_grace > 0:
            await asyncio.wait([asyncio.ensure_future(r.done.wait()) for r in active],
                               timeout=self.shutdown_grace)
        for r in list(self.runs.values()):
            self._cancel(r, "shutdown")
        pending = [r.task for r in self.runs.values() if r.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=10)

    @staticmethod
    def _tell(run: Run, terminal: list[Event]) -> None:
        """Hand the observer a terminal event we made up; a failing observer
        must not keep the run from ending."""
        try:
            run.observer.batch(terminal, [encode_event(ev) for ev in terminal])
        except Exception:
            log.exception("observer of run %s failed", run.id)

    async def _drive(self, run: Run) -> None:
        source: Source | None = None
        terminal: list[Event] = []
        status = "complete"
        try:
            source = await run.open()
            async for batch in source.batches():
                cut = next((i for i, ev in enumerate(batch) if ev.type in TERMINAL_TYPES), -1)
                if cut >= 0:
                    batch = batch[: cut + 1]
                encoded = [encode_event(ev) for ev in batch]  # once, for the log and the recorder
                run.observer.batch(batch, encoded)
                if cut < 0:
                    await self.log.append(run.id, encoded)
                    continue
                if cut:
                    await self.log.append(run.id, encoded[:cut])
                terminal = [batch[cut]]
                break
            if not terminal:
                raise SluicewayError("upstream stream ended without a finish event", code="upstream_error")
            status = {"finish": "complete", "abort": "interrupted"}.get(terminal[0].type, "error")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # we were stopped on purpose: finish the bookkeeping below
            terminal, status = [Abort(run.stop_reason or "cancelled")], "interrupted"
            self._tell(run, terminal)
        except Exception as e:
            if not isinstance(e, SluicewayError):
                log.exception("run %s failed", run.id)
                e = SluicewayError("internal error while streaming", code="internal_error")
            terminal, status = [e.to_event()], "error"
            self._tell(run, terminal)
        finally:
            run.closing = True
            if source is not None:
                try:
                    await source.aclose()  # closes the upstream connection
                except Exception:
                    log.exception("closing the source of run %s", run.id)
        run.status = status
        try:
            await run.observer.end(status)
        except Exception:
            log.exception("saving run %s failed", run.id)
        try:
            await self.log.append(run.id, [encode_event(ev) for ev in terminal], end=True)
        except Exception:
            log.exception("closing the run log of %s failed", run.id)
        finally:
            self.runs.pop(run.id, None)
            run.done.set()
