"""Streaming responses as plain ASGI callables.

``SSEResponse`` sends the headers and the first batch, then one body write
per upstream batch. It races the pump against ``http.disconnect``: when the
client leaves, the pump task is cancelled at whatever it awaits (usually the
upstream read), which closes the provider stream and so the upstream
connection. Keep-alive comments go out from a timer only after a silence,
so they cost nothing per chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ..core import Error, Event, SluicewayError
from ..engine.router import Opened
from ..engine.runs import Observer, Outcome, Runs, batch_all, end_all
from ..protocols import sse
from .observe import RAW_SEND
from .pacer import Pacer

log = logging.getLogger("sluiceway.stream")
T = TypeVar("T")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Encoder(Protocol):
    done: bool

    def feed(self, events: list[Event]) -> bytes: ...


class ClientGone(Exception):
    pass


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Run ``work`` in this task; if the client disconnects first, cancel it
    and raise ClientGone. One watcher task per call: the work itself is not
    wrapped in a task of its own."""
    return await Disconnect(receive).guard(work, close=True)


class Disconnect:
    """The watcher of one request's ``http.disconnect``: one task that reads
    ``receive`` and, when the client leaves, cancels whichever task is
    guarded at that moment. A request's generic flow guards opening the
    upstream and then streaming with the same watcher (``Disconnect.of``), so
    a stream costs one watcher task, not one per phase. The watcher ends on
    its own when the response is complete (the server's ``receive`` then says
    ``http.disconnect``)."""

    __slots__ = ("receive", "task", "target", "gone")
    KEY = "sluiceway.disconnect"

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.task: asyncio.Future[None] | None = None
        self.target: asyncio.Task[Any] | None = None
        self.gone = False

    @classmethod
    def of(cls, scope: Scope, receive: Receive) -> Disconnect:
        """The request's shared watcher (made on first use)."""
        state = scope.setdefault("state", {})
        watch = state.get(cls.KEY)
        if watch is None:
            watch = state[cls.KEY] = cls(receive)
        return watch

    async def _watch(self) -> None:
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                self.gone = True
                if self.target is not None:
                    self.target.cancel()
                return

    async def guard(self, work: Awaitable[T], *, close: bool = False) -> T:
        """Await ``work`` in this task; ClientGone if the client leaves first.
        ``close`` stops the watcher afterwards (a one-off guard)."""
        me = asyncio.current_task()
        assert me is not None
        if self.gone:
            if asyncio.iscoroutine(work):
                work.close()
            raise ClientGone()
        if self.task is None:
            self.task = asyncio.ensure_future(self._watch())
        self.target = me
        try:
            return await work
        except asyncio.CancelledError:
            if not self.gone:
                raise
            me.uncancel()
            raise ClientGone() from None
        finally:
            self.target = None
            if close:
                self.close()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class SSEResponse:
    def __init__(self, opened: Opened, encoder: Encoder, *, keepalive: float = 15.0,
                 headers: list[tuple[bytes, bytes]] | None = None, observers: list[Observer] | None = None,
                 stall_timeout: float = 60.0) -> None:
        self.opened = opened
        self.encoder = encoder
        self.keepalive = keepalive
        self.stall_timeout = stall_timeout
        self.headers = sse.HEADERS + (headers or [])
        self.observers = observers or []
        self._live: set[Any] | None = None  # the app's streams in flight (graceful shutdown)
        self._task: asyncio.Task[Any] | None = None
        self._shutdown = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        outcome = Outcome.COMPLETE  # (an error event is the observers' to see)
        app = scope.get("app")
        self._live = getattr(getattr(getattr(app, "state", None), "sluiceway", None), "streams", None)
        watch = Disconnect.of(scope, receive)
        try:
            # body chunks skip the middleware's send wrappers (they act on the start and the end only)
            await watch.guard(self._pump(scope.get(RAW_SEND) or send, send))
        except ClientGone:
            outcome = Outcome.INTERRUPTED
            log.info("client disconnected; upstream cancelled")
        except OSError:  # the socket died under a send
            outcome = Outcome.INTERRUPTED
        finally:
            watch.close()
            await end_all(self.observers, outcome)

    async def _pump(self, send: Send, end: Send) -> None:
        """Backpressure: ``send`` waits while the client's socket buffer is
        full, so a slow reader slows our upstream reads (and TCP slows the
        upstream) instead of growing a buffer. A client that stops reading
        for ``stall_timeout`` is dropped and its upstream closed."""
        enc, obs = self.encoder, self.observers
        pacer = Pacer(self.keepalive, self.stall_timeout)
        pacer.start(send)
        me = self._task = asyncio.current_task()
        if self._live is not None:
            self._live.add(self)
        try:
            await self._relay(send, pacer, enc, obs)
        except asyncio.CancelledError:
            if self._shutdown:  # the server is stopping: end in the protocol's own terms
                me.uncancel()  # type: ignore[union-attr]
                ev: list[Event] = [Error("server_shutdown", "the server is shutting down; retry", True, 503)]
                batch_all(obs, ev)
                await pacer.write(enc.feed(ev))
            elif not pacer.stalled:
                raise
            else:
                me.uncancel()  # type: ignore[union-attr]
                log.warning("client stopped reading for %.0fs; dropped and upstream closed", self.stall_timeout)
                return
        finally:
            if self._live is not None:
                self._live.discard(self)
            pacer.stop()
            await self.opened.aclose()
        await end({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay(self, send: Send, pacer: Pacer, enc: Encoder, obs: list[Observer]) -> None:
        batch_all(obs, self.opened.first)
        await pacer.write(enc.feed(self.opened.first))
        loop = pacer.loop
        try:
            async for batch in self.opened.rest:
                for o in obs:  # inline: this loop runs once per upstream read
                    o.batch(batch)
                data = enc.feed(batch)
                if data:
                    pacer.last = pacer.blocked = loop.time()  # pacer.write, inlined
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    pacer.blocked = 0.0
            if not enc.done:
                raise SluicewayError("upstream stream ended without a finish event", code="upstream_error")
        except OSError:
            raise
        except Exception as e:
            if isinstance(e, SluicewayError):
                err = e
            else:
                log.exception("stream failed")
                err = SluicewayError("internal error while streaming", code="internal_error")
            ev: list[Event] = [Error(err.code, err.message, err.retryable, err.status)]
            batch_all(obs, ev)
            await pacer.write(enc.feed(ev))


class RunSSE:
    """One run's log over SSE: the entries after ``after`` (replay), then the
    live tail, each read rendered to bytes by ``render``. Ends when the log
    ends or ``finished()`` says the rendering is complete. With ``json`` the
    entries come as canonical event JSON (``Runs.read_json``). ``on_disconnect``
    runs if the client leaves first, ``on_delivered`` once it has had the
    whole answer."""

    def __init__(self, runs: Runs, run_id: str, render: Callable[[list[Any]], bytes], *,
                 after: int = 0, first: bytes = b"", json: bool = False, keepalive: float,
                 stall_timeout: float = 60.0,
                 headers: list[tuple[bytes, bytes]] | None = None,
                 finished: Callable[[], bool] | None = None,
                 on_disconnect: Callable[[], Awaitable[Any]] | None = None,
                 on_delivered: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.runs, self.run_id, self.render, self.after, self.first = runs, run_id, render, after, first
        self.read = runs.read_json if json else runs.read
        self.keepalive, self.stall_timeout = keepalive, stall_timeout
        self.headers = sse.HEADERS + (headers or [])
        self.finished = finished
        self.on_disconnect, self.on_delivered = on_disconnect, on_delivered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        watch = Disconnect.of(scope, receive)
        try:
            await watch.guard(self._pump(scope.get(RAW_SEND) or send, send))
        except (ClientGone, OSError):
            await self._call(self.on_disconnect)
            return
        finally:
            watch.close()
        await self._call(self.on_delivered)

    async def _call(self, hook: Callable[[], Awaitable[Any]] | None) -> None:
        if hook is None:
            return
        try:
            await hook()
        except Exception:
            log.exception("run %s: stream hook failed", self.run_id)

    async def _pump(self, send: Send, end: Send) -> None:
        # keep-alive comes from the log's heartbeat (an empty read); the pacer drops a stalled client
        pacer = Pacer(0, self.stall_timeout)
        pacer.start(send)
        loop = pacer.loop
        try:
            if self.first:
                await pacer.write(self.first)
            async for entries in self.read(self.run_id, self.after, heartbeat=self.keepalive or None):
                body = self.render(entries) if entries else sse.KEEPALIVE
                if body:
                    pacer.last = pacer.blocked = loop.time()  # pacer.write, inlined
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    pacer.blocked = 0.0
                if self.finished is not None and self.finished():
                    break
        except asyncio.CancelledError:
            if not pacer.stalled:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            log.warning("client stopped reading for %.0fs; dropped", self.stall_timeout)
            raise ClientGone() from None
        finally:
            pacer.stop()
        await end({"type": "http.response.body", "body": b"", "more_body": False})


def replay(runs: Runs, run_id: str, encoder: Encoder, **kw: Any) -> RunSSE:
    """One run's log, from its start, through a fresh protocol encoder: every
    reader gets the protocol's own frames, numbered the same way. The log
    holds events, so nothing is decoded."""
    return RunSSE(runs, run_id, lambda entries: encoder.feed([ev for _, ev in entries]),
                  finished=lambda: encoder.done, **kw)


async def drain_streams(streams: set[Any], grace: float) -> None:
    """Graceful shutdown of direct streams: let them finish for ``grace``
    seconds, then end each with its protocol's error frame (code
    ``server_shutdown``, retryable) so clients learn why and may retry,
    instead of having the connection cut at uvicorn's drain timeout."""
    tasks = [s._task for s in streams if s._task is not None]
    if tasks and grace > 0:
        await asyncio.wait(tasks, timeout=grace)
    for stream in list(streams):
        stream._shutdown = True
        if stream._task is not None:
            stream._task.cancel()
