"""The Vercel AI SDK UI message stream, protocol v1 (protocols.md §7):
decode the ``DefaultChatTransport`` body, encode the canonical stream as
``data: <chunk JSON>`` frames ending in ``data: [DONE]``.

Rules the client enforces (§7.3): every text/reasoning delta needs an open
``*-start`` with the same id in the current step, ``finish-step`` closes them
all, and there is no ``tool-input-end`` chunk (``tool-input-available`` ends a
call). Usage is not part of the protocol, so it rides in ``messageMetadata``
on ``finish``. No ``event:`` or ``id:`` lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    Event,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    SluicewayError,
    TextPart,
    ToolCallPart,
    Usage,
)
from . import sse
from .openai_chat import decode_tools
from .validate import expect_dict, expect_int, expect_list, expect_number, expect_str, optional

HEADERS: list[tuple[bytes, bytes]] = [(b"x-vercel-ai-ui-message-stream", b"v1")]
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool-calls", "content_filter": "content-filter",
          "error": "error", "other": "other"}
TRIGGERS = {"submit-message", "regenerate-message", "submit-user-message", "submit-tool-result",
            "regenerate-assistant-message"}
META = "sluiceway"  # providerMetadata key for reasoning signatures / encrypted content


# ------------------------------------------------------------------- decoding

def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class _Turn:
    """One assistant step being rebuilt: its content and calls, then the calls' results."""

    def __init__(self) -> None:
        self.msg = Message("assistant")
        self.results: list[Message] = []

    def flush(self, out: list[Message]) -> None:
        if self.msg.content or self.msg.tool_calls:
            out.append(self.msg)
            out.extend(self.results)
        self.msg = Message("assistant")
        self.results = []


def _tool_part(p: dict[str, Any], w: str, turn: _Turn) -> None:
    name = p["type"][5:] if p["type"].startswith("tool-") else expect_str(p.get("toolName"), f"{w}.toolName")
    call_id = expect_str(p.get("toolCallId"), f"{w}.toolCallId")
    state = p.get("state")
    if state == "output-available":
        result = Message("tool", [TextPart(_json_text(p.get("output")))], tool_call_id=call_id, name=name)
    elif state == "output-error":
        result = Message("tool", [TextPart(str(p.get("errorText") or "tool failed"))], tool_call_id=call_id,
                         name=name, is_error=True)
    else:
        return  # a call without an answer yet cannot be sent upstream
    turn.msg.tool_calls.append(ToolCallPart(call_id, name, _json_text(p.get("input", {}))))
    turn.results.append(result)


def _file(p: dict[str, Any], w: str) -> Part:
    url = expect_str(p.get("url"), f"{w}.url")
    media = expect_str(p.get("mediaType"), f"{w}.mediaType")
    return ImagePart(url, media) if media.startswith("image/") else FilePart(url, media, p.get("filename"))


def _message(m: Any, i: int, out: list[Message]) -> None:
    w = f"messages[{i}]"
    m = expect_dict(m, w)
    role = m.get("role")
    if role not in ("system", "user", "assistant"):
        raise BadRequest(f"{w}.role must be system, user or assistant", param=f"{w}.role")
    parts = expect_list(m.get("parts"), f"{w}.parts")
    if role != "assistant":
        content: list[Part] = []
        for j, p in enumerate(parts):
            p = expect_dict(p, f"{w}.parts[{j}]")
            if p.get("type") == "text":
                content.append(TextPart(expect_str(p.get("text"), f"{w}.parts[{j}].text")))
            elif p.get("type") == "file":
                content.append(_file(p, f"{w}.parts[{j}]"))
        out.append(Message(role, content))
        return
    turn = _Turn()
    for j, p in enumerate(parts):
        pw = f"{w}.parts[{j}]"
        p = expect_dict(p, pw)
        kind = expect_str(p.get("type"), f"{pw}.type")
        if kind == "step-start":
            turn.flush(out)
        elif kind == "text":
            turn.msg.content.append(TextPart(expect_str(p.get("text"), f"{pw}.text")))
        elif kind == "reasoning":
            meta = (p.get("providerMetadata") or {}).get(META) or {}
            turn.msg.content.append(ReasoningPart(expect_str(p.get("text"), f"{pw}.text"),
                                                  signature=meta.get("signature"), encrypted=meta.get("encrypted"),
                                                  redacted=meta.get("redacted")))
        elif kind == "file":
            turn.msg.content.append(_file(p, pw))
        elif kind.startswith("tool-") or kind == "dynamic-tool":
            _tool_part(p, pw, turn)
        # source-url, source-document and data-* parts are UI-only: nothing to send upstream
    turn.flush(out)


def decode_request(body: Any) -> ChatRequest:
    body = expect_dict(body, "body")
    model = optional(body.get("model"), expect_str, "model") or "default"
    optional(body.get("id"), expect_str, "id")
    trigger = optional(body.get("trigger"), expect_str, "trigger")
    if trigger is not None and trigger not in TRIGGERS:
        raise BadRequest(f"trigger {trigger!r} is not one of submit-message, regenerate-message", param="trigger")
    raw = expect_list(body.get("messages"), "messages")
    messages: list[Message] = []
    for i, m in enumerate(raw):
        _message(m, i, messages)
    if not messages:
        raise BadRequest("messages must not be empty", param="messages")
    # extras a ``DefaultChatTransport`` may send through its ``body`` option
    system = optional(body.get("system"), expect_str, "system")
    if system:
        messages.insert(0, Message.of("system", system))
    return ChatRequest(model=model, messages=messages, tools=decode_tools(body),
                       temperature=optional(body.get("temperature"), expect_number, "temperature"),
                       max_tokens=optional(body.get("maxOutputTokens", body.get("max_tokens")), expect_int,
                                           "maxOutputTokens"))


# ------------------------------------------------------------------- encoding

def _chunk(obj: dict[str, Any]) -> bytes:
    return sse.json_data(obj)


def _usage_meta(u: Usage) -> dict[str, Any]:
    return {"usage": {"inputTokens": u.input, "outputTokens": u.output, "totalTokens": u.total,
                      "reasoningTokens": u.reasoning, "cachedInputTokens": u.cached_input}}


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return orjson.loads(text or "{}"), None
    except orjson.JSONDecodeError as e:
        return text, f"tool input is not valid JSON: {e}"


def _ran(chunk: dict[str, Any], server: str | None) -> dict[str, Any]:
    """Mark a tool the gateway ran (agents) ``providerExecuted``, so ``useChat``'s
    ``lastAssistantMessageIsCompleteWithToolCalls`` does not send the answer back."""
    if server is not None:
        chunk["providerExecuted"] = True
    return chunk


class Encoder:
    """Canonical event batches → UI message stream chunks, one write per batch."""

    def __init__(self, body: dict[str, Any] | None = None, req: ChatRequest | None = None, *,
                 ids: Callable[[str], str] | None = None) -> None:
        self.ids = ids or (lambda prefix: f"{prefix}_{uuid.uuid4().hex}")
        self.started = False
        self.in_step = False
        self.done = False
        self._names: dict[str, str] = {}  # call id → tool name (tool-output needs a known call)

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            t = ev.type
            if t in ("start", "abort"):
                if t == "start":
                    self._step(out)  # start + start-step (§8.3)
                else:
                    out.append(_chunk({"type": "abort", "reason": ev.reason}) + sse.DONE)
                    self.done = True
                continue
            if t not in ("finish", "error", "finish-step"):
                self._step(out)
            if t == "text-delta":
                out.append(_chunk({"type": "text-delta", "id": ev.block_id, "delta": ev.delta}))
            elif t == "reasoning-delta":
                out.append(_chunk({"type": "reasoning-delta", "id": ev.block_id, "delta": ev.delta}))
            elif t == "tool-input-delta":
                out.append(_chunk({"type": "tool-input-delta", "toolCallId": ev.call_id,
                                   "inputTextDelta": ev.delta}))
            elif t in ("text-start", "text-end", "reasoning-start"):
                out.append(_chunk({"type": t, "id": ev.block_id}))
            elif t == "reasoning-end":
                chunk: dict[str, Any] = {"type": "reasoning-end", "id": ev.block_id}
                meta = {k: v for k, v in (("signature", ev.signature), ("encrypted", ev.encrypted),
                                          ("redacted", ev.redacted)) if v}
                if meta:
                    chunk["providerMetadata"] = {META: meta}
                out.append(_chunk(chunk))
            elif t == "tool-input-start":
                self._names[ev.call_id] = ev.name
                out.append(_chunk(_ran({"type": "tool-input-start", "toolCallId": ev.call_id, "toolName": ev.name},
                                       ev.server)))
            elif t == "tool-call":
                self._names[ev.call_id] = ev.name
                value, problem = _parse_json(ev.arguments)
                if problem is None:
                    out.append(_chunk(_ran({"type": "tool-input-available", "toolCallId": ev.call_id,
                                            "toolName": ev.name, "input": value}, ev.server)))
                else:
                    out.append(_chunk(_ran({"type": "tool-input-error", "toolCallId": ev.call_id,
                                            "toolName": ev.name, "input": value, "errorText": problem}, ev.server)))
            elif t == "tool-result":
                if ev.call_id not in self._names:  # the client throws on an unknown toolCallId
                    out.append(_chunk({"type": "tool-input-available", "toolCallId": ev.call_id,
                                       "toolName": ev.name, "input": {}}))
                    self._names[ev.call_id] = ev.name
                if ev.is_error:
                    out.append(_chunk(_ran({"type": "tool-output-error", "toolCallId": ev.call_id,
                                            "errorText": ev.output}, ev.server)))
                else:
                    out.append(_chunk(_ran({"type": "tool-output-available", "toolCallId": ev.call_id,
                                            "output": _parse_json(ev.output)[0]}, ev.server)))
            elif t == "finish-step":
                self._end_step(out)
            elif t == "finish":
                self._end_step(out)
                out.append(_chunk({"type": "finish", "finishReason": FINISH.get(ev.reason, "other"),
                                   "messageMetadata": _usage_meta(ev.usage)}) + sse.DONE)
                self.done = True
            elif t == "error":
                out.append(_chunk({"type": "error", "errorText": ev.message}))
                self._end_step(out)
                out.append(_chunk({"type": "finish", "finishReason": "error"}) + sse.DONE)
                self.done = True
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        if not self.started:
            self.started = True
            out.append(_chunk({"type": "start", "messageId": self.ids("msg")}))

    def _step(self, out: list[bytes]) -> None:
        self._start(out)
        if not self.in_step:
            self.in_step = True
            out.append(b'data: {"type":"start-step"}\n\n')

    def _end_step(self, out: list[bytes]) -> None:
        self._start(out)
        if self.in_step:
            self.in_step = False
            out.append(b'data: {"type":"finish-step"}\n\n')


def encode_error(err: SluicewayError) -> tuple[int, bytes]:
    """Before the stream: a JSON body. ``useChat`` shows the response text as the error message."""
    return err.status, orjson.dumps({"error": {"message": err.message, "code": err.code}})
