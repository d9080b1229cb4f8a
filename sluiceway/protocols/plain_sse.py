"""Plain SSE for simple clients and workflows (``POST /v1/stream?format=…``).

The request is the OpenAI Chat Completions body (decoded by ``openai_chat``).

- ``text``: each text delta is one unnamed event whose data is the text
  itself, one ``data:`` line per line of it, so newlines survive (§1.1: the
  client joins ``data:`` lines with ``\\n``). An ``EventSource`` ``onmessage``
  handler sees only text. The end is ``event: finish`` (JSON reason and
  usage) or ``event: error`` (JSON code and message): named, so text-only
  handlers never mistake them for content.
- ``json``: every canonical event as one ``data:`` line of JSON with its
  ``type`` (protocols.md §8.1), ending with the terminal event itself.
"""

from __future__ import annotations

from typing import Any

from ..core import TERMINAL_TYPES, BadRequest, ChatRequest, Event, encode_event
from . import sse
from .openai_chat import decode_request, encode_error  # noqa: F401  (the request and error shapes)

FORMATS = ("text", "json")


def _usage(u: Any) -> dict[str, Any]:
    return {"input": u.input, "output": u.output, "cached_input": u.cached_input, "reasoning": u.reasoning,
            "total": u.total, "estimated": u.estimated}


class TextEncoder:
    def __init__(self) -> None:
        self.done = False

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            t = ev.type
            if t == "text-delta":
                out.append(sse.text_data(ev.delta))
            elif t == "finish":
                out.append(sse.named("finish", {"reason": ev.reason, "usage": _usage(ev.usage)}))
                self.done = True
            elif t == "error":
                out.append(sse.named("error", {"code": ev.code, "message": ev.message}))
                self.done = True
            elif t == "abort":
                self.done = True
        return b"".join(out)


class JsonEncoder:
    def __init__(self) -> None:
        self.done = False

    def feed(self, events: list[Event]) -> bytes:
        out = [sse.data(encode_event(ev)) for ev in events]  # the canonical event JSON (core.codec)
        if any(ev.type in TERMINAL_TYPES for ev in events):
            self.done = True
        return b"".join(out)


def Encoder(body: dict[str, Any] | None = None, req: ChatRequest | None = None, *,  # noqa: N802
            format: str = "json") -> TextEncoder | JsonEncoder:
    """The encoder for ``format`` (text or json); named and called like the
    other protocols' ``Encoder(body, req, **options)``."""
    if format == "text":
        return TextEncoder()
    if format == "json":
        return JsonEncoder()
    raise ValueError(format)


def check_format(value: str | None) -> str:
    fmt = value or "json"
    if fmt not in FORMATS:
        raise BadRequest(f"format must be text or json, got {fmt!r}", param="format")
    return fmt

