"""Fold an event stream into one complete result.

``Accumulator`` is a pure state machine (events in, snapshot out): the
non-streaming endpoints, the recorder and the tests all use it, so no adapter
implements a non-streaming path of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field

from .errors import SluicewayError, from_event
from .events import Event, FinishReason, Usage


@dataclass(slots=True)
class ReasoningBlock:
    text: str = ""
    signature: str | None = None
    encrypted: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class CompletedCall:
    call_id: str
    name: str
    arguments: str
    server: str | None = None  # the gateway ran it (agents): not a call for the client


@dataclass(slots=True)
class CompletedResult:
    """The result of a tool the gateway ran (agents)."""

    call_id: str
    name: str
    output: str
    is_error: bool = False
    server: str | None = None


@dataclass(slots=True)
class Completion:
    response_id: str = ""
    model: str = ""
    created: int = 0
    text: str = ""
    reasoning: list[ReasoningBlock] = field(default_factory=list)
    tool_calls: list[CompletedCall] = field(default_factory=list)
    tool_results: list[CompletedResult] = field(default_factory=list)  # server tools' results, in order
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: SluicewayError | None = None
    aborted: bool = False

    @property
    def reasoning_text(self) -> str:
        return "".join(b.text for b in self.reasoning)


class Accumulator:
    __slots__ = ("c", "_text", "_open_reasoning")

    def __init__(self) -> None:
        self.c = Completion()
        self._text: list[str] = []
        self._open_reasoning: ReasoningBlock | None = None

    def feed(self, events: Iterable[Event]) -> None:
        c = self.c
        for ev in events:
            t = ev.type
            if t == "text-delta":
                self._text.append(ev.delta)
            elif t == "reasoning-start":
                self._open_reasoning = ReasoningBlock()
                c.reasoning.append(self._open_reasoning)
            elif t == "reasoning-delta":
                if self._open_reasoning is None:
                    self._open_reasoning = ReasoningBlock()
                    c.reasoning.append(self._open_reasoning)
                self._open_reasoning.text += ev.delta
            elif t == "reasoning-end":
                if self._open_reasoning is not None:
                    self._open_reasoning.signature = ev.signature
                    self._open_reasoning.encrypted = ev.encrypted
                    self._open_reasoning.redacted = ev.redacted
                self._open_reasoning = None
            elif t == "tool-call":
                c.tool_calls.append(CompletedCall(ev.call_id, ev.name, ev.arguments, ev.server))
            elif t == "tool-result":
                c.tool_results.append(CompletedResult(ev.call_id, ev.name, ev.output, ev.is_error, ev.server))
            elif t == "start":
                c.response_id, c.model, c.created = ev.response_id, ev.model, ev.created
            elif t == "finish-step":
                c.usage = ev.usage
            elif t == "finish":
                c.finish_reason, c.raw_finish_reason, c.usage = ev.reason, ev.raw_reason, ev.usage
            elif t == "error":
                c.error = from_event(ev)
                c.finish_reason = "error"
            elif t == "abort":
                c.aborted = True

    def result(self) -> Completion:
        self.c.text = "".join(self._text)
        return self.c


async def fold(batches: AsyncIterable[list[Event]]) -> Completion:
    acc = Accumulator()
    async for batch in batches:
        acc.feed(batch)
    return acc.result()
