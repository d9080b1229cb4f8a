"""Anthropic Messages, client side (protocols.md §4): decode ``/v1/messages``
requests, encode the canonical stream as Anthropic SSE, encode errors.

Every frame has an ``event:`` line equal to its JSON ``type``: the Anthropic
SDKs dispatch on the event name and silently drop frames without one (§9 #1).

Thinking: a thinking block is only worth sending with the upstream's real
signature, because clients echo it back and Anthropic rejects a thinking
block whose signature does not verify. The signature arrives at the end of
the block, so reasoning is held until ``reasoning-end``: signed reasoning is
sent as a ``thinking`` block, redacted reasoning as ``redacted_thinking``,
and unsigned reasoning (OpenAI-compatible upstreams) is not sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    Completion,
    Event,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    SluicewayError,
    TextPart,
    Tool,
    ToolCallPart,
    Usage,
)
from ..core.tokens import estimate_tokens, prompt_chars
from . import sse
from .sequential import Sequencer
from .validate import (
    expect_bool,
    expect_dict,
    expect_fraction,
    expect_int,
    expect_list,
    expect_number,
    expect_str,
    optional,
)

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal", "error": "end_turn", "other": "end_turn"}
KNOWN = {"model", "max_tokens", "messages", "system", "stream", "tools", "tool_choice", "thinking",
         "stop_sequences", "temperature", "top_p", "top_k", "metadata", "service_tier", "container",
         "mcp_servers", "context_management"}


# ------------------------------------------------------------------- decoding

def _source_url(src: dict[str, Any], where: str) -> tuple[str, str | None]:
    kind = src.get("type")
    if kind == "base64":
        media = expect_str(src.get("media_type"), f"{where}.media_type")
        return f"data:{media};base64,{expect_str(src.get('data'), f'{where}.data')}", media
    if kind == "url":
        return expect_str(src.get("url"), f"{where}.url"), None
    if kind == "text":  # plain-text document
        return "data:text/plain;base64," + _b64(expect_str(src.get("data"), f"{where}.data")), "text/plain"
    raise BadRequest(f"{where}.type {kind!r} is not supported (use base64 or url)", param=f"{where}.type")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _tool_result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, b in enumerate(expect_list(content, where)):
        b = expect_dict(b, f"{where}[{i}]")
        if b.get("type") == "text":
            texts.append(expect_str(b.get("text"), f"{where}[{i}].text"))
        else:
            raise BadRequest(f"{where}[{i}]: only text blocks are supported in tool results", param=f"{where}[{i}]")
    return "\n".join(texts)


def _messages(raw: list[Any]) -> list[Message]:
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        m = expect_dict(m, where)
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role must be user or assistant (system goes in the top-level system field)",
                             param=f"{where}.role")
        content = m.get("content")
        if isinstance(content, str):
            out.append(Message.of(role, content))
            continue
        msg = Message(role)
        results: list[Message] = []
        for j, b in enumerate(expect_list(content, f"{where}.content")):
            w = f"{where}.content[{j}]"
            b = expect_dict(b, w)
            kind = b.get("type")
            if kind == "text":
                msg.content.append(TextPart(expect_str(b.get("text"), f"{w}.text")))
            elif kind in ("image", "document"):
                url, media = _source_url(expect_dict(b.get("source"), f"{w}.source"), f"{w}.source")
                part: Part = ImagePart(url, media) if kind == "image" else FilePart(url, media, b.get("title"))
                msg.content.append(part)
            elif kind == "tool_use" and role == "assistant":
                args = b.get("input", {})
                msg.tool_calls.append(ToolCallPart(expect_str(b.get("id"), f"{w}.id"),
                                                   expect_str(b.get("name"), f"{w}.name"),
                                                   orjson.dumps(args).decode()))
            elif kind == "tool_result" and role == "user":
                results.append(Message("tool", [TextPart(_tool_result_text(b.get("content"), f"{w}.content"))],
                                       tool_call_id=expect_str(b.get("tool_use_id"), f"{w}.tool_use_id"),
                                       is_error=b.get("is_error") is True))
            elif kind == "thinking" and role == "assistant":
                msg.content.append(ReasoningPart(expect_str(b.get("thinking", ""), f"{w}.thinking"),
                                                 signature=b.get("signature") or None))
            elif kind == "redacted_thinking" and role == "assistant":
                msg.content.append(ReasoningPart("", redacted=expect_str(b.get("data"), f"{w}.data")))
            else:
                raise BadRequest(f"content block type {kind!r} is not supported in a {role} message",
                                 param=f"{w}.type")
        out.extend(results)  # tool results answer the previous assistant turn, before any new user text
        if msg.content or msg.tool_calls:
            out.append(msg)
    return out


def _system(raw: Any) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message.of("system", raw)] if raw else []
    texts = []
    for i, b in enumerate(expect_list(raw, "system")):
        b = expect_dict(b, f"system[{i}]")
        if b.get("type") != "text":
            raise BadRequest(f"system[{i}].type must be text", param=f"system[{i}].type")
        texts.append(expect_str(b.get("text"), f"system[{i}].text"))
    return [Message.of("system", "\n\n".join(texts))] if texts else []


def _tools(raw: Any) -> list[Tool]:
    tools = []
    for i, t in enumerate(optional(raw, expect_list, "tools") or ()):
        t = expect_dict(t, f"tools[{i}]")
        if t.get("type", "custom") != "custom":
            raise BadRequest(f"tools[{i}]: server tool {t.get('type')!r} is not supported", param=f"tools[{i}].type")
        tools.append(Tool(expect_str(t.get("name"), f"tools[{i}].name"),
                          optional(t.get("description"), expect_str, f"tools[{i}].description"),
                          expect_dict(t.get("input_schema", {"type": "object", "properties": {}}),
                                      f"tools[{i}].input_schema")))
    return tools


def _thinking_effort(raw: Any) -> str | None:
    th = optional(raw, expect_dict, "thinking")
    if not th or th.get("type") == "disabled":
        return None
    if th.get("type") == "adaptive":
        return "medium"
    if th.get("type") != "enabled":
        raise BadRequest("thinking.type must be enabled, adaptive or disabled", param="thinking.type")
    budget = expect_int(th.get("budget_tokens"), "thinking.budget_tokens")
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def decode_request(body: Any, *, require_max_tokens: bool = True) -> ChatRequest:
    body = expect_dict(body, "body")
    model = expect_str(body.get("model"), "model")
    if not model:
        raise BadRequest("model: must not be empty", param="model")
    max_tokens = optional(body.get("max_tokens"), expect_int, "max_tokens")
    if max_tokens is None and require_max_tokens:
        raise BadRequest("max_tokens: Field required", param="max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise BadRequest("max_tokens: must be at least 1", param="max_tokens")
    msgs = expect_list(body.get("messages"), "messages")
    if not msgs:
        raise BadRequest("messages: at least one message is required", param="messages")
    optional(body.get("stream"), expect_bool, "stream")
    tc = optional(body.get("tool_choice"), expect_dict, "tool_choice")
    choice: str | dict[str, str] | None = None
    parallel = None
    if tc is not None:
        kind = tc.get("type")
        if kind == "tool":
            choice = {"name": expect_str(tc.get("name"), "tool_choice.name")}
        elif kind in ("auto", "any", "none"):
            choice = {"auto": "auto", "any": "required", "none": "none"}[kind]
        else:
            raise BadRequest("tool_choice.type must be auto, any, tool or none", param="tool_choice.type")
        if tc.get("disable_parallel_tool_use") is True:
            parallel = False
    stop = [expect_str(s, "stop_sequences[]") for s in optional(body.get("stop_sequences"), expect_list,
                                                                  "stop_sequences") or ()]
    temperature = optional(body.get("temperature"), expect_number, "temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise BadRequest("temperature: must be between 0 and 1", param="temperature")
    meta = optional(body.get("metadata"), expect_dict, "metadata") or {}
    extra = {k: v for k, v in body.items() if k not in KNOWN}
    if body.get("top_k") is not None:
        extra["top_k"] = expect_int(body["top_k"], "top_k")
    return ChatRequest(
        model=model,
        messages=_system(body.get("system")) + _messages(msgs),
        tools=_tools(body.get("tools")),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        temperature=temperature,
        top_p=optional(body.get("top_p"), expect_fraction, "top_p"),
        max_tokens=max_tokens,
        stop=stop,
        reasoning_effort=_thinking_effort(body.get("thinking")),
        user=meta.get("user_id") if isinstance(meta.get("user_id"), str) else None,
        extra=extra,
    )


def wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def count_tokens(req: ChatRequest) -> bytes:
    """The ``/v1/messages/count_tokens`` answer: an estimate (no tokenizer here)."""
    return orjson.dumps({"input_tokens": estimate_tokens(prompt_chars(req))})


# ------------------------------------------------------------------- encoding

def _usage(u: Usage) -> dict[str, Any]:
    # Anthropic's input_tokens counts only uncached input (§4.3, §8.5)
    return {"input_tokens": max(0, u.input - u.cached_input), "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached_input, "output_tokens": u.output}


def _msg_id(response_id: str) -> str:
    return response_id if response_id.startswith("msg_") else f"msg_{uuid.uuid4().hex[:24]}"


def _stop_reason(reason: str | None, raw: str | None) -> str:
    if raw == "stop_sequence":
        return "stop_sequence"
    return STOP_REASONS.get(reason or "stop", "end_turn")


class Encoder:
    """Canonical event batches → Anthropic Messages SSE, one write per batch."""

    def __init__(self, body: dict[str, Any], req: ChatRequest, *,
                 ids: Callable[[str], str] | None = None) -> None:
        self.ids = ids or (lambda prefix: f"{prefix}_{uuid.uuid4().hex[:24]}")
        self.model = req.model
        self.prompt_tokens = estimate_tokens(prompt_chars(req))
        self.seq = Sequencer()
        self.started = False
        self.done = False
        self._index = 0  # next content block index
        self._open: str | None = None  # "text" | "tool"
        self._call: str | None = None  # call id of the open tool_use block
        self._args = ""  # argument text already sent for the open tool_use block
        self._thinking: list[str] | None = None  # held reasoning deltas

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in self.seq.feed(events):
            t = ev.type
            if not self.started and t not in ("start", "error", "abort"):
                self._start(out, "", "")
            if t == "text-delta":
                if self._open != "text":
                    self._block(out, {"type": "text", "text": ""}, "text")
                out.append(sse.named("content_block_delta", {"type": "content_block_delta", "index": self._index - 1,
                                                             "delta": {"type": "text_delta", "text": ev.delta}}))
            elif t == "text-start":
                self._block(out, {"type": "text", "text": ""}, "text")
            elif t == "text-end":
                if self._open == "text":
                    self._stop(out)
            elif t == "reasoning-start":
                self._stop(out)
                self._thinking = []
            elif t == "reasoning-delta":
                if self._thinking is None:
                    self._thinking = []
                self._thinking.append(ev.delta)
            elif t == "reasoning-end":
                self._reasoning_end(out, ev.signature, ev.redacted)
            elif t == "tool-input-start":
                self._tool_open(out, ev.call_id, ev.name)
            elif t == "tool-input-delta":
                if self._call == ev.call_id:
                    self._args += ev.delta
                    out.append(self._json_delta(ev.delta))
            elif t == "tool-call":
                if self._call != ev.call_id:
                    self._tool_open(out, ev.call_id, ev.name)
                if ev.arguments.startswith(self._args) and len(ev.arguments) > len(self._args):
                    out.append(self._json_delta(ev.arguments[len(self._args):]))
                self._stop(out)
            elif t == "start":
                self._start(out, ev.response_id, ev.model)
            elif t == "finish":
                self._finish(out, ev.reason, ev.raw_reason, ev.usage)
            elif t == "error":
                self.done = True
                out.append(sse.named("error", error_body(ev.status, ev.message)[1]))
            elif t == "abort":
                self.done = True
        return b"".join(out)

    def _start(self, out: list[bytes], response_id: str, _upstream_model: str) -> None:
        if self.started:
            return
        self.started = True
        self.msg_id = response_id if response_id.startswith("msg_") else self.ids("msg")
        msg = {"id": self.msg_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": self.prompt_tokens, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": 1}}
        out.append(sse.named("message_start", {"type": "message_start", "message": msg}))
        out.append(sse.named("ping", {"type": "ping"}))

    def _block(self, out: list[bytes], block: dict[str, Any], kind: str) -> None:
        self._stop(out)
        out.append(sse.named("content_block_start", {"type": "content_block_start", "index": self._index,
                                                     "content_block": block}))
        self._index += 1
        self._open = kind

    def _stop(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(sse.named("content_block_stop", {"type": "content_block_stop", "index": self._index - 1}))
            self._open = self._call = None
            self._args = ""

    def _json_delta(self, fragment: str) -> bytes:
        return sse.named("content_block_delta", {"type": "content_block_delta", "index": self._index - 1,
                                                 "delta": {"type": "input_json_delta", "partial_json": fragment}})

    def _tool_open(self, out: list[bytes], call_id: str, name: str) -> None:
        self._block(out, {"type": "tool_use", "id": call_id, "name": name, "input": {}}, "tool")
        self._call = call_id

    def _reasoning_end(self, out: list[bytes], signature: str | None, redacted: str | None) -> None:
        text = "".join(self._thinking or ())
        self._thinking = None
        if redacted:
            self._block(out, {"type": "redacted_thinking", "data": redacted}, "thinking")
            self._stop(out)
        elif signature:
            self._block(out, {"type": "thinking", "thinking": "", "signature": ""}, "thinking")
            idx = self._index - 1
            if text:
                out.append(sse.named("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                             "delta": {"type": "thinking_delta", "thinking": text}}))
            out.append(sse.named("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                         "delta": {"type": "signature_delta",
                                                                   "signature": signature}}))
            self._stop(out)

    def _finish(self, out: list[bytes], reason: str, raw: str | None, usage: Usage) -> None:
        self._stop(out)
        self._thinking = None
        stop = _stop_reason(reason, raw)
        out.append(sse.named("message_delta", {"type": "message_delta",
                                               "delta": {"stop_reason": stop, "stop_sequence": None},
                                               "usage": _usage(usage)}))
        out.append(sse.named("message_stop", {"type": "message_stop"}))
        self.done = True


# --------------------------------------------------------------------- errors

def error_type(status: int) -> tuple[str, int]:
    """Anthropic error type and the HTTP status to send it with (§4.3)."""
    if status in (503, 529):
        return "overloaded_error", 529
    types = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
             403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             504: "timeout_error"}
    if status in types:
        return types[status], status
    return ("invalid_request_error", status) if 400 <= status < 500 else ("api_error", status)


def error_body(status: int, message: str) -> tuple[int, dict[str, Any]]:
    etype, http = error_type(status)
    return http, {"type": "error", "error": {"type": etype, "message": message}}


def encode_error(err: SluicewayError) -> tuple[int, bytes]:
    status, body = error_body(err.status, err.message)
    return status, orjson.dumps(body)


def encode_completion(c: Completion, req: ChatRequest) -> bytes:
    """The non-streaming Message object."""
    content: list[dict[str, Any]] = []
    for r in c.reasoning:
        if r.redacted:
            content.append({"type": "redacted_thinking", "data": r.redacted})
        elif r.signature:
            content.append({"type": "thinking", "thinking": r.text, "signature": r.signature})
    if c.text:
        content.append({"type": "text", "text": c.text})
    for call in c.tool_calls:
        try:
            args = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            args = {}
        content.append({"type": "tool_use", "id": call.call_id, "name": call.name, "input": args})
    return orjson.dumps({
        "id": _msg_id(c.response_id), "type": "message", "role": "assistant", "model": req.model,
        "content": content, "stop_reason": _stop_reason(c.finish_reason, c.raw_finish_reason),
        "stop_sequence": None, "usage": _usage(c.usage)
    })
