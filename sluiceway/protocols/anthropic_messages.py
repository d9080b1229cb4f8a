"""Anthropic Messages, client side (protocols.md §4): encode the canonical
stream as Anthropic SSE, encode errors; requests are decoded in
``anthropic_messages_decode`` (re-exported here).

Every frame has an ``event:`` line equal to its JSON ``type``: the Anthropic
SDKs dispatch on the event name and silently drop frames without one (§9 #1).

Thinking: clients echo thinking blocks back, and Anthropic rejects one whose
signature does not verify, so a block carries the upstream's real signature
when there is one. The signature arrives at the end of the block, so
reasoning is held until ``reasoning-end``: signed reasoning is
sent as a ``thinking`` block, redacted reasoning as ``redacted_thinking``,
and unsigned reasoning (other vendors) as a ``thinking`` block with an empty
signature, in its place before the text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..core import (
    ChatRequest,
    Completion,
    Event,
    SluicewayError,
    Usage,
)
from ..core.tokens import estimate_tokens, prompt_chars
from . import sse
from .anthropic_messages_decode import count_tokens, decode_request, wants_stream
from .sequential import Sequencer

__all__ = ["Encoder", "count_tokens", "decode_request", "encode_completion", "encode_error", "error_body",
           "error_type", "wants_stream"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal", "error": "end_turn", "other": "end_turn"}


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
        self._server: set[str] = set()  # agents: calls the gateway runs, shown at their tool-call whole

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
                if ev.server is None:
                    self._tool_open(out, ev.call_id, ev.name)
                else:
                    self._server.add(ev.call_id)
            elif t == "tool-input-delta":
                if self._call == ev.call_id:
                    self._args += ev.delta
                    out.append(self._json_delta(ev.delta))
            elif t == "tool-call" and ev.server is not None:
                self._block(out, _server_use(ev.call_id, ev.name, ev.server, ev.arguments), "tool")
                self._stop(out)
            elif t == "tool-result":
                self._block(out, _server_result(ev.call_id, ev.output, ev.is_error), "tool")
                self._stop(out)
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
        elif text or (signature and not self._index):
            # Unsigned reasoning (OpenAI-compatible, Ollama, Gemini) is shown too, with an empty
            # signature: a client echoes it back to us, and we never forward unsigned thinking to
            # Anthropic. A lone signature that arrives after other blocks (Gemini sends it late)
            # has no block left to sign, so it opens no empty one.
            self._block(out, {"type": "thinking", "thinking": "", "signature": ""}, "thinking")
            idx = self._index - 1
            if text:
                out.append(sse.named("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                             "delta": {"type": "thinking_delta", "thinking": text}}))
            if signature:
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


def _server_use(call_id: str, name: str, server: str, arguments: str) -> dict[str, Any]:
    """A tool the gateway ran (agents) as an ``mcp_tool_use`` block, its input whole:
    Anthropic's one shape for a tool run outside the client (``server_tool_use`` names only
    Anthropic's own tools); ``server_name`` is the MCP server, or ``builtin`` / ``python``."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        args = {}
    return {"type": "mcp_tool_use", "id": call_id, "name": name, "server_name": server, "input": args}


def _server_result(call_id: str, output: str, is_error: bool) -> dict[str, Any]:
    return {"type": "mcp_tool_result", "tool_use_id": call_id, "is_error": is_error,
            "content": [{"type": "text", "text": output}]}


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
        elif not r.text and r.signature and content and content[-1].get("signature") == "":
            content[-1]["signature"] = r.signature  # a signature that came after its thinking (Gemini)
        elif r.text or r.signature:
            content.append({"type": "thinking", "thinking": r.text, "signature": r.signature or ""})
    results = {r.call_id: r for r in c.tool_results}  # tools the gateway ran (agents), before the answer
    for call in c.tool_calls:
        r = results.get(call.call_id)
        if call.server is not None and r is not None:
            content += [_server_use(call.call_id, call.name, call.server, call.arguments),
                        _server_result(call.call_id, r.output, r.is_error)]
    if c.text:
        content.append({"type": "text", "text": c.text})
    for call in c.tool_calls:
        if call.server is not None and call.call_id in results:
            continue
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
