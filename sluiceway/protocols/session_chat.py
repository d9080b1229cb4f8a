"""sluiceway's own session-chat protocol (``POST /chat``, ``/chat/stream``,
``GET /runs/{id}/stream``).

Request: ``{session_id?, message?, tool_results?, model?, system?, params?}``
(the params may also be given at the top level). ``message`` is a string, or
``{"role": "user", "content": …}`` whose content may be a list of OpenAI-style
parts (``text`` and ``image_url`` with a ``data:image/…;base64,`` or http(s)
URL). ``tool_results`` (``[{tool_call_id, content, dismissed?}]``) answer the
tool calls the session's last answer ended with, calls the server could not
run (a client's tools): they are stored as one ``tool`` message before the
user message, if there is one, and the model goes on from them.

Stream: one ``event: run`` frame (no id) naming the run, session and messages,
then per canonical event ``id: <n>`` + ``data: <event JSON>``, so a client
reattaches with ``Last-Event-ID`` (or ``?after=n``). Errors are OpenAI-shaped.

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

from ..core import (
    BadRequest,
    Event,
    ImagePart,
    Message,
    Part,
    RequestTooLarge,
    TextPart,
    ToolCallPart,
    encode_event,
)
from . import sse
from .openai_chat import encode_error

__all__ = ["FORMATS", "PARAMS", "ChatInput", "ToolReply", "check_format", "decode_request", "decode_tool_results",
           "encode_content", "encode_error", "encode_entries", "encode_events", "history_messages", "pending_calls",
           "run_frame", "tool_result_parts", "user_parts"]

FORMATS = ("events", "content")

PARAMS: dict[str, Any] = {"temperature": (int, float), "top_p": (int, float), "max_tokens": int, "seed": int,
                          "stop": list, "reasoning_effort": str}


MAX_IMAGES = 16  # per message; their bytes are bounded by server.max_body_bytes
MAX_TOOL_RESULTS = 128
IMAGE_URL = ("data:image/", "https://", "http://")


@dataclass(slots=True)
class ToolReply:
    """A client's answer to one tool call; ``dismissed``: the user chose not to run it."""

    call_id: str
    output: str
    dismissed: bool = False


@dataclass(slots=True)
class ChatInput:
    message: str | None  # None: a turn of tool results only
    session_id: str | None = None
    model: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # image URLs sent with the message
    tool_results: list[ToolReply] = field(default_factory=list)


def _user_message(msg: Any, max_chars: int) -> tuple[str, list[str]]:
    """``message`` → (text, image URLs)."""
    content = msg.get("content") if isinstance(msg, dict) else msg
    if isinstance(msg, dict) and msg.get("role", "user") != "user":
        raise BadRequest("'message.role' must be user (tool results go in 'tool_results')", param="message.role")
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, list):
        for i, p in enumerate(content):
            where = f"message.content[{i}]"
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif kind == "image_url":
                img = p.get("image_url")
                url = img.get("url") if isinstance(img, dict) else img
                if not isinstance(url, str) or not url.startswith(IMAGE_URL):
                    raise BadRequest(f"{where}.image_url.url must be a data:image/…;base64 URL or an http(s) URL",
                                     param=where)
                images.append(url)
            else:
                raise BadRequest(f"{where} must be a text or an image_url part", param=where)
        if len(images) > MAX_IMAGES:
            raise BadRequest(f"a message may carry at most {MAX_IMAGES} images", param="message.content")
        content = "\n".join(texts)
    if not isinstance(content, str) or not (content.strip() or images):
        raise BadRequest("'message' must be a non-empty string", param="message")
    if len(content) > max_chars:
        raise RequestTooLarge(f"'message' is longer than {max_chars} characters", param="message")
    return content, images


def decode_tool_results(raw: Any, max_chars: int) -> list[ToolReply]:
    """``tool_results``: ``[{tool_call_id, content, dismissed?}]`` (a ``role: "tool"``
    is allowed, as in Chat Completions)."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'tool_results' must be a non-empty list", param="tool_results")
    if len(raw) > MAX_TOOL_RESULTS:
        raise BadRequest(f"at most {MAX_TOOL_RESULTS} tool results per turn", param="tool_results")
    out: list[ToolReply] = []
    for i, r in enumerate(raw):
        where = f"tool_results[{i}]"
        if not isinstance(r, dict) or r.get("role", "tool") != "tool":
            raise BadRequest(f"{where} must be an object {{tool_call_id, content}}", param=where)
        cid, content, dismissed = r.get("tool_call_id"), r.get("content"), r.get("dismissed", False)
        if not isinstance(cid, str) or not cid:
            raise BadRequest(f"{where}.tool_call_id must be a non-empty string", param=f"{where}.tool_call_id")
        if not isinstance(content, str):
            raise BadRequest(f"{where}.content must be a string", param=f"{where}.content")
        if len(content) > max_chars:
            raise RequestTooLarge(f"{where}.content is longer than {max_chars} characters", param=f"{where}.content")
        if not isinstance(dismissed, bool):
            raise BadRequest(f"{where}.dismissed must be a boolean", param=f"{where}.dismissed")
        if any(o.call_id == cid for o in out):
            raise BadRequest(f"tool call {cid!r} is answered twice", param=where)
        out.append(ToolReply(cid, content, dismissed))
    return out


def decode_request(body: Any, max_chars: int) -> ChatInput:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    results = decode_tool_results(body["tool_results"], max_chars) if body.get("tool_results") is not None else []
    out = ChatInput(None, tool_results=results)
    if body.get("message") is not None or not results:
        out.message, out.images = _user_message(body.get("message"), max_chars)
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


def user_parts(inp: ChatInput) -> list[dict[str, Any]] | None:
    """The stored parts of the turn's user message (None: the turn has none)."""
    if inp.message is None:
        return None
    parts: list[dict[str, Any]] = [{"type": "text", "text": inp.message}] if inp.message else []
    return parts + [{"type": "image", "url": url} for url in inp.images]


def pending_calls(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The tool calls a client may still answer (call id → tool name): those
    of the session's last answer, if it completed, that the server did not
    run (no result in the answer) and no later ``tool`` message answers."""
    answered: set[str] = set()
    for r in reversed(rows):
        if r["role"] == "tool":
            answered.update(p.get("call_id") for p in r["parts"] if p.get("type") == "tool_result")
            continue
        if r["role"] != "assistant" or r["status"] != "complete":
            return {}
        answered.update(p.get("call_id") for p in r["parts"] if p.get("type") == "tool_result")
        return {p["call_id"]: p["name"] for p in r["parts"]
                if p.get("type") == "tool_call" and not p.get("partial") and p["call_id"] not in answered}
    return {}


def tool_result_parts(results: list[ToolReply], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored parts of a ``tool`` message answering ``results``; a 400
    for a call that is not waiting for its result."""
    pending = pending_calls(rows)
    parts: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        if r.call_id not in pending:
            raise BadRequest(f"tool call {r.call_id!r} is not a call of the session's last answer waiting for a "
                             "result", param=f"tool_results[{i}].tool_call_id", code="tool_call_not_pending")
        part = {"type": "tool_result", "call_id": r.call_id, "name": pending[r.call_id], "output": r.output,
                "is_error": False}
        parts.append({**part, "dismissed": True} if r.dismissed else part)
    return parts


def _user_content(parts: list[dict[str, Any]]) -> list[Part]:
    out: list[Part] = []
    for p in parts:
        if p.get("type") == "text":
            out.append(TextPart(p.get("text") or ""))
        elif p.get("type") == "image" and p.get("url"):
            out.append(ImagePart(p["url"], p.get("media_type")))
    return out


def history_messages(rows: list[dict[str, Any]]) -> list[Message]:
    """Stored messages → the model's context. Answers still streaming (a
    concurrent turn) and failed answers with no text are left out. A tool
    call is replayed only with the client's result (a stored ``tool``
    message): a call without its result is rejected by strict upstreams, so
    calls nobody answered, and those the server ran itself (an agent's,
    whose steps are not replayed), are left out of their answer."""
    answered = {p.get("call_id") for r in rows if r["role"] == "tool" for p in r["parts"]
                if p.get("type") == "tool_result"}
    out: list[Message] = []
    for r in rows:
        role, text = r["role"], r["text"]
        if role == "tool":
            out.extend(Message(role="tool", content=[TextPart(p.get("output") or "")], tool_call_id=p["call_id"],
                               name=p.get("name")) for p in r["parts"] if p.get("type") == "tool_result")
        elif role == "assistant":
            if r["status"] == "streaming":
                continue
            calls = [ToolCallPart(p["call_id"], p["name"], p.get("arguments") or "{}") for p in r["parts"]
                     if p.get("type") == "tool_call" and p.get("call_id") in answered]
            if text or calls:
                out.append(Message(role="assistant", content=[TextPart(text)] if text else [], tool_calls=calls))
        elif role == "user":
            out.append(Message(role="user", content=_user_content(r["parts"])))
        else:
            out.append(Message(role=role, content=[TextPart(text)]))
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
