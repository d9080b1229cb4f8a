"""The runs service: generations owned by the server, not by an HTTP request.

A run is an asyncio task that pulls its source's batches, hands each batch
to the run's observers (the recorder, a stored Response, metrics, a key's
limits) and appends its events to a *run log*. Clients never read the
source directly: they read the run log, from any position, so a client that
reconnects with ``Last-Event-ID: n`` gets events ``n+1…`` and then the live
tail, with no duplicates and no gaps. Several clients can read one run; a
run survives its client leaving (unless the disconnect policy says
``cancel``) and can be stopped by id, from any replica.

Run logs: ``MemoryRunLog`` (this process; ``Event`` objects, no JSON) and
``RedisRunLog`` (shared by replicas; the only one that serialises).

Ordering rule: the terminal event (finish / error / abort) is appended only
after the observers have ended (saved), so a client that has seen the end
of a run can read the stored answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...core import TERMINAL_TYPES, Abort, Event, SluicewayError
from .log_memory import Entry, JsonEntry, MemoryRunLog, RunLog
from .observers import Observer, Outcome, batch_all, end_all, outcome_of

log = logging.getLogger("sluiceway.runs")


class Source(Protocol):
    """What a run consumes: the router's ``Opened`` fits."""

    def batches(self) -> AsyncIterator[list[Event]]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Run:
    id: str
    open: Callable[[], Awaitable[Source]]
    observers: list[Observer]
    meta: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    closing: bool = False  # saving: a stop now would cut the save short
    outcome: Outcome | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Runs:
    def __init__(self, runlog: RunLog | None = None, *, disconnect: str = "continue",
                 shutdown_grace: float = 3.0) -> None:
        if disconnect not in ("continue", "cancel"):
            raise ValueError(f"disconnect policy must be 'continue' or 'cancel', not {disconnect!r}")
        self.log: RunLog = runlog or MemoryRunLog()
        self.disconnect = disconnect
        self.shutdown_grace = shutdown_grace
        self.active: dict[str, Run] = {}  # runs owned by this process
        self._chores: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        await self.log.open(self._stop_requested)

    def every(self, seconds: float, chore: Callable[[], Awaitable[Any]]) -> None:
        """Run ``chore`` every ``seconds`` until the service closes (errors are logged)."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await chore()
                except Exception:
                    log.exception("runs chore failed")
        self._chores.append(asyncio.create_task(loop(), name="runs-chore"))

    async def start(self, run_id: str, open_: Callable[[], Awaitable[Source]], observers: list[Observer],
                    meta: dict[str, Any] | None = None) -> Run:
        run = Run(run_id, open_, observers, meta or {})
        await self.log.create(run_id, run.meta)
        self.active[run_id] = run
        run.task = asyncio.create_task(self._drive(run), name=f"run-{run_id}")
        return run

    def read(self, run_id: str, after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        return self.log.read(run_id, after, heartbeat=heartbeat)

    def read_json(self, run_id: str, after: int = 0, *,
                  heartbeat: float | None = None) -> AsyncIterator[list[JsonEntry]]:
        """``read`` with each event as its canonical JSON (made once per event, for every reader)."""
        return self.log.read_json(run_id, after, heartbeat=heartbeat)

    async def exists(self, run_id: str) -> bool:
        return run_id in self.active or await self.log.meta(run_id) is not None

    async def is_running(self, run_id: str) -> bool:
        """Running here or on another replica."""
        return run_id in self.active or await self.log.is_live(run_id)

    async def running_among(self, run_ids: list[str]) -> set[str]:
        here = {r for r in run_ids if r in self.active}
        return here | await self.log.live_among([r for r in run_ids if r not in here])

    async def wait(self, run_id: str) -> Outcome | None:
        """Wait for a local run to end; its outcome."""
        run = self.active.get(run_id)
        if run is None:
            return None
        await run.done.wait()
        return run.outcome

    async def stop(self, run_id: str, reason: str = "stopped", *, wait_up_to: float = 10.0) -> bool:
        """Stop a run wherever it runs and wait until it has ended (and so
        been saved). False when no such run is active."""
        run = self.active.get(run_id)
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
        run = self.active.get(run_id)
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
        active = [r for r in self.active.values() if not r.done.is_set()]
        if active and self.shutdown_grace > 0:
            await asyncio.wait([asyncio.ensure_future(r.done.wait()) for r in active],
                               timeout=self.shutdown_grace)
        for r in list(self.active.values()):
            self._cancel(r, "shutdown")
        pending = [r.task for r in self.active.values() if r.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=10)

    @staticmethod
    def _tell(run: Run, terminal: list[Event]) -> None:
        """Hand the observers a terminal event we made up; a failing observer
        must not keep the run from ending."""
        try:
            batch_all(run.observers, terminal)
        except Exception:
            log.exception("observer of run %s failed", run.id)

    async def _drive(self, run: Run) -> None:
        source: Source | None = None
        terminal: list[Event] = []
        try:
            source = await run.open()
            async for batch in source.batches():
                cut = next((i for i, ev in enumerate(batch) if ev.type in TERMINAL_TYPES), -1)
                if cut >= 0:
                    batch = batch[: cut + 1]
                batch_all(run.observers, batch)
                if cut < 0:
                    await self.log.append(run.id, batch)
                    continue
                if cut:
                    await self.log.append(run.id, batch[:cut])
                terminal = [batch[cut]]
                break
            if not terminal:
                raise SluicewayError("upstream stream ended without a finish event", code="upstream_error")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # we were stopped on purpose: finish the bookkeeping below
            terminal = [Abort(run.stop_reason or "cancelled")]
            self._tell(run, terminal)
        except Exception as e:
            if not isinstance(e, SluicewayError):
                log.exception("run %s failed", run.id)
                e = SluicewayError("internal error while streaming", code="internal_error")
            terminal = [e.to_event()]
            self._tell(run, terminal)
        finally:
            run.closing = True
            if source is not None:
                try:
                    await source.aclose()  # closes the upstream connection
                except Exception:
                    log.exception("closing the source of run %s", run.id)
        run.outcome = outcome_of(terminal[0])
        await end_all(run.observers, run.outcome)
        try:
            await self.log.append(run.id, terminal, end=True)
        except Exception:
            log.exception("closing the run log of %s failed", run.id)
        finally:
            self.active.pop(run.id, None)
            run.done.set()
