"""OpenAI Chat Completions wire format, upstream side: build the request body
from a canonical request, and turn streamed chunks into canonical events.

``ChunkAdapter`` is a pure state machine (chunk dict in, events out) so every
vendor quirk it handles is pinned by tests without I/O.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    Event,
    EventBuilder,
    FinishReason,
    ImagePart,
    Message,
    RateLimited,
    ReasoningPart,
    SluicewayError,
    TextPart,
    UpstreamError,
    UpstreamUnavailable,
    Usage,
    error_from_status,
)
from ..core.tokens import prompt_chars

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


# ---------------------------------------------------------------- request side

def _content(m: Message) -> str | list[dict[str, Any]] | None:
    parts = [p for p in m.content if not isinstance(p, ReasoningPart)]
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts)  # type: ignore[union-attr]
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            img: dict[str, Any] = {"url": p.url}
            if p.detail:
                img["detail"] = p.detail
            out.append({"type": "image_url", "image_url": img})
        else:  # FilePart
            out.append({"type": "file", "file": {"file_data": p.url, "filename": p.filename or "file"}})
    return out


def messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text})
            continue
        msg: dict[str, Any] = {"role": m.role, "content": _content(m)}
        if m.name:
            msg["name"] = m.name
        if m.role == "assistant" and m.tool_calls:
            msg["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
            if not msg["content"]:
                msg["content"] = None
        out.append(msg)
    return out


def request_body(req: ChatRequest, *, stream: bool, max_tokens_field: str = "max_tokens",
                 stream_options: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "messages": messages_to_wire(req.messages), "stream": stream}
    if stream and stream_options:
        body["stream_options"] = {"include_usage": True}
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": {
                "name": t.name, "parameters": t.parameters,
                **({"description": t.description} if t.description else {}),
                **({"strict": t.strict} if t.strict is not None else {})}}
            for t in req.tools
        ]
        if req.tool_choice is not None:
            tc = req.tool_choice
            body["tool_choice"] = tc if isinstance(tc, str) else {"type": "function", "function": {"name": tc["name"]}}
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    for key in ("temperature", "top_p", "seed", "response_format", "reasoning_effort", "user"):
        v = getattr(req, key)
        if v is not None:
            body[key] = v
    if req.max_tokens is not None:
        body[max_tokens_field] = req.max_tokens
    if req.stop:
        body["stop"] = req.stop
    if req.extra:
        body.update(req.extra)
    return body


# --------------------------------------------------------------- response side

def usage_from_wire(u: dict[str, Any]) -> Usage:
    ptd = u.get("prompt_tokens_details") or {}
    ctd = u.get("completion_tokens_details") or {}
    return Usage(
        input=int(u.get("prompt_tokens") or 0),
        output=int(u.get("completion_tokens") or 0),
        cached_input=int(ptd.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0),
        reasoning=int(ctd.get("reasoning_tokens") or 0),
    )


def inband_error(err: Any) -> SluicewayError:
    """A ``{"error": …}`` object sent inside the stream."""
    if isinstance(err, dict):
        msg = str(err.get("message") or err.get("error") or "upstream error")
        code = err.get("code")
        status = code if isinstance(code, int) else None
        etype = str(err.get("type") or code or "")
    else:
        msg, etype, status = str(err), "", None
    if status:
        return error_from_status(status, msg)
    if "rate_limit" in etype:
        return RateLimited(msg)
    if "overloaded" in etype or "unavailable" in etype:
        return UpstreamUnavailable(msg)
    if "invalid_request" in etype:
        return BadRequest(msg)
    return UpstreamError(msg)


class _Call:
    __slots__ = ("call_id", "name", "args", "started", "done")

    def __init__(self, call_id: str, name: str) -> None:
        self.call_id, self.name, self.args = call_id, name, []
        self.started = self.done = False


class ChunkAdapter:
    """Chat Completions chunks → canonical events, for one stream."""

    def __init__(self, req: ChatRequest | None = None) -> None:
        self.b = EventBuilder()
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._prompt_chars = partial(prompt_chars, req) if req is not None else 0  # counted only if needed
        self.done = False

    def feed(self, chunk: dict[str, Any], out: list[Event]) -> None:
        # once per chunk: ``in`` and subscripts where they do, they cost no call
        if "error" in chunk and chunk["error"]:
            raise inband_error(chunk["error"])
        b = self.b
        get = chunk.get
        if not b.started:
            if not get("choices") and not get("id"):
                return  # Azure's content-filter preamble: no id yet, nothing to say
            b.start(out, str(get("id") or "chatcmpl"), str(get("model") or ""),
                    get("created") if isinstance(get("created"), int) else None)
        if "usage" in chunk and chunk["usage"]:
            self._usage = usage_from_wire(chunk["usage"])
        for choice in get("choices") or ():
            if "index" in choice and choice["index"] != 0:
                continue  # n>1 is refused before we get here
            delta = (choice["delta"] if "delta" in choice else choice.get("message")) or {}
            text = delta.get("content")
            if text and len(delta) == 1 and not choice.get("finish_reason"):
                b.text(out, text)  # the common chunk: text and nothing else
                continue
            r = delta.get("reasoning_content") or delta.get("reasoning")
            if r and isinstance(r, str):
                b.reasoning(out, r)
            if text:
                b.text(out, text)
            refusal = delta.get("refusal")
            if refusal:
                b.text(out, refusal)
            calls = delta.get("tool_calls")
            if calls:
                self._tool_fragments(calls, out)
            fc = delta.get("function_call")
            if fc:
                self._tool_fragments([{"index": 0, "id": "call_0", "function": fc}], out)
            fr = choice.get("finish_reason")
            if fr and self._finish is None:
                self._finish = fr
                self._close_calls(out)

    def _tool_fragments(self, calls: list[dict[str, Any]], out: list[Event]) -> None:
        for frag in calls:
            fn = frag.get("function") or {}
            cid = frag.get("id")
            idx = frag.get("index")
            call = self._by_index.get(idx) if isinstance(idx, int) else (self._calls[-1] if self._calls else None)
            # A fresh id at a known index is a new call: some servers send index 0
            # (or none) for every parallel call. We assign our own dense order.
            if call is None or (cid and call.call_id != cid and call.started):
                call = _Call(cid or f"call_{len(self._calls)}", fn.get("name") or "")
                self._calls.append(call)
                if isinstance(idx, int):
                    self._by_index[idx] = call
            if fn.get("name") and not call.name:
                call.name = fn["name"]
            if not call.started and call.name:
                call.started = True
                self.b.tool_start(out, call.call_id, call.name)
            args = fn.get("arguments")
            if args:
                if isinstance(args, dict):  # some servers send an object, not a string
                    args = orjson.dumps(args).decode()
                call.args.append(args)
                if call.started:
                    self.b.tool_delta(out, call.call_id, args)

    def _close_calls(self, out: list[Event]) -> None:
        self.b.close_block(out)
        for call in self._calls:
            if call.done:
                continue
            call.done = True
            args = "".join(call.args)
            if not call.started:  # name only arrived with the arguments
                self.b.tool_start(out, call.call_id, call.name or "unknown")
                self.b.tool_delta(out, call.call_id, args)
            self.b.tool_end(out, call.call_id, call.name, args)

    def end(self, out: list[Event], *, saw_done: bool = False) -> None:
        """The upstream stream is over ([DONE] or EOF)."""
        if self.done:
            return
        if self._finish is None and not saw_done:
            raise UpstreamError("upstream stream ended before it finished (truncated)")
        self.done = True
        self._close_calls(out)
        if not self.b.started:
            self.b.start(out, "chatcmpl", "")
        raw = self._finish or "stop"
        self.b.finish(out, FINISH_REASONS.get(raw, "other"), self._usage,
                      raw_reason=raw, prompt_chars=self._prompt_chars)
