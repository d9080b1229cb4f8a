"""Anthropic Messages wire format, upstream side (protocols.md §4, §8).

``request_body`` turns a canonical request into a Messages API body;
``EventAdapter`` is a pure state machine (one SSE event in, canonical events
out), so every quirk it handles is pinned by tests without I/O.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    Event,
    EventBuilder,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    ReasoningPart,
    SluicewayError,
    TextPart,
    UpstreamError,
    UpstreamUnavailable,
    Usage,
    error_from_status,
)
from ..core.tokens import prompt_chars

log = logging.getLogger("sluiceway.providers.anthropic")

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a long server-tool turn: the client resends to continue
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type → the HTTP status Anthropic gives it before a stream (§4.3)
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# reasoning_effort → thinking budget_tokens (the minimum budget is 1024)
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


# ---------------------------------------------------------------- request side

def _media(url: str) -> dict[str, Any]:
    """An Anthropic ``source`` for a data URL (base64) or an http(s) URL."""
    if url.startswith("data:"):
        head, _, b64 = url.partition(",")
        media = head[5:].split(";", 1)[0] or "application/octet-stream"
        return {"type": "base64", "media_type": media, "data": b64}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise BadRequest(f"unsupported media URL scheme: {url[:32]!r}", param="messages")


def _parts(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:  # the API rejects empty text blocks
                out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append({"type": "image", "source": _media(p.url)})
        elif isinstance(p, FilePart):
            doc: dict[str, Any] = {"type": "document", "source": _media(p.url)}
            if p.filename:
                doc["title"] = p.filename
            out.append(doc)
        elif isinstance(p, ReasoningPart) and m.role == "assistant":
            # Only signed thinking can go back; unsigned text (e.g. from a client
            # that saw reasoning_content) would be rejected, so it is dropped.
            if p.redacted:
                out.append({"type": "redacted_thinking", "data": p.redacted})
            elif p.signature:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
    return out


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        log.warning("tool call arguments are not JSON; sending {} upstream")
        return {}
    return value if isinstance(value, dict) else {"value": value}


def messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages → alternating user/assistant turns. System messages
    are left out (they go to ``system``), tool results become user
    ``tool_result`` blocks and consecutive same-role turns are merged."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or "",
                                     "content": m.text}
            if m.is_error:
                block["is_error"] = True
            role, blocks = "user", [block]
        else:
            role, blocks = m.role, _parts(m)
            if m.role == "assistant":
                # thinking must open the turn, whatever order the client kept it in
                blocks.sort(key=lambda b: b["type"] not in ("thinking", "redacted_thinking"))
                blocks += [{"type": "tool_use", "id": c.call_id, "name": c.name, "input": _tool_input(c.arguments)}
                           for c in m.tool_calls]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tool_choice(req: ChatRequest) -> dict[str, Any] | None:
    tc = req.tool_choice
    choice: dict[str, Any] | None
    if tc is None:
        choice = None
    elif isinstance(tc, dict):
        choice = {"type": "tool", "name": tc["name"]}
    else:
        choice = {"type": {"required": "any"}.get(tc, tc)}
    if req.parallel_tool_calls is False:
        choice = {"type": "auto", **(choice or {}), "disable_parallel_tool_use": True}
    return choice


def request_body(req: ChatRequest, *, default_max_tokens: int = 4096,
                 thinking_budgets: dict[str, int] | None = None) -> dict[str, Any]:
    max_tokens = req.max_tokens or default_max_tokens
    body: dict[str, Any] = {"model": req.model, "max_tokens": max_tokens,
                            "messages": messages_to_wire(req.messages), "stream": True}
    if req.system:
        body["system"] = req.system
    if req.tools:
        body["tools"] = [{"name": t.name, "input_schema": t.parameters,
                          **({"description": t.description} if t.description else {})} for t in req.tools]
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.user:
        body["metadata"] = {"user_id": req.user}
    thinking = "thinking" in req.extra
    effort = req.reasoning_effort
    if effort and not thinking:
        budget = (thinking_budgets or THINKING_BUDGETS).get(effort)
        if effort == "none":
            pass
        elif budget is None:
            raise BadRequest(f"reasoning_effort {effort!r} is not one of none, "
                             f"{', '.join(THINKING_BUDGETS)}", param="reasoning_effort")
        else:
            # budget_tokens must stay below max_tokens; the visible answer keeps its own allowance
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            body["max_tokens"] = max_tokens + budget
            thinking = True
    for key in ("temperature", "top_p"):
        v = getattr(req, key)
        if v is None:
            continue
        if thinking:  # extended thinking refuses sampling overrides
            log.warning("%s is not allowed with thinking; dropped", key)
        else:
            body[key] = v
    for key in ("seed", "response_format"):
        if getattr(req, key) is not None:
            log.warning("anthropic has no %s; dropped", key)
    if req.extra:
        body.update(req.extra)
    return body


# --------------------------------------------------------------- response side

def stream_error(err: Any) -> SluicewayError:
    """The ``error`` object of an ``event: error`` (or an error body)."""
    etype = str(err.get("type") or "") if isinstance(err, dict) else ""
    msg = str(err.get("message") or etype or "upstream error") if isinstance(err, dict) else str(err)
    if etype == "overloaded_error":
        return UpstreamUnavailable(f"anthropic: {msg}", code="overloaded_error")
    status = ERROR_STATUS.get(etype)
    if status is None:
        return UpstreamError(f"anthropic: {msg}")
    return error_from_status(status, f"anthropic: {msg}")


def usage_of(u: dict[str, Any], prev: dict[str, int]) -> dict[str, int]:
    """Merge a usage object into the running counts (message_delta values are cumulative)."""
    merged = dict(prev)
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        v = u.get(key)
        if isinstance(v, int):
            merged[key] = v
    return merged


def to_usage(u: dict[str, int]) -> Usage:
    cache_read = u.get("cache_read_input_tokens", 0)
    total_in = u.get("input_tokens", 0) + u.get("cache_creation_input_tokens", 0) + cache_read
    return Usage(input=total_in, output=u.get("output_tokens", 0), cached_input=cache_read)


class _Block:
    __slots__ = ("kind", "call_id", "name", "args", "signature")

    def __init__(self, kind: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind  # text | thinking | tool_use | ignored
        self.call_id, self.name = call_id, name
        self.args: list[str] = []
        self.signature: str | None = None


class EventAdapter:
    """Anthropic stream events → canonical events, for one stream."""

    def __init__(self, req: ChatRequest | None = None) -> None:
        self.b = EventBuilder()
        self._blocks: dict[int, _Block] = {}
        self._usage: dict[str, int] = {}
        self._saw_usage = False
        self._stop: str | None = None
        self._prompt_chars = partial(prompt_chars, req) if req is not None else 0  # counted only if needed
        self.done = False

    def feed(self, ev: dict[str, Any], out: list[Event]) -> None:
        t = ev.get("type")
        if t == "content_block_delta":
            self._delta(ev, out)
        elif t == "content_block_start":
            self._start_block(ev, out)
        elif t == "content_block_stop":
            self._stop_block(ev, out)
        elif t == "message_start":
            msg = ev.get("message") or {}
            self.b.start(out, str(msg.get("id") or "msg"), str(msg.get("model") or ""))
            if isinstance(msg.get("usage"), dict):
                self._usage = usage_of(msg["usage"], self._usage)
                self._saw_usage = True
        elif t == "message_delta":
            delta = ev.get("delta") or {}
            if delta.get("stop_reason"):
                self._stop = delta["stop_reason"]
            if isinstance(ev.get("usage"), dict):
                self._usage = usage_of(ev["usage"], self._usage)
                self._saw_usage = True
        elif t == "message_stop":
            self._finish(out)
        elif t == "error":
            raise stream_error(ev.get("error"))
        # ping and unknown event types are ignored (§4.2: new types can appear)

    def _start_block(self, ev: dict[str, Any], out: list[Event]) -> None:
        self._ensure_started(out)
        cb = ev.get("content_block") or {}
        idx = ev.get("index", len(self._blocks))
        kind = cb.get("type")
        if kind == "text":
            self._blocks[idx] = _Block("text")
            self.b.close_block(out)  # a new text block is a new canonical block
            self.b.text(out, cb.get("text") or "")
        elif kind == "thinking":
            self._blocks[idx] = _Block("thinking")
            self.b.close_block(out)
            self.b.reasoning(out, cb.get("thinking") or "")
        elif kind == "redacted_thinking":
            self._blocks[idx] = _Block("ignored")
            self.b.redacted_reasoning(out, str(cb.get("data") or ""))
        elif kind == "tool_use":
            block = _Block("tool_use", str(cb.get("id") or f"toolu_{idx}"), str(cb.get("name") or ""))
            if cb.get("input"):  # normally {} with the input streamed as input_json_delta
                block.args.append(orjson.dumps(cb["input"]).decode())
            self._blocks[idx] = block
            self.b.tool_start(out, block.call_id, block.name)
            if block.args:
                self.b.tool_delta(out, block.call_id, block.args[0])
        else:  # server tools, citations results, …: nothing canonical
            self._blocks[idx] = _Block("ignored")

    def _delta(self, ev: dict[str, Any], out: list[Event]) -> None:
        block = self._blocks.get(ev.get("index", -1))
        if block is None or block.kind == "ignored":
            return
        d = ev.get("delta") or {}
        dt = d.get("type")
        if dt == "text_delta" and block.kind == "text":
            self.b.text(out, d.get("text") or "")
        elif dt == "input_json_delta" and block.kind == "tool_use":
            frag = d.get("partial_json") or ""
            if frag:
                block.args.append(frag)
                self.b.tool_delta(out, block.call_id, frag)
        elif dt == "thinking_delta" and block.kind == "thinking":
            self.b.reasoning(out, d.get("thinking") or "")
        elif dt == "signature_delta" and block.kind == "thinking":
            block.signature = (block.signature or "") + (d.get("signature") or "")

    def _stop_block(self, ev: dict[str, Any], out: list[Event]) -> None:
        block = self._blocks.get(ev.get("index", -1))
        if block is None or block.kind == "ignored":
            return
        if block.kind == "tool_use":
            self.b.tool_end(out, block.call_id, block.name, "".join(block.args) or "{}")
            block.kind = "ignored"
        elif block.kind == "thinking":
            self.b.end_reasoning(out, signature=block.signature)
        else:
            self.b.close_block(out)

    def _ensure_started(self, out: list[Event]) -> None:
        if not self.b.started:
            self.b.start(out, "msg", "")

    def _finish(self, out: list[Event]) -> None:
        if self.done:
            return
        self.done = True
        self._ensure_started(out)
        # a tool block cut short still yields its call rather than vanishing
        for block in self._blocks.values():
            if block.kind == "tool_use":
                self.b.tool_end(out, block.call_id, block.name, "".join(block.args) or "{}")
                block.kind = "ignored"
        raw = self._stop or "end_turn"
        self.b.finish(out, STOP_REASONS.get(raw, "other"), to_usage(self._usage) if self._saw_usage else None,
                      raw_reason=raw, prompt_chars=self._prompt_chars)

    def end(self, out: list[Event]) -> None:
        """The upstream connection ended; without ``message_stop`` the stream is truncated (§9 #14)."""
        if not self.done:
            raise UpstreamError("anthropic: upstream stream ended without message_stop (truncated)")
