"""Anthropic Messages requests (protocols.md §4): ``/v1/messages`` and
``/v1/messages/count_tokens`` bodies → the canonical ``ChatRequest``."""

from __future__ import annotations

from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
)
from ..core.tokens import estimate_tokens, prompt_chars
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

KNOWN = {"model", "max_tokens", "messages", "system", "stream", "tools", "tool_choice", "thinking",
         "stop_sequences", "temperature", "top_p", "top_k", "metadata", "service_tier", "container",
         "mcp_servers", "context_management"}


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
            elif isinstance(kind, str) and kind in SERVER_BLOCKS and role == "assistant":
                continue  # a step the gateway ran in an earlier answer (agents): the model needs only its outcome
            else:
                raise BadRequest(f"content block type {kind!r} is not supported in a {role} message",
                                 param=f"{w}.type")
        out.extend(results)  # tool results answer the previous assistant turn, before any new user text
        if msg.content or msg.tool_calls:
            out.append(msg)
    return out


SERVER_BLOCKS = frozenset({"mcp_tool_use", "mcp_tool_result", "server_tool_use"})


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
