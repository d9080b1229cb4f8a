"""sluiceway's own session-chat protocol (``POST /chat``, ``/chat/stream``,
``GET /runs/{id}/stream``).

Request: ``{session_id?, message, model?, system?, params?}`` (the params may
also be given at the top level). Stream: one ``event: run`` frame (no id)
naming the run, session and messages, then per canonical event ``id: <n>`` +
``data: <event JSON>``, so a client reattaches with ``Last-Event-ID`` (or
``?after=n``). Errors are OpenAI-shaped.

``/chat/stream?format=content`` is the minimal shape many hand-written chat
pages read (seed 001): only ``data: {"content": "<text delta>"}`` frames, no
run frame, ids or other events (the ids stay in the x-run-id / x-session-id /
x-message-id headers); an error is ``data: {"content": "", "error": "…"}`` so
such a page appends nothing instead of "undefined".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core import BadRequest, Event, Message, RequestTooLarge, TextPart, encode_event
from . import sse
from .openai_chat import encode_error

__all__ = ["FORMATS", "PARAMS", "ChatInput", "check_format", "decode_request", "encode_content", "encode_error",
           "encode_entries", "encode_events", "history_messages", "run_frame"]

FORMATS = ("events", "content")

PARAMS: dict[str, Any] = {"temperature": (int, float), "top_p": (int, float), "max_tokens": int, "seed": int,
                          "stop": list, "reasoning_effort": str}


@dataclass(slots=True)
class ChatInput:
    message: str
    session_id: str | None = None
    model: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def decode_request(body: Any, max_chars: int) -> ChatInput:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    msg = body.get("message")
    if isinstance(msg, dict):  # {"role": "user", "content": "…"} is accepted too
        msg = msg.get("content")
    if not isinstance(msg, str) or not msg.strip():
        raise BadRequest("'message' must be a non-empty string", param="message")
    if len(msg) > max_chars:
        raise RequestTooLarge(f"'message' is longer than {max_chars} characters", param="message")
    out = ChatInput(msg)
    for name in ("session_id", "model", "system"):
        v = body.get(name)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"'{name}' must be a string", param=name)
        setattr(out, name, v or None)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object", param="params")
    params = {**params, **{k: body[k] for k in PARAMS if k in body}}
    for k, v in params.items():
        if k not in PARAMS:
            raise BadRequest(f"unknown parameter {k!r}; known: {', '.join(PARAMS)}", param=k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, PARAMS[k])):
            raise BadRequest(f"parameter {k!r} has the wrong type", param=k)
    out.params = {k: v for k, v in params.items() if v is not None}
    return out


def history_messages(rows: list[dict[str, Any]]) -> list[Message]:
    """Stored messages → the model's context. Answers still streaming (a
    concurrent turn) and failed answers with no text are left out."""
    out: list[Message] = []
    for r in rows:
        text = r["text"]
        if r["role"] == "assistant" and (r["status"] == "streaming" or not text):
            continue
        out.append(Message(role=r["role"], content=[TextPart(text)]))
    return out


def run_frame(ids: dict[str, str]) -> bytes:
    """The first frame of ``/chat/stream``: which run, session and messages."""
    return sse.named("run", ids)


def encode_entries(entries: list[tuple[int, bytes]]) -> bytes:
    """Run-log entries, already canonical event JSON (``Runs.read_json``), as
    numbered frames (``sse.numbered``, inlined: this is the hot path)."""
    return b"".join([b"id: %d\ndata: %s\n\n" % e for e in entries])


def check_format(value: str | None) -> str:
    fmt = value or "events"
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", param="format")
    return fmt


def encode_content(entries: list[tuple[int, Event]]) -> bytes:
    """``format=content``: text deltas as ``{"content": …}`` frames, nothing else."""
    out = []
    for _, ev in entries:
        if ev.type == "text-delta":
            out.append(b'data: {"content":' + orjson.dumps(ev.delta) + b"}\n\n")
        elif ev.type == "error":
            out.append(b"data: " + orjson.dumps({"content": "", "error": ev.message}) + b"\n\n")
    return b"".join(out)


def encode_events(entries: list[tuple[int, Event]]) -> bytes:
    """The same from ``Event`` entries."""
    return encode_entries([(n, encode_event(ev)) for n, ev in entries])
