"""MiniOpenCode's event stream (seed 002): ``POST /api/web/chat/stream``.

Request: ``{messages: [{role, content}], system?, useTools?}`` (and, ours,
an optional ``model``), the key in ``X-API-Key``. Response: one
``data: {json}`` per event, exactly the seed's table, then ``data: [DONE]``:

| type | fields |
|---|---|
| start | |
| reasoning-start / reasoning-end | id |
| reasoning-delta | id, text |
| text-start / text-end | id |
| text-delta | id, textDelta |
| tool-input-start | id, toolName, dynamic |
| tool-input-delta | id, delta |
| tool-input-end | id |
| tool-call | toolCallId, toolName, input |
| tool-result | toolCallId, toolName, output |
| finish-step | finishReason |
| finish | finishReason, totalUsage |

Block ids are renumbered ``"0"``, ``"1"``, … in order of appearance, as in
the seed. A tool that failed has ``output: {"error": "…"}``. An agent tool that
needs approval adds the AI SDK's ``tool-approval-request`` (``approvalId``,
``toolCallId``), answered with ``POST /api/agents/approvals/{approvalId}``. Finish reasons
are the AI SDK's (``stop``, ``length``, ``tool-calls``, ``content-filter``,
``error``, ``other``). A failure after the stream started is
``{"type": "error", "error": "…"}`` then ``[DONE]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..core import BadRequest, ChatRequest, Event, Message, SluicewayError
from . import sse

FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool-calls", "content_filter": "content-filter",
          "error": "error", "other": "other"}
ROLES = ("user", "assistant", "system")


@dataclass(slots=True)
class WebChat:
    messages: list[Message]
    use_tools: bool
    model: str | None

    def request(self, model: str, system: str | None = None) -> ChatRequest:
        msgs = self.messages if system is None else [Message.of("system", system), *self.messages]
        return ChatRequest(model=model, messages=msgs)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # AI SDK style parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise BadRequest(f"{where}.content must be a string", param=f"{where}.content")


def decode_request(body: Any) -> WebChat:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list of {role, content}", param="messages")
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise BadRequest("system must be a string", param="system")
        if system:
            messages.append(Message.of("system", system))
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"{where} must be {{role: user|assistant|system, content}}", param=where)
        messages.append(Message.of(m["role"], _text(m.get("content", ""), where)))
    use_tools = body.get("useTools", False)
    if not isinstance(use_tools, bool):
        raise BadRequest("useTools must be true or false", param="useTools")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model must be a string", param="model")
    return WebChat(messages, use_tools, model or None)


def _json(text: str) -> Any:
    """A tool's output as JSON when it is JSON, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _frame(obj: dict[str, Any]) -> bytes:
    return sse.json_data(obj)


class Encoder:
    """Canonical event batches → the seed's frames, one write per batch."""

    def __init__(self) -> None:
        self.done = False
        self._ids: dict[str, str] = {}

    def _id(self, block_id: str) -> str:
        bid = self._ids.get(block_id)
        if bid is None:
            bid = self._ids[block_id] = str(len(self._ids))
        return bid

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            t = ev.type
            if t == "text-delta":
                out.append(_frame({"type": t, "id": self._id(ev.block_id), "textDelta": ev.delta}))
            elif t == "reasoning-delta":
                out.append(_frame({"type": t, "id": self._id(ev.block_id), "text": ev.delta}))
            elif t in ("text-start", "text-end", "reasoning-start", "reasoning-end"):
                out.append(_frame({"type": t, "id": self._id(ev.block_id)}))
            elif t == "start":
                out.append(b'data: {"type":"start"}\n\n')
            elif t == "tool-input-start":
                dynamic = ev.server is not None and ev.server not in ("builtin", "python")  # MCP tools
                out.append(_frame({"type": t, "id": ev.call_id, "toolName": ev.name, "dynamic": dynamic}))
            elif t == "tool-input-delta":
                out.append(_frame({"type": t, "id": ev.call_id, "delta": ev.delta}))
            elif t == "tool-input-end":
                out.append(_frame({"type": t, "id": ev.call_id}))
            elif t == "tool-call":
                out.append(_frame({"type": t, "toolCallId": ev.call_id, "toolName": ev.name,
                                   "input": _json(ev.arguments or "{}")}))
            elif t == "tool-result":
                output = {"error": ev.output} if ev.is_error else _json(ev.output)
                out.append(_frame({"type": t, "toolCallId": ev.call_id, "toolName": ev.name, "output": output}))
            elif t == "finish-step":
                out.append(_frame({"type": t, "finishReason": FINISH.get(ev.reason, "other")}))
            elif t == "tool-approval-request":
                out.append(_frame({"type": t, "approvalId": ev.approval_id, "toolCallId": ev.call_id}))
            elif t == "finish":
                u = ev.usage
                out.append(_frame({"type": t, "finishReason": FINISH.get(ev.reason, "other"),
                                   "totalUsage": {"inputTokens": u.input, "outputTokens": u.output,
                                                  "totalTokens": u.total}}) + sse.DONE)
                self.done = True
            elif t == "error":
                out.append(_frame({"type": "error", "error": ev.message}) + sse.DONE)
                self.done = True
            elif t == "abort":
                out.append(_frame({"type": "abort"}) + sse.DONE)
                self.done = True
        return b"".join(out)


def encode_error(err: SluicewayError) -> tuple[int, bytes]:
    """Before the stream: a JSON error body with the HTTP status."""
    return err.status, orjson.dumps({"error": {"message": err.message, "code": err.code}})
