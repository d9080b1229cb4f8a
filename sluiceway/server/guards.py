"""Connection and request guards: slow clients, cross-site requests, DNS rebinding.

- ``guarded_protocol``: uvicorn's HTTP protocol with read deadlines. A request's
  headers must arrive within ``header_timeout`` seconds of its first byte and
  its body within ``body_timeout`` seconds after the headers; otherwise the
  client gets a 408 and the connection is closed. Without it, a client that
  sends half a request holds a connection (and a worker's memory) forever.
- ``CrossSiteGuard`` (pure ASGI), in open mode (no keys, so a request needs no
  credential): API writes must be JSON (or a multipart upload where a route
  takes files), so a web page cannot POST to the server with a "simple" CORS
  request (``text/plain``, forms, a typeless blob) that skips the preflight;
  and a server bound to loopback answers only to loopback host names, so DNS
  rebinding cannot reach it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ..core import SluicewayError
from ..protocols import anthropic_messages, openai_chat

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s")
_TIMEOUT_BODY = orjson.dumps({"error": {"message": "the request was not received in time", "type":
                                        "invalid_request_error", "param": None, "code": "request_timeout"}})


def guarded_protocol(header_timeout: float, body_timeout: float) -> type:
    """A subclass of uvicorn's httptools protocol with read deadlines (0 = none)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Guarded(HttpToolsProtocol):
        # A deadline the parser's callbacks ask for is armed once the read is parsed, and only if the
        # request is still incomplete: a request that arrives whole in one read (nearly all) makes no timer.
        _deadline: asyncio.TimerHandle | None = None
        _pending: float | None = None

        def data_received(self, data: bytes) -> None:
            self._pending = None
            super().data_received(data)
            if self._pending is not None:
                self._arm(self._pending)
                self._pending = None

        def _arm(self, seconds: float) -> None:
            self._disarm()
            if seconds > 0:
                self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_TIMEOUT_RESPONSE % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
            self.transport.close()  # the app, if it was reading the body, sees a disconnect

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_timeout)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._pending = header_timeout

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._pending = body_timeout

        def on_message_complete(self) -> None:
            self._pending = None
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Guarded


_WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _error(path: str, status: int, code: str, message: str) -> bytes:
    """The error in the shape of the API the path belongs to (the protocols' own encoders)."""
    if path.startswith(("/api/workflows", "/api/tasks", "/api/v1/run")):
        return orjson.dumps({"detail": message})  # model-compose's shape
    encode = anthropic_messages.encode_error if path.startswith("/v1/messages") else openai_chat.encode_error
    return encode(SluicewayError(message, status=status, code=code))[1]


@functools.lru_cache(maxsize=256)  # the server's own address, on every request
def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class CrossSiteGuard:
    def __init__(self, app: Any, *, open_mode: Callable[[], bool], allowed_hosts: Iterable[str] = (),
                 upload_paths: Iterable[str] = ("/v1/audio/transcriptions",)) -> None:
        self.app = app
        self.open_mode = open_mode
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.upload_paths = tuple(upload_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        problem = self._check(scope)
        if problem is None:
            return await self.app(scope, receive, send)
        status, code, message = problem
        body = _error(scope["path"], status, code, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope: dict[str, Any]) -> tuple[int, str, str] | None:
        headers = dict(scope["headers"])
        if not self.open_mode():
            return None  # with keys, a cross-site page has no credential to send (no cookies are used)
        server = scope.get("server")
        if server and _is_loopback(server[0]):
            host = _hostname(headers.get(b"host", b"").decode("latin-1"))
            if host not in _LOOPBACK_NAMES and not host.endswith(".localhost") and host not in self.allowed_hosts:
                return 421, "host_not_allowed", (f"host {host!r} is not served: this server listens on loopback "
                                                 "without keys (add it to server.allowed_hosts)")
        if scope["method"] in _WRITE:
            ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if not ctype:
                length = headers.get(b"content-length", b"0")
                chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
                return None if length in (b"", b"0") and not chunked else (
                    415, "unsupported_media_type", "a request body must be sent as Content-Type: application/json")
            if ctype == b"application/json" or ctype.endswith(b"+json"):
                return None
            if ctype == b"multipart/form-data" and scope["path"].startswith(self.upload_paths):
                return None
            return 415, "unsupported_media_type", (f"Content-Type {ctype.decode('latin-1')!r} is not accepted: "
                                                   "send JSON (application/json)")
        return None
