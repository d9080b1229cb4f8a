"""OpenAI Responses: the Response object and its output items, and
``ResponseFold``, which builds that object from canonical events without
encoding a frame (a stored Response is saved from it; the stream's
``Encoder`` in ``openai_responses`` adds the frames)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from ..core import ChatRequest, Event, Usage
from .sequential import Sequencer
from .validate import expect_list

IdFactory = Callable[[str], str]
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


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


def _is_mcp(server: str | None) -> bool:
    """A tool the gateway ran on an MCP server (agents); its own tools are function calls with outputs."""
    return server is not None and server not in ("builtin", "python")


def _mcp_item(item_id: str, status: str, server: str, name: str, args: str) -> dict[str, Any]:
    return {"id": item_id, "type": "mcp_call", "status": status, "server_label": server, "name": name,
            "arguments": args, "output": None, "error": None}


def _mcp_done(item: dict[str, Any], output: str, is_error: bool) -> dict[str, Any]:
    if is_error:
        return {**item, "status": "failed",
                "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": output}]}}
    return {**item, "status": "completed", "output": output}


def _output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call_output", "call_id": call_id, "output": output,
            "status": "completed"}


class _Open:
    """The output item being streamed."""

    __slots__ = ("kind", "index", "id", "parts", "summary", "call_id", "name", "server")

    def __init__(self, kind: str, index: int, item_id: str, call_id: str = "", name: str = "",
                 server: str = "") -> None:
        self.kind, self.index, self.id = kind, index, item_id
        self.parts: list[str] = []
        self.summary = False  # reasoning: summary part opened
        self.call_id, self.name = call_id, name
        self.server = server  # kind "mcp": the MCP server's label


class ResponseFold:
    """Canonical events → the Response object they make, item by item (the
    output items in stream order, their ids, the terminal status), with no
    frames: what a stored Response needs. ``Encoder`` is this plus frames.
    ``rid`` and ``created`` fix the response id and time (a stored response
    keeps its own, whatever the upstream says)."""

    def __init__(self, shell: ResponseShell, *, ids: IdFactory = new_id, rid: str = "", created: int = 0) -> None:
        self.shell = shell
        self.fixed_rid, self.fixed_created = rid, created
        self.ids = ids
        self.seq = Sequencer()
        self.n = 0  # next sequence_number
        self.output: list[dict[str, Any]] = []
        self.open: _Open | None = None
        self.rid = ""
        self.created = 0
        self.final: dict[str, Any] | None = None  # the terminal Response object
        self.done = False
        self._mcp: dict[str, int] = {}  # agents: call id → output index of an mcp_call awaiting its result

    def _ev(self, out: list[bytes], type: str, **fields: Any) -> None:
        """A frame: only counted here (``Encoder`` writes it)."""
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
                if o is not None and o.kind in ("call", "mcp") and o.call_id == ev.call_id:
                    o.parts.append(ev.delta)
                    self._ev(out, _ARGS_DELTA[o.kind], item_id=o.id, output_index=o.index, delta=ev.delta)
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
                self._open_call(out, ev.call_id, ev.name, ev.server)
            elif t == "tool-call":
                if o is None or o.kind not in ("call", "mcp") or o.call_id != ev.call_id:
                    o = self._open_call(out, ev.call_id, ev.name, ev.server)
                sent = "".join(o.parts)
                if ev.arguments != sent and ev.arguments.startswith(sent):
                    rest = ev.arguments[len(sent):]
                    o.parts.append(rest)
                    self._ev(out, _ARGS_DELTA[o.kind], item_id=o.id, output_index=o.index, delta=rest)
                self._close(out, arguments=ev.arguments)
            elif t == "tool-result":
                self._tool_result(out, ev.call_id, ev.output, ev.is_error)
            elif t == "tool-approval-request":
                self._approval(out, ev.approval_id, ev.call_id, ev.name, ev.server)
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

    def _open_call(self, out: list[bytes], call_id: str, name: str, server: str | None = None) -> _Open:
        if _is_mcp(server):
            assert server is not None
            mid = self.ids("mcp")
            return self._added(out, _Open("mcp", 0, mid, call_id, name, server),
                               _mcp_item(mid, "in_progress", server, name, ""))
        fid = self.ids("fc")
        return self._added(out, _Open("call", 0, fid, call_id, name), _call_item(fid, "in_progress", call_id, name, ""))

    def _approval(self, out: list[bytes], approval_id: str, call_id: str, name: str, server: str | None) -> None:
        """An ``mcp_approval_request`` item whose id is answered with
        ``POST /api/agents/approvals/{id}`` (the run waits meanwhile)."""
        self._close(out)
        index = self._mcp.get(call_id)
        args = self.output[index]["arguments"] if index is not None else "{}"
        item = {"id": approval_id, "type": "mcp_approval_request", "server_label": server or "", "name": name,
                "arguments": args}
        index = len(self.output)
        self.output.append(item)
        self._ev(out, "response.output_item.added", output_index=index, item=item)
        self._ev(out, "response.output_item.done", output_index=index, item=item)

    def _tool_result(self, out: list[bytes], call_id: str, output: str, is_error: bool) -> None:
        """A tool the gateway ran (agents): an MCP call's item completes with its
        output; any other tool's result is a ``function_call_output`` item."""
        index = self._mcp.pop(call_id, None)
        if index is not None:
            item = self.output[index] = _mcp_done(self.output[index], output, is_error)
            self._ev(out, "response.mcp_call.failed" if is_error else "response.mcp_call.completed",
                     item_id=item["id"], output_index=index)
            self._ev(out, "response.output_item.done", output_index=index, item=item)
            return
        self._close(out)
        item = _output_item(self.ids("fco"), call_id, output)
        index = len(self.output)
        self.output.append(item)
        self._ev(out, "response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
        self._ev(out, "response.output_item.done", output_index=index, item=item)

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
        elif o.kind == "mcp":  # stays open until the gateway has run it (``_tool_result``)
            args = arguments if arguments is not None else text
            self._ev(out, "response.mcp_call_arguments.done", item_id=o.id, output_index=o.index, arguments=args)
            self.output[o.index] = _mcp_item(o.id, "in_progress", o.server, o.name, args)
            self._ev(out, "response.mcp_call.in_progress", item_id=o.id, output_index=o.index)
            self._mcp[o.call_id] = o.index
            return
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
                else _mcp_item(o.id, "incomplete", o.server, o.name, text) if o.kind == "mcp"
                else _call_item(o.id, "incomplete", o.call_id, o.name, text))



_ARGS_DELTA = {"call": "response.function_call_arguments.delta", "mcp": "response.mcp_call_arguments.delta"}


def _failed_code(status: int, code: str) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    return "server_error" if status >= 500 else code
