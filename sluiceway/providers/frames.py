"""The read loop every HTTP adapter shares, and the framings it reads.

``relay`` owns the upstream response: it reads under the deadlines, hands
each read to a decoder, yields the events that read produced as one batch,
and closes the connection when the stream is abandoned (so the upstream stops
generating) or returns it to the pool when the stream was read to its end.
A decoder is a small object turning bytes into adapter calls; the adapter is
each vendor's pure state machine (JSON object in, events out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import aiohttp
import orjson

from ..core import Deadlines, Event, SluicewayError, UpstreamError, WireTrace
from .http import DeadlineReader
from .sse import SSEParser

loads = orjson.loads


class Adapter(Protocol):
    done: bool

    def feed(self, obj: dict[str, Any], out: list[Event]) -> None: ...

    def end(self, out: list[Event]) -> None:
        """The body ended: close the stream, or raise if it was cut short."""


class Decoder(Protocol):
    done: bool

    def decode(self, data: bytes, out: list[Event]) -> None:
        """One read (``b""`` at EOF, after which ``done`` must be set)."""


async def relay(opening: Awaitable[aiohttp.ClientResponse], decoder: Decoder, deadline: Deadlines,
                provider: str, trace: WireTrace | None = None) -> AsyncIterator[list[Event]]:
    """An adapter's whole ``stream``: returned directly (no extra generator
    hop), it opens the request on first iteration. ``trace`` is the request's
    ``wire``: it sees every byte read, for the debug trace."""
    resp = await opening
    reader = DeadlineReader(resp, deadline, provider)
    try:
        while not decoder.done:
            data = await reader.read()
            if trace is not None:
                trace.on_data(data)
            out: list[Event] = []
            failed: SluicewayError | None = None
            try:
                decoder.decode(data, out)
            except SluicewayError as e:
                failed = e  # deliver what came before the error in this read first
            if out:
                if len(out) > 1 or out[0].type != "start":
                    reader.mark_first_token()
                yield out
            if failed is not None:
                raise failed
    finally:
        reader.close()
        if decoder.done:
            resp.release()
        else:  # abandoned or failed: drop the connection so the upstream stops (protocols.md §9 #6)
            resp.close()


def _loads(raw: str | bytes, provider: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if isinstance(raw, bytes):  # invalid UTF-8 inside otherwise good JSON: read it as U+FFFD, as a decoder would
        try:
            return orjson.loads(raw.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            pass
    raise UpstreamError(f"{provider}: upstream sent invalid JSON: {raw[:200]!r}") from None


class JsonSSE:
    """SSE whose data payloads are JSON objects (OpenAI, Anthropic, Gemini).
    A JSON array payload (Gemini without ``alt=sse``) is fed item by item;
    ``data: [DONE]`` ends the stream where the vendor sends it."""

    __slots__ = ("adapter", "provider", "parser", "done")

    def __init__(self, adapter: Adapter, provider: str) -> None:
        self.adapter, self.provider = adapter, provider
        self.parser = SSEParser()
        self.done = False

    def decode(self, data: bytes, out: list[Event]) -> None:
        adapter = self.adapter
        feed = adapter.feed
        for _event, payload in self.parser.feed(data) if data else self.parser.close():
            try:  # inline: once per chunk
                obj = loads(payload)
            except orjson.JSONDecodeError:
                if payload.startswith(b"[DONE]"):
                    adapter.end(out, saw_done=True)  # type: ignore[call-arg]
                    self.done = True
                    return
                obj = _loads(payload, self.provider)
            if type(obj) is dict:
                feed(obj, out)
            elif isinstance(obj, list):
                for item in obj:
                    if isinstance(item, dict):
                        adapter.feed(item, out)
            if adapter.done:  # the vendor's own terminal event (message_stop, …)
                self.done = True
                return
        if not data:
            adapter.end(out)
            self.done = True


class NDJSONLines:
    """Bytes in, complete lines out. Splitting on ``\\n`` before decoding keeps
    a UTF-8 character that straddles two reads intact (``\\n`` is never inside
    a multi-byte sequence)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        return [ln for ln in lines if ln.strip()]

    def close(self) -> list[bytes]:
        tail, self._buf = self._buf, b""
        return [tail] if tail.strip() else []


class JsonLines:
    """Newline-delimited JSON (Ollama's native API)."""

    __slots__ = ("adapter", "provider", "lines", "done")

    def __init__(self, adapter: Adapter, provider: str) -> None:
        self.adapter, self.provider = adapter, provider
        self.lines = NDJSONLines()
        self.done = False

    def decode(self, data: bytes, out: list[Event]) -> None:
        adapter = self.adapter
        for line in self.lines.feed(data) if data else self.lines.close():
            obj = _loads(line, self.provider)
            if isinstance(obj, dict):
                adapter.feed(obj, out)
                if adapter.done:
                    self.done = True
                    return
        if not data:
            adapter.end(out)
            self.done = True
