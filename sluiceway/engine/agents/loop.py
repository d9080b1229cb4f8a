"""The agent loop as an event-stream transformer over any model.

Each step streams the model's events through (block ids renamed per step, so
encoders never see an id twice). When a step ends with calls to server tools,
they run in parallel, each under a timeout, and every result is streamed as a
``tool-result`` as soon as it is there; a step that ran tools ends with
``finish-step`` (reason ``tool_calls``, the step's usage) and the model is
called again with the results, up to ``max_steps``. The final ``finish``
carries the usage summed over the steps. A tool that fails or times out is a
``tool-result`` with ``is_error`` fed back to the model; it never breaks the
stream. Calls to client tools (the request's own ``tools``) are streamed out
and end the run with ``tool_calls``, as without an agent, after the server
tools of the same step have run.

Closing the stream closes the model call and cancels the running tools.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from ...core import (
    ChatRequest,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningPart,
    ReasoningStart,
    Start,
    StepFinish,
    TextDelta,
    TextEnd,
    TextPart,
    TextStart,
    Timeout,
    ToolCall,
    ToolCallPart,
    ToolInputDelta,
    ToolInputEnd,
    ToolInputStart,
    ToolResult,
    Usage,
)
from ...core.events import ToolApprovalRequest
from .tools import ServerTool, output_text

log = logging.getLogger("sluiceway.agents")

MAX_OUTPUT_CHARS = 100_000  # a tool result fed back to the model is cut here


class StepStream(Protocol):
    def batches(self) -> AsyncIterator[list[Event]]: ...

    async def aclose(self) -> None: ...


OpenStep = Callable[[ChatRequest, float | None], Awaitable[StepStream]]


@dataclass(slots=True)
class _Step:
    """What one model step said, to append to the conversation."""

    index: int
    text: list[str] = field(default_factory=list)
    reasoning: list[ReasoningPart] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    reason: str = "stop"
    raw_reason: str | None = None

    def message(self) -> Message:
        content: list[Any] = [*self.reasoning]
        text = "".join(self.text)
        if text:
            content.append(TextPart(text))
        return Message("assistant", content,
                       tool_calls=[ToolCallPart(c.call_id, c.name, c.arguments) for c in self.calls])


_TOOL_EVENTS = frozenset({"tool-input-start", "tool-input-delta", "tool-input-end", "tool-call"})
_RENAMED = {"text-start": TextStart, "text-end": TextEnd, "reasoning-start": ReasoningStart}


def _rename(ev: Event, step: int) -> Event:
    """The event with its block id made unique to the step (steps after the first)."""
    t = ev.type
    if t == "text-delta":
        return TextDelta(f"{ev.block_id}.s{step}", ev.delta)
    if t == "reasoning-delta":
        return ReasoningDelta(f"{ev.block_id}.s{step}", ev.delta)
    if t == "reasoning-end":
        return ReasoningEnd(f"{ev.block_id}.s{step}", ev.signature, ev.encrypted, ev.redacted)
    cls = _RENAMED.get(t)
    return cls(f"{ev.block_id}.s{step}") if cls is not None else ev


def _recall(ev: Event, call_id: str) -> Event:
    """A tool event with another call id (a model that reuses ids across steps)."""
    t = ev.type
    if t == "tool-input-start":
        return ToolInputStart(call_id, ev.name, ev.server)
    if t == "tool-input-delta":
        return ToolInputDelta(call_id, ev.delta)
    if t == "tool-input-end":
        return ToolInputEnd(call_id)
    return ToolCall(call_id, ev.name, ev.arguments, ev.server)


class Approvals:
    """Tool calls waiting for a person's decision, by approval id (this process only)."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
        self._about: dict[str, dict[str, Any]] = {}  # what each waits for, for GET /api/agents/approvals

    def open(self, **about: Any) -> tuple[str, asyncio.Future[tuple[bool, str | None]]]:
        approval_id = f"apr_{uuid.uuid4().hex}"
        fut = self._pending[approval_id] = asyncio.get_running_loop().create_future()
        self._about[approval_id] = {"approval_id": approval_id, **about}
        return approval_id, fut

    def pending(self) -> list[dict[str, Any]]:
        return [self._about[a] for a, fut in self._pending.items() if not fut.done()]

    def decide(self, approval_id: str, approved: bool, reason: str | None = None) -> bool:
        fut = self._pending.get(approval_id)
        if fut is None or fut.done():
            return False
        fut.set_result((approved, reason))
        return True

    def drop(self, approval_id: str) -> None:
        self._pending.pop(approval_id, None)
        self._about.pop(approval_id, None)


@dataclass(slots=True)
class Gate:
    """Which calls need approval, where decisions arrive, and how long to wait."""

    needs: Callable[[str], bool]
    approvals: Approvals
    timeout: float = 300.0
    label: str = ""  # the agent, for listings


async def run_agent(req: ChatRequest, tools: dict[str, ServerTool], open_step: OpenStep, *, label: str,
                    max_steps: int, tool_timeout: float, deadline: float | None,
                    gate: Gate | None = None) -> AsyncIterator[list[Event]]:
    """Stream an agent run. ``open_step(request, seconds_left)`` opens one model
    step (routing, fallbacks and deadlines are the caller's). Calls ``gate``
    says need approval wait for it (a ``tool-approval-request`` is streamed)."""
    t_end = time.monotonic() + deadline if deadline else None
    messages = list(req.messages)
    total = Usage()
    started = False
    seen_calls: set[str] = set()  # call ids of earlier steps: encoders key tool parts on them
    for index in range(max_steps):
        left = None if t_end is None else t_end - time.monotonic()
        if left is not None and left <= 0:
            raise Timeout(f"{label}: the agent's deadline passed after {index} steps", code="agent_deadline")
        step_req = replace(req, messages=messages, tool_choice=req.tool_choice if index == 0 else None)
        stream = await open_step(step_req, left)
        step = _Step(index)
        try:
            async for batch in stream.batches():
                out: list[Event] = []
                for ev in batch:
                    t = ev.type
                    if t == "start":
                        if not started:
                            started = True
                            out.append(Start(ev.response_id, label, ev.created))
                        continue
                    if t == "finish":
                        step.usage, step.reason, step.raw_reason = ev.usage, ev.reason, ev.raw_reason
                        continue
                    if t == "finish-step":
                        continue
                    if t in ("error", "abort"):
                        out.append(ev)
                        yield out
                        return
                    if index:
                        ev = _rename(ev, index)
                        if t in _TOOL_EVENTS and ev.call_id in seen_calls:
                            ev = _recall(ev, f"{ev.call_id}.s{index}")
                    if t == "text-delta":
                        step.text.append(ev.delta)
                    elif t == "reasoning-start":
                        step.reasoning.append(ReasoningPart(""))
                    elif t == "reasoning-delta":
                        if not step.reasoning:
                            step.reasoning.append(ReasoningPart(""))
                        step.reasoning[-1].text += ev.delta
                    elif t == "reasoning-end" and step.reasoning:
                        r = step.reasoning[-1]
                        r.signature, r.encrypted, r.redacted = ev.signature, ev.encrypted, ev.redacted
                    elif t == "tool-input-start" and ev.name in tools:
                        ev = ToolInputStart(ev.call_id, ev.name, tools[ev.name].source)
                    elif t == "tool-call":
                        if ev.name in tools:
                            ev = ToolCall(ev.call_id, ev.name, ev.arguments, tools[ev.name].source)
                        step.calls.append(ev)
                    out.append(ev)
                if out:
                    yield out
        finally:
            await stream.aclose()
        total = total + step.usage
        seen_calls.update(c.call_id for c in step.calls)
        server_calls = [c for c in step.calls if c.name in tools]
        if not server_calls:
            yield [Finish(step.reason, total, step.raw_reason)]  # type: ignore[arg-type]
            return
        results: dict[str, ToolResult] = {}
        runnable = server_calls
        if gate is not None and any(gate.needs(c.name) for c in server_calls):
            denied: list[ToolResult] = []
            async for batch in _ask(server_calls, tools, gate, denied):
                yield batch
            for res in denied:
                results[res.call_id] = res
                yield [res]
            runnable = [c for c in server_calls if c.call_id not in results]
        async for res in _run_tools(runnable, tools, tool_timeout, t_end):
            results[res.call_id] = res
            yield [res]
        yield [StepFinish("tool_calls", step.usage)]
        if len(server_calls) < len(step.calls):  # the client runs the rest and comes back
            yield [Finish("tool_calls", total, step.raw_reason)]
            return
        messages = [*messages, step.message(),
                    *(_tool_message(results[c.call_id]) for c in server_calls)]
    yield [Finish("tool_calls", total, "max_steps")]


async def _ask(calls: list[ToolCall], tools: dict[str, ServerTool], gate: Gate,
               denied: list[ToolResult]) -> AsyncIterator[list[Event]]:
    """Stream an approval request for each gated call, then wait for the
    decisions (all within ``gate.timeout``); denials land in ``denied``."""
    waits: list[tuple[ToolCall, str, asyncio.Future[tuple[bool, str | None]]]] = []
    for c in calls:
        if gate.needs(c.name):
            approval_id, fut = gate.approvals.open(model=gate.label, call_id=c.call_id, name=c.name,
                                                   arguments=c.arguments, server=tools[c.name].source)
            waits.append((c, approval_id, fut))
    try:
        yield [ToolApprovalRequest(aid, c.call_id, c.name, tools[c.name].source) for c, aid, _ in waits]
        t_end = time.monotonic() + gate.timeout
        for c, _, fut in waits:
            try:
                approved, reason = await asyncio.wait_for(asyncio.shield(fut), max(0.0, t_end - time.monotonic()))
            except TimeoutError:
                approved, reason = False, f"no decision within {gate.timeout:g} s"
            if not approved:
                why = f": {reason}" if reason else ""
                denied.append(ToolResult(c.call_id, c.name, f"the user did not approve this call{why}", True,
                                         tools[c.name].source, 0.0))
    finally:
        for _, aid, _ in waits:
            gate.approvals.drop(aid)


def _tool_message(res: ToolResult) -> Message:
    text = res.output if len(res.output) <= MAX_OUTPUT_CHARS else res.output[:MAX_OUTPUT_CHARS] + "\n[truncated]"
    return Message("tool", [TextPart(text)], tool_call_id=res.call_id, name=res.name, is_error=res.is_error)


async def _run_tools(calls: list[ToolCall], tools: dict[str, ServerTool], per_tool: float,
                     t_end: float | None) -> AsyncIterator[ToolResult]:
    """Run the calls concurrently; yield each result as it completes. Leaving
    early (the client went away) cancels the ones still running."""
    if t_end is not None:
        per_tool = max(0.0, min(per_tool, t_end - time.monotonic()))
    tasks = [asyncio.create_task(_run_one(c, tools[c.name], per_tool), name=f"tool-{c.name}") for c in calls]
    try:
        pending: set[asyncio.Task[ToolResult]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=tasks.index):
                yield task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run_one(call: ToolCall, tool: ServerTool, limit: float) -> ToolResult:
    t0 = time.monotonic()

    def result(output: str, is_error: bool = False) -> ToolResult:
        return ToolResult(call.call_id, call.name, output, is_error, tool.source, round(time.monotonic() - t0, 3))

    try:
        arguments = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError as e:
        return result(f"the arguments are not valid JSON: {e}", True)
    if not isinstance(arguments, dict):
        return result("the arguments must be a JSON object", True)
    try:
        async with asyncio.timeout(limit):
            value = await tool.run(arguments)
        return result(output_text(value))
    except TimeoutError:
        return result(f"the tool {call.name!r} timed out after {limit:g} s", True)
    except Exception as e:  # any failure is the model's to handle, never a broken stream
        log.info("tool %s failed: %r", call.name, e)
        msg = str(e) or type(e).__name__
        return result(f"{type(e).__name__}: {msg}" if not isinstance(e, ValueError) else msg, True)
