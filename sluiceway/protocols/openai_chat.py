"""OpenAI Chat Completions, client side (protocols.md §2): decode requests,
encode the canonical stream as ``chat.completion.chunk`` SSE, encode errors.

Never an ``event:`` or ``id:`` line here (§2.7): openai-node and openai-python
misparse both.
"""

from __future__ import annotations

import time
import uuid
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
from . import sse
from .validate import (
    expect_bool,
    expect_dict,
    expect_int,
    expect_list,
    expect_number,
    expect_str,
    optional,
)

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
          "content_filter": "content_filter", "error": "stop", "other": "stop"}
# request fields we map or knowingly ignore; anything else goes upstream via ``extra``
KNOWN = {
    "model", "messages", "stream", "stream_options", "n", "tools", "tool_choice", "parallel_tool_calls",
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "response_format",
    "reasoning_effort", "user", "metadata", "functions", "function_call", "store", "logprobs",
    "top_logprobs", "frequency_penalty", "presence_penalty", "logit_bias", "service_tier", "modalities",
    "prediction", "audio", "web_search_options", "safety_identifier", "prompt_cache_key", "verbosity",
}
PASSTHROUGH = ("frequency_penalty", "presence_penalty", "logit_bias", "service_tier")


# ------------------------------------------------------------------- decoding

def _parts(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for i, p in enumerate(expect_list(content, where)):
        p = expect_dict(p, f"{where}[{i}]")
        kind = p.get("type")
        if kind == "text":
            parts.append(TextPart(expect_str(p.get("text"), f"{where}[{i}].text")))
        elif kind == "image_url":
            img = p.get("image_url")
            url = img if isinstance(img, str) else expect_dict(img, f"{where}[{i}].image_url").get("url")
            parts.append(ImagePart(expect_str(url, f"{where}[{i}].image_url.url"),
                                   detail=img.get("detail") if isinstance(img, dict) else None))
        elif kind == "file":
            f = expect_dict(p.get("file"), f"{where}[{i}].file")
            url = f.get("file_data") or f.get("file_id")
            parts.append(FilePart(expect_str(url, f"{where}[{i}].file.file_data"), filename=f.get("filename")))
        elif kind == "input_audio":
            raise BadRequest("audio input is not supported", param=f"{where}[{i}]")
        else:
            raise BadRequest(f"unknown content part type {kind!r}", param=f"{where}[{i}].type")
    return parts


def _message(m: Any, i: int) -> Message:
    where = f"messages[{i}]"
    m = expect_dict(m, where)
    role = m.get("role")
    if not isinstance(role, str) or role not in ROLES:  # a list or object role must be a 400, not a TypeError
        raise BadRequest(f"{where}.role must be one of system, user, assistant, tool", param=f"{where}.role")
    if role == "developer":
        role = "system"
    if role == "function":  # legacy function result
        return Message("tool", _parts(m.get("content"), f"{where}.content"), tool_call_id=m.get("name"))
    msg = Message(role, _parts(m.get("content"), f"{where}.content"))
    if isinstance(m.get("name"), str):
        msg.name = m["name"]
    if role == "tool":
        msg.tool_call_id = expect_str(m.get("tool_call_id"), f"{where}.tool_call_id")
    if role == "assistant":
        for j, c in enumerate(optional(m.get("tool_calls"), expect_list, f"{where}.tool_calls") or ()):
            c = expect_dict(c, f"{where}.tool_calls[{j}]")
            fn = expect_dict(c.get("function"), f"{where}.tool_calls[{j}].function")
            args = fn.get("arguments", "{}")
            if not isinstance(args, str):
                args = orjson.dumps(args).decode()
            msg.tool_calls.append(ToolCallPart(expect_str(c.get("id"), f"{where}.tool_calls[{j}].id"),
                                               expect_str(fn.get("name"), f"{where}.tool_calls[{j}].function.name"),
                                               args))
        rc = m.get("reasoning_content") or m.get("reasoning")
        if isinstance(rc, str) and rc:
            msg.content.insert(0, ReasoningPart(rc))
    return msg


def decode_tools(body: dict[str, Any]) -> list[Tool]:
    """Function tools in Chat Completions shape (shared by protocols that accept it)."""
    tools: list[Tool] = []
    for i, t in enumerate(optional(body.get("tools"), expect_list, "tools") or ()):
        t = expect_dict(t, f"tools[{i}]")
        if t.get("type", "function") != "function":
            raise BadRequest(f"tools[{i}].type {t.get('type')!r} is not supported", param=f"tools[{i}].type")
        fn = expect_dict(t.get("function"), f"tools[{i}].function")
        tools.append(Tool(expect_str(fn.get("name"), f"tools[{i}].function.name"),
                          optional(fn.get("description"), expect_str, f"tools[{i}].function.description"),
                          optional(fn.get("parameters"), expect_dict, f"tools[{i}].function.parameters")
                          or {"type": "object", "properties": {}},
                          fn.get("strict") if isinstance(fn.get("strict"), bool) else None))
    for i, f in enumerate(optional(body.get("functions"), expect_list, "functions") or ()):  # legacy
        f = expect_dict(f, f"functions[{i}]")
        tools.append(Tool(expect_str(f.get("name"), f"functions[{i}].name"), f.get("description"),
                          f.get("parameters") or {"type": "object", "properties": {}}))
    return tools


def decode_request(body: Any) -> ChatRequest:
    body = expect_dict(body, "body")
    model = expect_str(body.get("model"), "model")
    if not model:
        raise BadRequest("model must not be empty", param="model")
    msgs = expect_list(body.get("messages"), "messages")
    if not msgs:
        raise BadRequest("messages must not be empty", param="messages")
    n = optional(body.get("n"), expect_int, "n")
    if n is not None and n != 1:
        raise BadRequest("n > 1 is not supported: request one choice per call", param="n")
    optional(body.get("stream"), expect_bool, "stream")
    so = optional(body.get("stream_options"), expect_dict, "stream_options")
    if so is not None:
        optional(so.get("include_usage"), expect_bool, "stream_options.include_usage")
    tc = body.get("tool_choice", body.get("function_call"))
    if isinstance(tc, dict):
        fn = (tc.get("function") or {}) if "function" in tc else tc
        name = fn.get("name") if isinstance(fn, dict) else None  # a non-object function is a 400 below
        tc = {"name": expect_str(name, "tool_choice.function.name")}
    elif tc is not None and tc not in ("auto", "none", "required"):
        raise BadRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None:
        stop = [expect_str(s, "stop[]") for s in expect_list(stop, "stop")]
    max_tokens = optional(body.get("max_completion_tokens", body.get("max_tokens")), expect_int, "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise BadRequest("max_tokens must be at least 1", param="max_tokens")
    temperature = optional(body.get("temperature"), expect_number, "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise BadRequest("temperature must be between 0 and 2", param="temperature")
    top_p = optional(body.get("top_p"), expect_number, "top_p")
    if top_p is not None and not 0 <= top_p <= 1:
        raise BadRequest("top_p must be between 0 and 1", param="top_p")
    extra = {k: v for k, v in body.items() if k not in KNOWN}
    extra.update({k: body[k] for k in PASSTHROUGH if body.get(k) is not None})
    return ChatRequest(
        model=model,
        messages=[_message(m, i) for i, m in enumerate(msgs)],
        tools=decode_tools(body),
        tool_choice=tc,
        parallel_tool_calls=optional(body.get("parallel_tool_calls"), expect_bool, "parallel_tool_calls"),
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stop or [],
        seed=optional(body.get("seed"), expect_int, "seed"),
        response_format=optional(body.get("response_format"), expect_dict, "response_format"),
        reasoning_effort=optional(body.get("reasoning_effort"), expect_str, "reasoning_effort"),
        user=optional(body.get("user"), expect_str, "user"),
        metadata=optional(body.get("metadata"), expect_dict, "metadata") or {},
        extra=extra,
    )


def wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


# ------------------------------------------------------------------- encoding

def _usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.total,
        "prompt_tokens_details": {"cached_tokens": u.cached_input},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    }


class Encoder:
    """Canonical event batches → Chat Completions SSE bytes, one write per batch.

    The constant part of every chunk (id, created, model) is rendered once;
    a delta chunk is then a few byte concatenations and one orjson call."""

    def __init__(self, body: dict[str, Any], req: ChatRequest, *, reasoning_field: str = "reasoning_content") -> None:
        so = body.get("stream_options") or {}
        self.include_usage = so.get("include_usage") is True
        self.model = req.model
        self.reasoning_key = orjson.dumps(reasoning_field)
        self._head = b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null}\n\n' if self.include_usage
                                                                    else b"}\n\n")
        self._calls: dict[str, int] = {}  # call id -> dense index
        self.done = False
        # agents: tools the gateway runs are not calls for the client; ``agent_steps: true`` in the
        # request (an extension) shows them as ``delta.agent_step`` objects
        self.agent_steps = body.get("agent_steps") is True
        self._server: set[str] = set()

    def _start(self, response_id: str, created: int) -> bytes:
        rid = response_id if response_id.startswith("chatcmpl") else f"chatcmpl-{response_id or uuid.uuid4().hex}"
        self._head = (b'data: {"id":' + orjson.dumps(rid) + b',"object":"chat.completion.chunk","created":'
                      + str(created).encode() + b',"model":' + orjson.dumps(self.model)
                      + b',"system_fingerprint":null,"choices":[{"index":0,"delta":')
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def _chunk(self, delta: bytes) -> bytes:
        return self._head + delta + self._tail

    def _tool(self, call_id: str, name: str | None, args: str) -> bytes:
        idx = self._calls.get(call_id)
        if idx is None:
            idx = self._calls[call_id] = len(self._calls)
        call: dict[str, Any] = {"index": idx}
        if name is not None:
            call.update(id=call_id, type="function", function={"name": name, "arguments": args})
        else:
            call["function"] = {"arguments": args}
        return self._chunk(b'{"tool_calls":' + orjson.dumps([call]) + b"}")

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        head, tail, dumps = self._head, self._tail, orjson.dumps
        for ev in events:
            t = ev.type
            if t == "text-delta":  # _chunk, inlined: once per chunk
                out.append(head + b'{"content":' + dumps(ev.delta) + b"}" + tail)
            elif t == "reasoning-delta":
                out.append(self._chunk(b"{" + self.reasoning_key + b":" + orjson.dumps(ev.delta) + b"}"))
            elif t == "start":
                out.append(self._start(ev.response_id, ev.created))
                head = self._head
            elif t == "tool-input-start":
                if ev.server is None:
                    out.append(self._tool(ev.call_id, ev.name, ""))
                else:
                    self._server.add(ev.call_id)
            elif t == "tool-input-delta":
                if ev.call_id not in self._server:
                    out.append(self._tool(ev.call_id, None, ev.delta))
            elif t == "tool-call":
                if ev.server is not None:
                    if self.agent_steps:
                        out.append(self._step({"type": "tool_call", "id": ev.call_id, "name": ev.name,
                                               "arguments": ev.arguments, "server": ev.server}))
                elif ev.call_id not in self._calls:  # arrived whole, without deltas
                    out.append(self._tool(ev.call_id, ev.name, ev.arguments))
            elif t == "tool-result":
                if self.agent_steps:
                    out.append(self._step(_result_step(ev)))
            elif t == "tool-approval-request":
                if self.agent_steps:
                    out.append(self._step({"type": "approval_request", "approval_id": ev.approval_id,
                                           "id": ev.call_id, "name": ev.name, "server": ev.server}))
            elif t == "finish":
                out.append(self._finish(ev.reason, ev.usage))
            elif t == "error":
                out.append(self._error(ev.code, ev.message, ev.status))
        return b"".join(out)

    def _step(self, step: dict[str, Any]) -> bytes:
        return self._chunk(b'{"agent_step":' + orjson.dumps(step) + b"}")

    def _ensure_started(self) -> bytes:
        return b"" if self._head else self._start("", int(time.time()))

    def _finish(self, reason: str, usage: Usage) -> bytes:
        self.done = True
        pre = self._ensure_started()
        tail = b',"logprobs":null,"finish_reason":' + orjson.dumps(FINISH.get(reason, "stop")) + b"}]"
        out = pre + self._head + b"{}" + tail + (b',"usage":null}\n\n' if self.include_usage else b"}\n\n")
        if self.include_usage:
            head = self._head[: self._head.index(b'"choices":')]
            out += head + b'"choices":[],"usage":' + orjson.dumps(_usage(usage)) + b"}\n\n"
        return out + sse.DONE

    def _error(self, code: str, message: str, status: int) -> bytes:
        self.done = True
        return sse.json_data({"error": {"message": message, "type": error_type(status), "param": None,
                                        "code": code}})


def _result_step(ev: Any) -> dict[str, Any]:
    return {"type": "tool_result", "id": ev.call_id, "name": ev.name, "output": ev.output, "is_error": ev.is_error,
            "server": ev.server, "elapsed": ev.elapsed}


def error_type(status: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
            429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")


def encode_error(err: SluicewayError) -> tuple[int, bytes]:
    return err.status, orjson.dumps({"error": {"message": err.message, "type": error_type(err.status),
                                               "param": err.param, "code": err.code}})


def encode_completion(c: Completion, model: str, *, agent_steps: bool = False) -> bytes:
    """The non-streaming ``chat.completion`` object. Tools the gateway ran
    (agents) are left out of ``tool_calls``; ``agent_steps`` lists them."""
    calls = [t for t in c.tool_calls if t.server is None]
    msg: dict[str, Any] = {"role": "assistant", "content": c.text if (c.text or not calls) else None,
                           "refusal": None, "annotations": []}
    if c.reasoning_text:
        msg["reasoning_content"] = c.reasoning_text
    if calls:
        msg["tool_calls"] = [{"id": t.call_id, "type": "function",
                              "function": {"name": t.name, "arguments": t.arguments}} for t in calls]
    if agent_steps and c.tool_results:
        msg["agent_steps"] = [
            *({"type": "tool_call", "id": t.call_id, "name": t.name, "arguments": t.arguments, "server": t.server}
              for t in c.tool_calls if t.server is not None),
            *({"type": "tool_result", "id": r.call_id, "name": r.name, "output": r.output, "is_error": r.is_error,
               "server": r.server} for r in c.tool_results)]
    rid = c.response_id if c.response_id.startswith("chatcmpl") else f"chatcmpl-{c.response_id or uuid.uuid4().hex}"
    return orjson.dumps({
        "id": rid, "object": "chat.completion", "created": c.created or int(time.time()), "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": None,
                     "finish_reason": FINISH.get(c.finish_reason or "stop", "stop")}],
        "usage": _usage(c.usage), "system_fingerprint": None,
    })
