"""SSE framing for every client-facing protocol, in one place (WHATWG §9.2,
protocols.md §1.3)."""

from __future__ import annotations

import orjson

# Response headers for an SSE stream. No Content-Length and no compression:
# both make intermediaries buffer. X-Accel-Buffering turns off nginx buffering.
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"

_dumps = orjson.dumps


def data(payload: bytes) -> bytes:
    """One event carrying compact JSON (never contains a raw newline)."""
    return b"data: " + payload + b"\n\n"


def json_data(obj: object) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def named(event: str, obj: object) -> bytes:
    """An event with an ``event:`` line (Anthropic, Responses)."""
    return b"event: " + event.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def text_data(text: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """Arbitrary text as one event: every line of it becomes a ``data:`` line,
    so newlines survive (a client joins them back with \\n)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = b""
    if id is not None:
        head += b"id: " + id.encode() + b"\n"
    if event:
        head += b"event: " + event.encode() + b"\n"
    return head + b"".join(b"data: " + ln.encode() + b"\n" for ln in lines) + b"\n"


def numbered(n: int, payload: bytes) -> bytes:
    """An event with an ``id:`` line, so a client can resume after it (Last-Event-ID)."""
    return b"id: %d\ndata: %s\n\n" % (n, payload)
