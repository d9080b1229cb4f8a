"""AWS Bedrock ConverseStream, the wire side: canonical requests to Converse
JSON, and ``ConverseAdapter``, a pure state machine (event type + payload in,
canonical events out) fed by botocore's CRC-checked event-stream framing.
The signed I/O is in ``bedrock.py``."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from ..core import (
    AuthError,
    BadRequest,
    ChatRequest,
    Event,
    EventBuilder,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    NotFound,
    PermissionDenied,
    RateLimited,
    ReasoningPart,
    SluicewayError,
    TextPart,
    Timeout,
    UpstreamError,
    UpstreamUnavailable,
    Usage,
)
from ..core.tokens import prompt_chars

log = logging.getLogger("sluiceway.providers.bedrock")

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}

# exception event type (or x-amzn-ErrorType) → typed error class
EXCEPTIONS: dict[str, type[SluicewayError]] = {
    "throttlingException": RateLimited,
    "serviceUnavailableException": UpstreamUnavailable,
    "internalServerException": UpstreamError,
    "modelStreamErrorException": UpstreamError,
    "modelNotReadyException": UpstreamUnavailable,
    "modelTimeoutException": Timeout,
    "validationException": BadRequest,
    "accessDeniedException": PermissionDenied,
    "unrecognizedClientException": AuthError,
    "resourceNotFoundException": NotFound,
}

# reasoning_effort → Claude thinking budget (via additionalModelRequestFields)
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
DOC_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "text/html": "html", "text/plain": "txt",
               "text/markdown": "md", "application/msword": "doc",
               "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
               "application/vnd.ms-excel": "xls",
               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}


# ---------------------------------------------------------------- request side

def _inline(url: str, formats: dict[str, str], what: str) -> tuple[str, str]:
    """(format, base64) of a data URL: Converse takes media inline (or from S3), not by http URL."""
    if not url.startswith("data:"):
        raise BadRequest(f"bedrock takes {what}s only as data URLs (base64), not {url[:40]!r}", param="messages")
    head, _, b64 = url.partition(",")
    media = head[5:].split(";", 1)[0].lower()
    fmt = formats.get(media)
    if fmt is None:
        raise BadRequest(f"bedrock does not take {what}s of type {media!r}", param="messages")
    return fmt, b64


def _tool_input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        log.warning("tool call arguments are not JSON; sending {} upstream")
        return {}


def _blocks(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:  # Converse rejects blank text blocks
                out.append({"text": p.text})
        elif isinstance(p, ImagePart):
            fmt, b64 = _inline(p.url, IMAGE_FORMATS, "image")
            out.append({"image": {"format": fmt, "source": {"bytes": b64}}})
        elif isinstance(p, FilePart):
            fmt, b64 = _inline(p.url, DOC_FORMATS, "document")
            name = "".join(c if c.isalnum() or c in " -()[]" else "-" for c in (p.filename or "document"))
            out.append({"document": {"format": fmt, "name": name, "source": {"bytes": b64}}})
        elif isinstance(p, ReasoningPart) and m.role == "assistant":
            if p.redacted:
                out.append({"reasoningContent": {"redactedContent": p.redacted}})
            elif p.signature:  # unsigned reasoning cannot go back to Claude
                out.append({"reasoningContent": {"reasoningText": {"text": p.text, "signature": p.signature}}})
    return out


def messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """Alternating user/assistant turns; tool results are user ``toolResult`` blocks."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            result: dict[str, Any] = {"toolUseId": m.tool_call_id or "", "content": [{"text": m.text or " "}]}
            if m.is_error:
                result["status"] = "error"
            role, blocks = "user", [{"toolResult": result}]
        else:
            role, blocks = m.role, _blocks(m)
            if m.role == "assistant":
                blocks.sort(key=lambda b: "reasoningContent" not in b)  # reasoning opens the turn
                blocks += [{"toolUse": {"toolUseId": c.call_id, "name": c.name, "input": _tool_input(c.arguments)}}
                           for c in m.tool_calls]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def request_body(req: ChatRequest, *, default_max_tokens: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages_to_wire(req.messages)}
    if req.system:
        body["system"] = [{"text": req.system}]
    inference: dict[str, Any] = {}
    max_tokens = req.max_tokens or default_max_tokens
    extra_fields: dict[str, Any] = {}
    effort = req.reasoning_effort
    if effort and effort != "none":
        budget = THINKING_BUDGETS.get(effort)
        if budget is None:
            raise BadRequest(f"reasoning_effort {effort!r} is not one of none, {', '.join(THINKING_BUDGETS)}",
                             param="reasoning_effort")
        if "claude" in req.model or "anthropic" in req.model:
            extra_fields["thinking"] = {"type": "enabled", "budget_tokens": budget}
            max_tokens = (max_tokens or 4096) + budget  # the budget must stay below maxTokens
        else:
            log.warning("reasoning_effort has no Converse mapping for %s; dropped", req.model)
    if max_tokens:
        inference["maxTokens"] = max_tokens
    for key, wire in (("temperature", "temperature"), ("top_p", "topP")):
        v = getattr(req, key)
        if v is not None:
            if "thinking" in extra_fields:
                log.warning("%s is not allowed with thinking; dropped", key)
            else:
                inference[wire] = v
    if req.stop:
        inference["stopSequences"] = req.stop
    if inference:
        body["inferenceConfig"] = inference
    if req.tools:
        tool_config: dict[str, Any] = {"tools": [
            {"toolSpec": {"name": t.name, "inputSchema": {"json": t.parameters},
                          **({"description": t.description} if t.description else {})}} for t in req.tools]}
        tc = req.tool_choice
        if isinstance(tc, dict):
            tool_config["toolChoice"] = {"tool": {"name": tc["name"]}}
        elif tc == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif tc == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif tc == "none":
            log.warning("Converse has no tool_choice none; the model may still call tools")
        body["toolConfig"] = tool_config
    for key in ("seed", "response_format"):
        if getattr(req, key) is not None:
            log.warning("Converse has no %s; dropped", key)
    if extra_fields:
        body["additionalModelRequestFields"] = extra_fields
    if req.extra:  # Converse fields (guardrailConfig, additionalModelRequestFields, …) pass through
        body.update(req.extra)
    return body


# --------------------------------------------------------------- response side

def exception_error(kind: str, payload: dict[str, Any]) -> SluicewayError:
    """An exception event (``:message-type: exception``) → typed error."""
    key = kind[:1].lower() + kind[1:]
    msg = str(payload.get("message") or payload.get("Message") or kind)
    return EXCEPTIONS.get(key, UpstreamError)(f"bedrock: {kind}: {msg}")


def to_usage(u: dict[str, Any]) -> Usage:
    cache_read = int(u.get("cacheReadInputTokens") or 0)
    total_in = int(u.get("inputTokens") or 0) + cache_read + int(u.get("cacheWriteInputTokens") or 0)
    return Usage(input=total_in, output=int(u.get("outputTokens") or 0), cached_input=cache_read)


class _Block:
    __slots__ = ("kind", "call_id", "name", "args", "signature", "redacted")

    def __init__(self, kind: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind  # text | reasoning | tool
        self.call_id, self.name = call_id, name
        self.args: list[str] = []
        self.signature: str | None = None
        self.redacted: str | None = None


class ConverseAdapter:
    """ConverseStream events → canonical events. ``messageStop`` carries the
    stop reason and the ``metadata`` event after it the usage, so ``finish``
    is emitted on ``metadata`` (or at the end of the body)."""

    def __init__(self, req: ChatRequest | None = None, model: str = "") -> None:
        self.b = EventBuilder()
        self._blocks: dict[int, _Block] = {}
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._model = model
        self._prompt_chars = partial(prompt_chars, req) if req is not None else 0  # counted only if needed
        self.done = False

    def feed(self, kind: str, ev: dict[str, Any], out: list[Event]) -> None:
        b = self.b
        if not b.started:
            b.start(out, "bedrock", self._model)
        if kind == "contentBlockDelta":
            self._delta(ev, out)
        elif kind == "contentBlockStart":
            tool = (ev.get("start") or {}).get("toolUse")
            idx = ev.get("contentBlockIndex", len(self._blocks))
            if tool:
                block = _Block("tool", str(tool.get("toolUseId") or f"tooluse_{idx}"), str(tool.get("name") or ""))
                self._blocks[idx] = block
                b.tool_start(out, block.call_id, block.name)
        elif kind == "contentBlockStop":
            self._stop_block(self._blocks.pop(ev.get("contentBlockIndex", -1), None), out)
        elif kind == "messageStop":
            self._stop = str(ev.get("stopReason") or "end_turn")
        elif kind == "metadata":
            if isinstance(ev.get("usage"), dict):
                self._usage = to_usage(ev["usage"])
            if self._stop is not None:
                self._finish(out)
        # messageStart and unknown events carry nothing canonical

    def _delta(self, ev: dict[str, Any], out: list[Event]) -> None:
        idx = ev.get("contentBlockIndex", 0)
        d = ev.get("delta") or {}
        block = self._blocks.get(idx)
        if "text" in d:
            if block is None:  # text blocks have no contentBlockStart
                block = self._blocks[idx] = _Block("text")
            self.b.text(out, d["text"] or "")
        elif "toolUse" in d and block is not None and block.kind == "tool":
            frag = (d["toolUse"] or {}).get("input") or ""
            if frag:
                block.args.append(frag)
                self.b.tool_delta(out, block.call_id, frag)
        elif "reasoningContent" in d:
            if block is None:
                block = self._blocks[idx] = _Block("reasoning")
            rc = d["reasoningContent"] or {}
            if rc.get("text"):
                self.b.reasoning(out, rc["text"])
            if rc.get("signature"):
                block.signature = (block.signature or "") + rc["signature"]
            if rc.get("redactedContent"):
                block.redacted = (block.redacted or "") + rc["redactedContent"]

    def _stop_block(self, block: _Block | None, out: list[Event]) -> None:
        if block is None:
            return
        if block.kind == "tool":
            self.b.tool_end(out, block.call_id, block.name, "".join(block.args) or "{}")
        elif block.kind == "reasoning":
            self.b.end_reasoning(out, signature=block.signature, redacted=block.redacted)
        else:
            self.b.close_block(out)

    def _finish(self, out: list[Event]) -> None:
        if self.done:
            return
        self.done = True
        for idx in list(self._blocks):  # blocks never stopped still close cleanly
            self._stop_block(self._blocks.pop(idx), out)
        raw = self._stop or "end_turn"
        self.b.finish(out, STOP_REASONS.get(raw, "other"), self._usage, raw_reason=raw,
                      prompt_chars=self._prompt_chars)

    def end(self, out: list[Event]) -> None:
        """End of the response body: finished if ``messageStop`` came, else truncated."""
        if self.done:
            return
        if self._stop is None:
            raise UpstreamError("bedrock: upstream stream ended before messageStop (truncated)")
        self._finish(out)


class EventStreamFrames:
    """AWS event-stream framing, parsed by botocore's own buffer."""

    __slots__ = ("adapter", "buf", "done")

    def __init__(self, adapter: ConverseAdapter) -> None:
        self.adapter, self.buf, self.done = adapter, EventStreamBuffer(), False

    def decode(self, data: bytes, out: list[Event]) -> None:
        if data:
            self.buf.add_data(data)
            decode_messages(self.buf, self.adapter, out)
        else:
            self.adapter.end(out)
        self.done = self.adapter.done or not data


def decode_messages(buf: EventStreamBuffer, adapter: ConverseAdapter, out: list[Event]) -> None:
    """Feed every complete event-stream message in ``buf`` to the adapter."""
    try:
        for msg in buf:
            headers = msg.headers
            mtype = headers.get(":message-type", "event")
            try:
                payload = orjson.loads(msg.payload) if msg.payload else {}
            except orjson.JSONDecodeError:
                raise UpstreamError("bedrock: event payload is not JSON") from None
            if not isinstance(payload, dict):
                payload = {}
            if mtype == "event":
                adapter.feed(str(headers.get(":event-type", "")), payload, out)
            elif mtype == "exception":
                raise exception_error(str(headers.get(":exception-type", "exception")), payload)
            else:  # "error": code and message ride in headers
                raise exception_error(str(headers.get(":error-code", "error")),
                                      {"message": headers.get(":error-message", "")})
    except ParserError as e:
        raise UpstreamError(f"bedrock: malformed event stream ({type(e).__name__})") from None
