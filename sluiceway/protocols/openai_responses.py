"""OpenAI Responses, client side (protocols.md §3): decode ``/v1/responses``
requests, encode the canonical stream as Responses SSE, encode errors.

Every frame is ``event: <type>`` + ``data: {"type": <type>, "sequence_number": N, …}`` with N
gap-free from 0 (§3.2, §3.6). Items are emitted one after another in
``output_index`` order (§3.4): text becomes a ``message`` item, reasoning a
``reasoning`` item with one summary part, each tool call a ``function_call``
item whose ``item_id`` is its ``fc_…`` id (not the ``call_id``). The terminal
event repeats the whole output with usage. Nothing follows it: no ``[DONE]``
and no stray blank event (§9 #10).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..core import (
    BadRequest,
    ChatRequest,
    Completion,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    SluicewayError,
    TextPart,
    Tool,
    ToolCallPart,
)
from .openai_chat import error_type
from .openai_responses_fold import (
    INCOMPLETE,
    IdFactory,
    ResponseFold,
    ResponseShell,
    _call_item,
    _is_mcp,
    _mcp_done,
    _mcp_item,
    _message_item,
    _output_item,
    _reasoning_item,
    _text_part,
    continued_input,
    new_id,
    stable_ids,
    usage_obj,
)
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

# the Response object's pieces are re-exported: this module is the protocol's one entry point
__all__ = ["Encoder", "IdFactory", "ResponseFold", "ResponseShell", "continued_input", "decode_request",
           "encode_completion", "encode_error", "new_id", "stable_ids", "usage_obj", "wants_stream"]

KNOWN = {"model", "input", "instructions", "stream", "stream_options", "tools", "tool_choice",
         "parallel_tool_calls", "max_output_tokens", "reasoning", "include", "previous_response_id",
         "conversation", "store", "background", "text", "truncation", "metadata", "service_tier",
         "temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "max_tool_calls",
         "top_logprobs", "prompt"}


# ------------------------------------------------------------------- decoding

def _content(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for i, p in enumerate(expect_list(content, where)):
        w = f"{where}[{i}]"
        p = expect_dict(p, w)
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(TextPart(expect_str(p.get("text"), f"{w}.text")))
        elif kind == "refusal":
            parts.append(TextPart(expect_str(p.get("refusal"), f"{w}.refusal")))
        elif kind == "input_image":
            url = p.get("image_url") or p.get("file_id")
            parts.append(ImagePart(expect_str(url, f"{w}.image_url"), detail=p.get("detail")))
        elif kind == "input_file":
            url = p.get("file_data") or p.get("file_url") or p.get("file_id")
            parts.append(FilePart(expect_str(url, f"{w}.file_data"), filename=p.get("filename")))
        else:
            raise BadRequest(f"content part type {kind!r} is not supported", param=f"{w}.type")
    return parts


def _output_text(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    return "".join(p.text for p in _content(output, where) if isinstance(p, TextPart))


def _input(raw: Any) -> list[Message]:
    if isinstance(raw, str):
        return [Message.of("user", raw)]
    out: list[Message] = []
    turn: Message | None = None  # the assistant message model-output items are gathered into

    def assistant() -> Message:
        nonlocal turn
        if turn is None:
            turn = Message("assistant")
            out.append(turn)
        return turn

    for i, item in enumerate(expect_list(raw, "input")):
        w = f"input[{i}]"
        item = expect_dict(item, w)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise BadRequest(f"{w}.role must be user, system, developer or assistant", param=f"{w}.role")
            parts = _content(item.get("content"), f"{w}.content")
            if role == "assistant":
                assistant().content.extend(parts)
            else:
                turn = None
                out.append(Message("system" if role == "developer" else role, parts))
        elif kind == "function_call":
            args = item.get("arguments", "{}")
            assistant().tool_calls.append(ToolCallPart(expect_str(item.get("call_id"), f"{w}.call_id"),
                                                       expect_str(item.get("name"), f"{w}.name"),
                                                       args if isinstance(args, str) else orjson.dumps(args).decode()))
        elif kind == "function_call_output":
            turn = None
            out.append(Message("tool", [TextPart(_output_text(item.get("output"), f"{w}.output"))],
                               tool_call_id=expect_str(item.get("call_id"), f"{w}.call_id")))
        elif kind == "reasoning":
            texts = [s.get("text", "") for s in optional(item.get("summary"), expect_list, f"{w}.summary") or ()
                     if isinstance(s, dict)]
            texts += [c.get("text", "") for c in optional(item.get("content"), expect_list, f"{w}.content") or ()
                      if isinstance(c, dict)]
            msg = assistant()
            msg.content.append(ReasoningPart("".join(texts), encrypted=item.get("encrypted_content")))
        elif kind in ("mcp_call", "mcp_list_tools"):
            continue  # a server step of an earlier answer (agents): the model needs only its outcome
        else:
            raise BadRequest(f"input item type {kind!r} is not supported", param=f"{w}.type")
    return out


def _tools(raw: Any) -> list[Tool]:
    tools = []
    for i, t in enumerate(optional(raw, expect_list, "tools") or ()):
        t = expect_dict(t, f"tools[{i}]")
        if t.get("type") != "function":
            raise BadRequest(f"tools[{i}].type {t.get('type')!r} is not supported; only function tools are",
                             param=f"tools[{i}].type")
        tools.append(Tool(expect_str(t.get("name"), f"tools[{i}].name"),
                          optional(t.get("description"), expect_str, f"tools[{i}].description"),
                          optional(t.get("parameters"), expect_dict, f"tools[{i}].parameters")
                          or {"type": "object", "properties": {}},
                          t.get("strict") if isinstance(t.get("strict"), bool) else None))
    return tools


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = (optional(text, expect_dict, "text") or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise BadRequest(f"text.format.type {fmt['type']!r} is not supported", param="text.format.type")


def decode_request(body: Any) -> ChatRequest:
    body = expect_dict(body, "body")
    model = expect_str(body.get("model"), "model")
    if not model:
        raise BadRequest("model must not be empty", param="model")
    # previous_response_id is resolved by the route (the stored turns are prepended to ``input``)
    optional(body.get("previous_response_id"), expect_str, "previous_response_id")
    if body.get("conversation") is not None:
        raise BadRequest("conversation is not supported yet", param="conversation", code="unsupported_parameter")
    if optional(body.get("background"), expect_bool, "background") and body.get("store") is False:
        raise BadRequest("background mode needs store: true", param="background")
    optional(body.get("store"), expect_bool, "store")
    optional(body.get("stream"), expect_bool, "stream")
    if "input" not in body:
        raise BadRequest("input is required", param="input")
    messages = _input(body["input"])
    instructions = optional(body.get("instructions"), expect_str, "instructions")
    if instructions:
        messages.insert(0, Message.of("system", instructions))
    if not messages:
        raise BadRequest("input must not be empty", param="input")
    tc = body.get("tool_choice")
    if isinstance(tc, dict):
        if tc.get("type") != "function":
            raise BadRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
        tc = {"name": expect_str(tc.get("name"), "tool_choice.name")}
    elif tc is not None and tc not in ("auto", "none", "required"):
        raise BadRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
    max_tokens = optional(body.get("max_output_tokens"), expect_int, "max_output_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise BadRequest("max_output_tokens must be at least 1", param="max_output_tokens")
    temperature = optional(body.get("temperature"), expect_number, "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise BadRequest("temperature must be between 0 and 2", param="temperature")
    reasoning = optional(body.get("reasoning"), expect_dict, "reasoning") or {}
    return ChatRequest(
        model=model,
        messages=messages,
        tools=_tools(body.get("tools")),
        tool_choice=tc,
        parallel_tool_calls=optional(body.get("parallel_tool_calls"), expect_bool, "parallel_tool_calls"),
        temperature=temperature,
        top_p=optional(body.get("top_p"), expect_fraction, "top_p"),
        max_tokens=max_tokens,
        response_format=_response_format(body.get("text")),
        reasoning_effort=optional(reasoning.get("effort"), expect_str, "reasoning.effort"),
        user=optional(body.get("user") or body.get("safety_identifier"), expect_str, "user"),
        metadata=optional(body.get("metadata"), expect_dict, "metadata") or {},
        extra={k: v for k, v in body.items() if k not in KNOWN},
    )


def wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


# ------------------------------------------------------------------- encoding

class Encoder(ResponseFold):
    """Canonical event batches → Responses SSE bytes, one write per batch.
    ``skip_through`` drops the frames numbered up to it (a reattach with
    ``starting_after``)."""

    def __init__(self, body: dict[str, Any] | None, req: ChatRequest | None, *, ids: IdFactory = new_id,
                 rid: str = "", created: int = 0, shell: ResponseShell | None = None,
                 skip_through: int = -1) -> None:
        assert shell is not None or (body is not None and req is not None)
        super().__init__(shell or ResponseShell(body or {}, req), ids=ids, rid=rid,  # type: ignore[arg-type]
                         created=created)
        self.skip_through = skip_through

    def _ev(self, out: list[bytes], type: str, **fields: Any) -> None:
        if self.n <= self.skip_through:
            self.n += 1
            return
        out.append(b"event: " + type.encode() + b"\ndata: "
                   + orjson.dumps({"type": type, "sequence_number": self.n, **fields}) + b"\n\n")
        self.n += 1


# --------------------------------------------------------------------- errors

def encode_error(err: SluicewayError) -> tuple[int, bytes]:
    kind = "invalid_request_error" if err.status == 404 else error_type(err.status)  # OpenAI's type for 404s
    return err.status, orjson.dumps({"error": {"message": err.message, "type": kind,
                                               "param": err.param, "code": err.code}})


def encode_completion(c: Completion, body: dict[str, Any], req: ChatRequest, *, ids: IdFactory = new_id,
                      rid: str = "") -> bytes:
    """The non-streaming Response object."""
    output: list[dict[str, Any]] = [_reasoning_item(ids("rs"), r.text, r.encrypted) for r in c.reasoning]
    if c.text:
        output.append(_message_item(ids("msg"), "completed", [_text_part(c.text)]))
    results = {r.call_id: r for r in c.tool_results}  # tools the gateway ran (agents), before the answer
    steps: list[dict[str, Any]] = []
    for t in c.tool_calls:
        r = results.get(t.call_id)
        if t.server is None or r is None:
            continue
        if _is_mcp(t.server):
            steps.append(_mcp_done(_mcp_item(ids("mcp"), "completed", t.server, t.name, t.arguments),
                                   r.output, r.is_error))
        else:
            steps += [_call_item(ids("fc"), "completed", t.call_id, t.name, t.arguments),
                      _output_item(ids("fco"), t.call_id, r.output)]
    output[len(c.reasoning):len(c.reasoning)] = steps
    output += [_call_item(ids("fc"), "completed", t.call_id, t.name, t.arguments) for t in c.tool_calls
               if t.server is None or t.call_id not in results]
    incomplete = INCOMPLETE.get(c.finish_reason or "stop")
    rid = rid or (c.response_id if c.response_id.startswith("resp_") else ids("resp"))
    resp = ResponseShell(body, req).build(rid, c.created or int(time.time()),
                                          "incomplete" if incomplete else "completed", output, usage=c.usage,
                                          incomplete=incomplete)
    return orjson.dumps(resp)
