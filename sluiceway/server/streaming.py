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
from ..protocols import sse

log = logging.getLogger("sluiceway.stream")
T = TypeVar("T")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Encoder(Protocol):
    done: bool

    def feed(self, events: list[Event]) -> bytes: ...


class Tap(Protocol):
    """Sees every batch the client is sent (recorder, hub, metrics)."""

    def batch(self, events: list[Event]) -> None: ...

    def end(self, outcome: str) -> None: ...  # "complete" | "error" | "disconnect"


class ClientGone(Exception):
    pass


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Run ``work``; if the client disconnects first, cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if not task.done():
        task.cancel()
        try:
            await task
        except BaseException:  # the cancelled work's own exception is moot: nobody is listening
            pass
        raise ClientGone()
    watcher.cancel()
    return task.result()


class SSEResponse:
    def __init__(self, opened: Opened, encoder: Encoder, *, keepalive: float = 15.0,
                 headers: list[tuple[bytes, bytes]] | None = None, tap: Tap | None = None) -> None:
        self.opened = opened
        self.encoder = encoder
        self.keepalive = keepalive
        self.headers = sse.HEADERS + (headers or [])
        self.tap = tap
        self._last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        outcome = "complete"
        try:
            await until_disconnect(receive, self._pump(send))
        except ClientGone:
            outcome = "disconnect"
            log.info("client disconnected; upstream cancelled")
        except OSError:  # the socket died under a send
            outcome = "disconnect"
        finally:
            if self.tap is not None:
                self.tap.end(outcome)

    async def _pump(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        enc, tap = self.encoder, self.tap
        self._last = loop.time()
        ka = asyncio.ensure_future(self._keepalive(send)) if self.keepalive > 0 else None
        try:
            if tap is not None:
                tap.batch(self.opened.first)
            await send({"type": "http.response.body", "body": enc.feed(self.opened.first), "more_body": True})
            self._last = loop.time()
            try:
                async for batch in self.opened.rest:
                    if tap is not None:
                        tap.batch(batch)
                    data = enc.feed(batch)
                    if data:
                        self._last = loop.time()
                        await send({"type": "http.response.body", "body": data, "more_body": True})
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
                if tap is not None:
                    tap.batch(ev)
                await send({"type": "http.response.body", "body": enc.feed(ev), "more_body": True})
        finally:
            if ka is not None:
                ka.cancel()
            await self.opened.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keepalive(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last + self.keepalive - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._last = loop.time()
            await send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
