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
from .openai_chat import error_type
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

IdFactory = Callable[[str], str]
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
KNOWN = {"model", "input", "instructions", "stream", "stream_options", "tools", "tool_choice",
         "parallel_tool_calls", "max_output_tokens", "reasoning", "include", "previous_response_id",
         "conversation", "store", "background", "text", "truncation", "metadata", "service_tier",
         "temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "max_tool_calls",
         "top_logprobs", "prompt"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


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

def usage_obj(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input, "input_tokens_details": {"cached_tokens": u.cached_input},
            "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": u.reasoning},
            "total_tokens": u.total}


class ResponseShell:
    """The ``Response`` object's fields that echo the request; built once per request."""

    def __init__(self, body: dict[str, Any], req: ChatRequest) -> None:
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        self.tail = {
            "instructions": body.get("instructions"),
            "max_output_tokens": req.max_tokens,
            "model": req.model,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "store": body.get("store") is not False,
            "temperature": req.temperature if req.temperature is not None else 1.0,
            "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": req.top_p if req.top_p is not None else 1.0,
            "truncation": body.get("truncation") or "disabled",
            "background": body.get("background") is True,
            "user": req.user,
            "metadata": req.metadata,
        }

    @classmethod
    def from_response(cls, resp: dict[str, Any]) -> ResponseShell:
        """The shell of a stored Response object (to replay its stream)."""
        shell = cls.__new__(cls)
        shell.tail = {k: v for k, v in resp.items() if k not in _BUILT}
        return shell

    def build(self, rid: str, created: int, status: str, output: list[dict[str, Any]], *,
              usage: Usage | None = None, error: dict[str, Any] | None = None,
              incomplete: str | None = None) -> dict[str, Any]:
        return {"id": rid, "object": "response", "created_at": created, "status": status,
                "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
                "output": output, "usage": usage_obj(usage) if usage is not None else None, **self.tail}


_BUILT = frozenset({"id", "object", "created_at", "status", "error", "incomplete_details", "output", "usage"})


def continued_input(previous_input: list[Any], previous_output: list[Any], input: Any) -> list[Any]:
    """``previous_response_id``: the earlier response's input and output items, then this request's input."""
    new = [{"type": "message", "role": "user", "content": input}] if isinstance(input, str) else input
    return [*previous_input, *previous_output, *expect_list(new, "input")]


def stable_ids(rid: str) -> IdFactory:
    """Ids derived from the response id and a counter, so that replaying the
    same events (a reattach, the recorder's own encoder) names every item the
    same way."""
    counter = iter(range(1 << 62))
    tail = rid.removeprefix("resp_")
    return lambda prefix: rid if prefix == "resp" else f"{prefix}_{tail}{next(counter):04d}"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _reasoning_item(item_id: str, text: str | None, encrypted: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if encrypted:
        item["encrypted_content"] = encrypted
    return item


def _call_item(item_id: str, status: str, call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": args, "call_id": call_id,
            "name": name}


class _Open:
    """The output item being streamed."""

    __slots__ = ("kind", "index", "id", "parts", "summary", "call_id", "name")

    def __init__(self, kind: str, index: int, item_id: str, call_id: str = "", name: str = "") -> None:
        self.kind, self.index, self.id = kind, index, item_id
        self.parts: list[str] = []
        self.summary = False  # reasoning: summary part opened
        self.call_id, self.name = call_id, name


class Encoder:
    """Canonical event batches → Responses SSE bytes, one write per batch."""

    def __init__(self, body: dict[str, Any] | None, req: ChatRequest | None, *, ids: IdFactory = new_id,
                 rid: str = "", created: int = 0, shell: ResponseShell | None = None,
                 skip_through: int = -1) -> None:
        """``rid`` and ``created`` fix the response id and time (a stored response
        keeps its own, whatever the upstream says); ``skip_through`` drops the frames numbered up to
        it (a reattach with ``starting_after``)."""
        assert shell is not None or (body is not None and req is not None)
        self.shell = shell or ResponseShell(body or {}, req)  # type: ignore[arg-type]
        self.fixed_rid, self.fixed_created = rid, created
        self.skip_through = skip_through
        self.ids = ids
        self.seq = Sequencer()
        self.n = 0  # next sequence_number
        self.output: list[dict[str, Any]] = []
        self.open: _Open | None = None
        self.rid = ""
        self.created = 0
        self.final: dict[str, Any] | None = None  # the terminal Response object
        self.done = False

    # frames
    def _ev(self, out: list[bytes], type: str, **fields: Any) -> None:
        if self.n <= self.skip_through:
            self.n += 1
            return
        out.append(b"event: " + type.encode() + b"\ndata: "
                   + orjson.dumps({"type": type, "sequence_number": self.n, **fields}) + b"\n\n")
        self.n += 1

    def feed(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in self.seq.feed(events):
            t = ev.type
            if not self.rid and t != "abort":
                self._start(out, ev.response_id if t == "start" else "", ev.created if t == "start" else 0)
            o = self.open
            if t == "text-delta":
                if o is None or o.kind != "text":
                    o = self._open_text(out)
                o.parts.append(ev.delta)
                self._ev(out, "response.output_text.delta", item_id=o.id, output_index=o.index, content_index=0,
                         delta=ev.delta, logprobs=[])
            elif t == "reasoning-delta":
                if o is None or o.kind != "reasoning":
                    o = self._open_reasoning(out)
                if not o.summary:
                    o.summary = True
                    self._ev(out, "response.reasoning_summary_part.added", item_id=o.id, output_index=o.index,
                             summary_index=0, part={"type": "summary_text", "text": ""})
                o.parts.append(ev.delta)
                self._ev(out, "response.reasoning_summary_text.delta", item_id=o.id, output_index=o.index,
                         summary_index=0, delta=ev.delta)
            elif t == "tool-input-delta":
                if o is not None and o.kind == "call" and o.call_id == ev.call_id:
                    o.parts.append(ev.delta)
                    self._ev(out, "response.function_call_arguments.delta", item_id=o.id, output_index=o.index,
                             delta=ev.delta)
            elif t == "text-start":
                self._open_text(out)
            elif t == "text-end":
                if o is not None and o.kind == "text":
                    self._close(out)
            elif t == "reasoning-end":
                if o is not None and o.kind == "reasoning":
                    self._close(out, encrypted=ev.encrypted)
            elif t == "reasoning-start":
                self._open_reasoning(out)
            elif t == "tool-input-start":
                self._open_call(out, ev.call_id, ev.name)
            elif t == "tool-call":
                if o is None or o.kind != "call" or o.call_id != ev.call_id:
                    o = self._open_call(out, ev.call_id, ev.name)
                sent = "".join(o.parts)
                if ev.arguments != sent and ev.arguments.startswith(sent):
                    rest = ev.arguments[len(sent):]
                    o.parts.append(rest)
                    self._ev(out, "response.function_call_arguments.delta", item_id=o.id, output_index=o.index,
                             delta=rest)
                self._close(out, arguments=ev.arguments)
            elif t == "finish":
                self._finish(out, ev.reason, ev.usage)
            elif t == "error":
                self._fail(out, ev.code, ev.message, ev.status)
            elif t == "abort":
                self.done = True
        return b"".join(out)

    def _start(self, out: list[bytes], response_id: str, created: int) -> None:
        self.rid = self.fixed_rid or (response_id if response_id.startswith("resp_") else self.ids("resp"))
        self.created = self.fixed_created or created or int(time.time())
        resp = self.shell.build(self.rid, self.created, "in_progress", [])
        self._ev(out, "response.created", response=resp)
        self._ev(out, "response.in_progress", response=resp)

    def _added(self, out: list[bytes], o: _Open, item: dict[str, Any]) -> _Open:
        self._close(out)
        o.index = len(self.output)
        self.output.append(item)
        self.open = o
        self._ev(out, "response.output_item.added", output_index=o.index, item=item)
        return o

    def _open_text(self, out: list[bytes]) -> _Open:
        mid = self.ids("msg")
        o = self._added(out, _Open("text", 0, mid), _message_item(mid, "in_progress", []))
        self._ev(out, "response.content_part.added", item_id=o.id, output_index=o.index, content_index=0,
                 part=_text_part(""))
        return o

    def _open_reasoning(self, out: list[bytes]) -> _Open:
        rid = self.ids("rs")
        return self._added(out, _Open("reasoning", 0, rid), {"id": rid, "type": "reasoning", "summary": []})

    def _open_call(self, out: list[bytes], call_id: str, name: str) -> _Open:
        fid = self.ids("fc")
        return self._added(out, _Open("call", 0, fid, call_id, name), _call_item(fid, "in_progress", call_id, name, ""))

    def _close(self, out: list[bytes], *, encrypted: str | None = None, arguments: str | None = None) -> None:
        o = self.open
        if o is None:
            return
        self.open = None
        text = "".join(o.parts)
        if o.kind == "text":
            part = _text_part(text)
            self._ev(out, "response.output_text.done", item_id=o.id, output_index=o.index, content_index=0,
                     text=text, logprobs=[])
            self._ev(out, "response.content_part.done", item_id=o.id, output_index=o.index, content_index=0,
                     part=part)
            item = _message_item(o.id, "completed", [part])
        elif o.kind == "reasoning":
            if o.summary:
                self._ev(out, "response.reasoning_summary_text.done", item_id=o.id, output_index=o.index,
                         summary_index=0, text=text)
                self._ev(out, "response.reasoning_summary_part.done", item_id=o.id, output_index=o.index,
                         summary_index=0, part={"type": "summary_text", "text": text})
            item = _reasoning_item(o.id, text, encrypted)
        else:
            args = arguments if arguments is not None else text
            self._ev(out, "response.function_call_arguments.done", item_id=o.id, output_index=o.index,
                     arguments=args, name=o.name)
            item = _call_item(o.id, "completed", o.call_id, o.name, args)
        self.output[o.index] = item
        self._ev(out, "response.output_item.done", output_index=o.index, item=item)

    def _finish(self, out: list[bytes], reason: str, usage: Usage) -> None:
        self._close(out)
        incomplete = INCOMPLETE.get(reason)
        status = "incomplete" if incomplete else "completed"
        self.final = self.shell.build(self.rid, self.created, status, self.output, usage=usage,
                                      incomplete=incomplete)
        self._ev(out, f"response.{status}", response=self.final)
        self.done = True

    def _fail(self, out: list[bytes], code: str, message: str, status: int) -> None:
        self._keep_open_item()  # what was streamed of the open item, marked incomplete
        self._ev(out, "error", code=code, message=message, param=None)
        self.final = self.shell.build(self.rid, self.created, "failed", self.output,
                                      error={"code": _failed_code(status, code), "message": message})
        self._ev(out, "response.failed", response=self.final)
        self.done = True


    def result(self) -> dict[str, Any]:
        """The Response object as it stands: the final one, or cancelled."""
        return self.final or self.cancelled()

    def cancelled(self) -> dict[str, Any]:
        """The Response object of a run stopped before its end (no terminal
        event was sent): what was streamed, the open item marked incomplete."""
        self._keep_open_item()
        return self.shell.build(self.rid or self.fixed_rid or self.ids("resp"), self.created or int(time.time()),
                                "cancelled", self.output)

    def _keep_open_item(self) -> None:
        o, self.open = self.open, None
        if o is not None:
            text = "".join(o.parts)
            self.output[o.index] = (
                _message_item(o.id, "incomplete", [_text_part(text)]) if o.kind == "text"
                else _reasoning_item(o.id, text) if o.kind == "reasoning"
                else _call_item(o.id, "incomplete", o.call_id, o.name, text))


def _failed_code(status: int, code: str) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    return "server_error" if status >= 500 else code


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
    output += [_call_item(ids("fc"), "completed", t.call_id, t.name, t.arguments) for t in c.tool_calls]
    incomplete = INCOMPLETE.get(c.finish_reason or "stop")
    rid = rid or (c.response_id if c.response_id.startswith("resp_") else ids("resp"))
    resp = ResponseShell(body, req).build(rid, c.created or int(time.time()),
                                          "incomplete" if incomplete else "completed", output, usage=c.usage,
                                          incomplete=incomplete)
    return orjson.dumps(resp)
