"""Google Gemini ``generateContent`` wire format, upstream side (protocols.md §5).

Builds the request body from a canonical request and turns each streamed
``GenerateContentResponse`` into canonical events. ``ChunkAdapter`` is a pure
state machine (chunk dict in, events out), tested without I/O.

Thought signatures. Gemini puts an opaque ``thoughtSignature`` on parts and
answers 400 on the next turn when the one on a ``functionCall`` is missing.
A tool call's signature therefore travels inside its call id
(``<id>__thought__<signature>``): every client protocol echoes call ids
verbatim, so the signature comes back even through Chat Completions, which
has no field for it. A signature on a thought part closes its reasoning
block (``ReasoningEnd.signature``); one on a plain text part is sent as an
empty signed reasoning block, so a client that keeps reasoning parts can
echo it too.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

import orjson

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
    ReasoningEnd,
    ReasoningPart,
    ReasoningStart,
    SluicewayError,
    TextPart,
    UpstreamError,
    UpstreamUnavailable,
    Usage,
    error_from_status,
)
from ..core.tokens import prompt_chars

SIG_SEP = "__thought__"

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
}

# google.rpc status names for in-stream errors that carry no numeric code
_RPC_STATUS: dict[str, type[SluicewayError]] = {
    "INVALID_ARGUMENT": BadRequest,
    "FAILED_PRECONDITION": BadRequest,
    "UNAUTHENTICATED": AuthError,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": UpstreamUnavailable,
}


# ------------------------------------------------------------------ call ids

def make_call_id(upstream_id: str | None, signature: str | None) -> str:
    """The signature rides in URL-safe base64 without padding, so the id stays
    within ``[A-Za-z0-9_-]`` (Anthropic clients validate tool ids against
    that); Google's JSON parser reads either base64 alphabet for a bytes
    field, so it goes back as is."""
    cid = upstream_id or f"call_{secrets.token_hex(8)}"
    if not signature:
        return cid
    return f"{cid}{SIG_SEP}{signature.rstrip('=').replace('+', '-').replace('/', '_')}"


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """(the id, the thought signature riding in it, if any)."""
    cid, sep, sig = call_id.partition(SIG_SEP)
    return cid, (sig or None) if sep else None


def _upstream_id(cid: str) -> str | None:
    """Ids we made up are not sent back: Gemini never saw them."""
    return None if cid.startswith("call_") else cid or None


# -------------------------------------------------------------- request side

def _media_part(url: str, media_type: str | None, data: tuple[str, str] | None) -> dict[str, Any]:
    if data is not None:
        return {"inlineData": {"mimeType": media_type or data[0], "data": data[1]}}
    return {"fileData": {"mimeType": media_type or "application/octet-stream", "fileUri": url}}


def _user_parts(m: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append({"text": p.text})
        elif isinstance(p, ImagePart):
            parts.append(_media_part(p.url, p.media_type, p.data()))
        elif isinstance(p, FilePart):
            data = ImagePart(p.url).data()
            parts.append(_media_part(p.url, p.media_type, data))
    return parts


def _model_parts(m: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, ReasoningPart):
            if p.text:
                part: dict[str, Any] = {"text": p.text, "thought": True}
            elif p.signature:
                part = {"text": ""}
            else:
                continue
            if p.signature:
                part["thoughtSignature"] = p.signature
            parts.append(part)
        elif isinstance(p, TextPart) and p.text:
            parts.append({"text": p.text})
    for c in m.tool_calls:
        cid, sig = split_call_id(c.call_id)
        try:
            args = orjson.loads(c.arguments) if c.arguments else {}
        except orjson.JSONDecodeError:
            raise BadRequest(f"tool call {c.name!r}: arguments are not valid JSON", param="messages") from None
        fc: dict[str, Any] = {"name": c.name, "args": args if isinstance(args, dict) else {"value": args}}
        if (uid := _upstream_id(cid)) is not None:
            fc["id"] = uid
        part = {"functionCall": fc}
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _tool_response(m: Message, names: dict[str, str]) -> dict[str, Any]:
    cid, _ = split_call_id(m.tool_call_id or "")
    name = m.name or names.get(m.tool_call_id or "") or names.get(cid) or "tool"
    text = m.text
    try:
        value = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        value = None
    if m.is_error:
        response: dict[str, Any] = {"error": text}
    elif isinstance(value, dict):
        response = value
    else:
        response = {"result": value if value is not None else text}
    fr: dict[str, Any] = {"name": name, "response": response}
    if (uid := _upstream_id(cid)) is not None:
        fr["id"] = uid
    return {"functionResponse": fr}


def contents(messages: list[Message]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(systemInstruction, contents). Consecutive turns of one role are merged,
    so parallel tool results become one ``user`` turn as Gemini expects."""
    system = [{"text": m.text} for m in messages if m.role == "system" and m.text]
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant":
            for c in m.tool_calls:
                names[c.call_id] = c.name
            role, parts = "model", _model_parts(m)
        elif m.role == "tool":
            role, parts = "user", [_tool_response(m, names)]
        else:
            role, parts = "user", _user_parts(m)
        if not parts:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return ({"parts": system} if system else None), out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["name"]]}}
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(str(choice))
    return {"functionCallingConfig": {"mode": mode}} if mode else None


def request_body(req: ChatRequest, *, include_thoughts: bool = False) -> dict[str, Any]:
    system, turns = contents(req.messages)
    body: dict[str, Any] = {"contents": turns}
    if system:
        body["systemInstruction"] = system
    if req.tools:
        body["tools"] = [{"functionDeclarations": [
            {"name": t.name, **({"description": t.description} if t.description else {}),
             "parametersJsonSchema": t.parameters}
            for t in req.tools]}]
        if (tc := _tool_config(req.tool_choice)) is not None:
            body["toolConfig"] = tc
    gen: dict[str, Any] = {}
    if req.temperature is not None:
        gen["temperature"] = req.temperature
    if req.top_p is not None:
        gen["topP"] = req.top_p
    if req.max_tokens is not None:
        gen["maxOutputTokens"] = req.max_tokens
    if req.stop:
        gen["stopSequences"] = req.stop
    if req.seed is not None:
        gen["seed"] = req.seed
    rf = req.response_format or {}
    if rf.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            gen["responseJsonSchema"] = schema
    if req.reasoning_effort == "none":
        gen["thinkingConfig"] = {"thinkingBudget": 0}
    elif include_thoughts or req.reasoning_effort:
        thinking: dict[str, Any] = {"includeThoughts": True}
        if req.reasoning_effort in ("minimal", "low", "medium", "high"):
            thinking["thinkingLevel"] = req.reasoning_effort
        gen["thinkingConfig"] = thinking
    if gen:
        body["generationConfig"] = gen
    if req.extra:
        body.update(req.extra)
    return body


# ------------------------------------------------------------- response side

def usage_from_wire(u: dict[str, Any]) -> Usage:
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    return Usage(
        input=int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0),
        output=int(u.get("candidatesTokenCount") or 0) + thoughts,
        cached_input=int(u.get("cachedContentTokenCount") or 0),
        reasoning=thoughts,
    )


def inband_error(err: Any) -> SluicewayError:
    """A ``{"error": {code, message, status}}`` object sent as a data payload."""
    if not isinstance(err, dict):
        return UpstreamError(str(err))
    msg = str(err.get("message") or "upstream error")
    code = err.get("code")
    if isinstance(code, int) and code >= 400:
        return error_from_status(code, msg)
    cls = _RPC_STATUS.get(str(err.get("status") or ""), UpstreamError)
    return cls(msg)


def _duration(value: Any) -> float | None:
    """A google.protobuf.Duration in JSON ("37s", "1.5s")."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return max(0.0, float(value[:-1]))
        except ValueError:
            return None
    return None


def http_error(status: int, body: bytes, retry_after: float | None, provider: str) -> SluicewayError:
    """An error response before the stream: Gemini says a bad key with 400
    and reason API_KEY_INVALID, and how long to back off with a RetryInfo
    detail rather than a Retry-After header."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, list) and doc:
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        text = body.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
        return error_from_status(status, f"{provider}: {text}", retry_after=retry_after, provider=provider)
    msg = f"{provider}: {err.get('message') or err.get('status') or f'HTTP {status}'}"
    for d in err.get("details") or ():
        if not isinstance(d, dict):
            continue
        if d.get("reason") == "API_KEY_INVALID":
            return AuthError(msg, provider=provider)
        if retry_after is None and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            retry_after = _duration(d.get("retryDelay"))
    return error_from_status(status, msg, retry_after=retry_after, provider=provider)


class ChunkAdapter:
    """Gemini stream chunks → canonical events, for one stream."""

    def __init__(self, req: ChatRequest | None = None, model: str = "") -> None:
        self.b = EventBuilder()
        self._model = model
        self._reasoning_open = False
        self._reasoning_sig: str | None = None
        self._text_sigs: list[str] = []
        self._finish: str | None = None
        self._blocked: str | None = None
        self._usage: Usage | None = None
        self._prompt_chars = partial(prompt_chars, req) if req is not None else 0  # counted only if needed
        self._sig_blocks = 0
        self.done = False

    def _close_reasoning(self, out: list[Event]) -> None:
        if self._reasoning_open:
            self.b.close_block(out, signature=self._reasoning_sig)
            self._reasoning_open = False
            self._reasoning_sig = None

    def feed(self, chunk: dict[str, Any], out: list[Event]) -> None:
        if chunk.get("error"):
            raise inband_error(chunk["error"])
        b = self.b
        if not b.started:
            b.start(out, str(chunk.get("responseId") or f"gemini-{secrets.token_hex(6)}"),
                    str(chunk.get("modelVersion") or self._model))
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage = usage_from_wire(usage)
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self._blocked = str(feedback["blockReason"])
        for cand in chunk.get("candidates") or ():
            if cand.get("index", 0) != 0:
                continue
            for part in (cand.get("content") or {}).get("parts") or ():
                self._part(part, out)
            fr = cand.get("finishReason")
            if fr:
                self._finish = str(fr)

    def _part(self, part: dict[str, Any], out: list[Event]) -> None:
        sig = part.get("thoughtSignature")
        fc = part.get("functionCall")
        if isinstance(fc, dict):
            self._close_reasoning(out)
            args = fc.get("args")
            arguments = orjson.dumps(args if args is not None else {}).decode()
            cid = make_call_id(fc.get("id") if isinstance(fc.get("id"), str) else None, sig)
            self.b.tool_call(out, cid, str(fc.get("name") or "unknown"), arguments)
            return
        text = part.get("text")
        if not isinstance(text, str):
            return  # executableCode, inlineData …: not representable downstream
        if part.get("thought"):
            if text:
                self.b.reasoning(out, text)
                self._reasoning_open = True
            if sig:
                if self._reasoning_open:
                    self._reasoning_sig = sig
                else:
                    self._text_sigs.append(sig)
            return
        if text:
            self._close_reasoning(out)
            self.b.text(out, text)
        if sig:
            self._text_sigs.append(sig)

    def end(self, out: list[Event]) -> None:
        """The upstream closed the connection (Gemini has no terminator)."""
        if self.done:
            return
        if self._finish is None and self._blocked is None:
            raise UpstreamError("gemini: stream ended without a finishReason (truncated)")
        self.done = True
        if not self.b.started:
            self.b.start(out, f"gemini-{secrets.token_hex(6)}", self._model)
        self._close_reasoning(out)
        self.b.close_block(out)
        for sig in self._text_sigs:
            self._sig_blocks += 1
            bid = f"s{self._sig_blocks}"
            out.append(ReasoningStart(bid))
            out.append(ReasoningEnd(bid, signature=sig))
        if self._finish is None:  # the prompt itself was blocked: no candidates at all
            raw, reason = self._blocked or "OTHER", "content_filter"
        else:
            raw = self._finish
            reason = FINISH_REASONS.get(raw, "other")
        self.b.finish(out, reason, self._usage, raw_reason=raw, prompt_chars=self._prompt_chars)  # type: ignore[arg-type]
