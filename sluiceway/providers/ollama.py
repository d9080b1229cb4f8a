"""Ollama's native chat API (``POST /api/chat``, NDJSON; protocols.md §6).

Native rather than Ollama's ``/v1`` shim because the shim has lost or
mangled tool-call indexes and thinking across versions (protocols.md §9.4).
The wire part (``ChunkAdapter``, ``request_body``) is pure
and tested without I/O; ``OllamaProvider`` is the thin I/O shell.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr

from ..core import (
    BadRequest,
    ChatRequest,
    Deadlines,
    Event,
    EventBuilder,
    FinishReason,
    ImagePart,
    Message,
    NotFound,
    ReasoningPart,
    SluicewayError,
    UpstreamError,
    Usage,
)
from ..core.tokens import prompt_chars
from .base import ModelInfo
from .frames import JsonLines, relay
from .http import open_stream
from .remote import RemoteProvider

DONE_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


# ------------------------------------------------------------------ framing

# ------------------------------------------------------------- request side

def _images(m: Message) -> list[str]:
    out: list[str] = []
    for p in m.content:
        if isinstance(p, ImagePart):
            data = p.data()
            if data is None:
                raise BadRequest("ollama takes images as data URLs (base64), not links", param="messages")
            out.append(data[1])
    return out


def messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.text}
        if m.role == "tool":
            msg["tool_name"] = m.name or names.get(m.tool_call_id or "", "")
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
        elif m.role == "assistant":
            thinking = "".join(p.text for p in m.content if isinstance(p, ReasoningPart))
            if thinking:
                msg["thinking"] = thinking
            if m.tool_calls:
                calls = []
                for c in m.tool_calls:
                    names[c.call_id] = c.name
                    try:
                        args = orjson.loads(c.arguments) if c.arguments else {}
                    except orjson.JSONDecodeError:
                        raise BadRequest(f"tool call {c.name!r}: arguments are not valid JSON",
                                         param="messages") from None
                    calls.append({"id": c.call_id, "function": {"name": c.name, "arguments": args}})
                msg["tool_calls"] = calls
        if m.role == "user" and (images := _images(m)):
            msg["images"] = images
        out.append(msg)
    return out


def request_body(req: ChatRequest, *, options: dict[str, Any] | None = None, think: bool | str | None = None,
                 keep_alive: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "messages": messages_to_wire(req.messages), "stream": True}
    if req.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "parameters": t.parameters,
            **({"description": t.description} if t.description else {})}} for t in req.tools]
    opts: dict[str, Any] = dict(options or {})
    for key, value in (("num_predict", req.max_tokens), ("temperature", req.temperature),
                       ("top_p", req.top_p), ("seed", req.seed)):
        if value is not None:
            opts[key] = value
    if req.stop:
        opts["stop"] = req.stop
    if opts:
        body["options"] = opts
    effort = req.reasoning_effort
    if effort is not None:
        body["think"] = False if effort in ("none", "minimal") else (
            effort if effort in ("low", "medium", "high") else True)
    elif think is not None:
        body["think"] = think
    rf = req.response_format or {}
    if rf.get("type") == "json_object":
        body["format"] = "json"
    elif rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        body["format"] = schema if isinstance(schema, dict) else "json"
    if keep_alive:
        body["keep_alive"] = keep_alive
    if req.extra:
        body.update(req.extra)
    return body


# ------------------------------------------------------------ response side

def inband_error(message: Any) -> SluicewayError:
    msg = str(message or "upstream error")
    if "not found" in msg and "model" in msg:
        return NotFound(msg)
    return UpstreamError(msg)


class ChunkAdapter:
    """Ollama chat lines → canonical events, for one stream."""

    def __init__(self, req: ChatRequest | None = None) -> None:
        self.b = EventBuilder()
        self._prompt_chars = partial(prompt_chars, req) if req is not None else 0  # counted only if needed
        self.done = False

    def feed(self, line: dict[str, Any], out: list[Event]) -> None:
        if line.get("error"):
            raise inband_error(line["error"])
        b = self.b
        if not b.started:
            b.start(out, f"ollama-{secrets.token_hex(8)}", str(line.get("model") or ""))
        msg = line.get("message") or {}
        thinking = msg.get("thinking")
        if thinking and isinstance(thinking, str):
            b.reasoning(out, thinking)
        content = msg.get("content")
        if content and isinstance(content, str):
            b.text(out, content)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            args = fn.get("arguments")
            arguments = args if isinstance(args, str) else orjson.dumps(args if args is not None else {}).decode()
            cid = call.get("id") if isinstance(call.get("id"), str) and call["id"] else f"call_{secrets.token_hex(8)}"
            b.tool_call(out, cid, str(fn.get("name") or "unknown"), arguments)
        if line.get("done"):
            self.done = True
            raw = str(line.get("done_reason") or "stop")
            usage = None
            if "eval_count" in line or "prompt_eval_count" in line:
                usage = Usage(int(line.get("prompt_eval_count") or 0), int(line.get("eval_count") or 0))
            b.finish(out, DONE_REASONS.get(raw, "other"), usage, raw_reason=raw, prompt_chars=self._prompt_chars)

    def end(self, out: list[Event]) -> None:
        if not self.done:
            raise UpstreamError("ollama: stream ended before done:true (truncated)")


# ---------------------------------------------------------------- provider

class OllamaSettings(BaseModel):
    base_url: str = Field("http://127.0.0.1:11434", description="Ollama server URL, without /api")
    api_key: SecretStr | None = Field(None, description="Bearer token (Ollama Cloud or an authenticating proxy)")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    options: dict[str, Any] = Field(default_factory=dict, description="Model options on every request "
                                                                      "(num_ctx, top_k, repeat_penalty, …)")
    think: bool | str | None = Field(None, description="Default for `think` when the request sets no "
                                                       "reasoning effort: true/false or low/medium/high")
    keep_alive: str | None = Field(None, description="How long Ollama keeps the model loaded (e.g. 5m)")
    models: list[str] = Field(default_factory=list, description="Models to list instead of asking /api/tags")


class OllamaProvider(RemoteProvider):
    kind: ClassVar[str] = "ollama"
    Settings: ClassVar[type[BaseModel]] = OllamaSettings
    settings: OllamaSettings

    def __init__(self, name: str, settings: OllamaSettings) -> None:
        super().__init__(name, settings)
        self.base_url = settings.base_url.rstrip("/").removesuffix("/api")

    def headers(self) -> dict[str, str]:
        return self.with_key(self.settings.api_key)

    def body(self, req: ChatRequest) -> dict[str, Any]:
        s = self.settings
        return request_body(req, options=s.options, think=s.think, keep_alive=s.keep_alive)

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        opening = open_stream(self.session, f"{self.base_url}/api/chat", provider=self.name,
                              deadline=deadline, json=self.body(req), headers=self.headers(), trace=req.wire)
        # done:true is the last line
        return relay(opening, JsonLines(ChunkAdapter(req), self.name), deadline, self.name, req.wire)

    async def fetch_models(self) -> list[ModelInfo]:
        doc = await self.get_json(f"{self.base_url}/api/tags", headers=self.headers())
        models = doc.get("models", []) if isinstance(doc, dict) else []
        return [ModelInfo(str(m.get("model") or m.get("name")), owned_by=self.name)
                for m in models if isinstance(m, dict) and (m.get("model") or m.get("name"))]
