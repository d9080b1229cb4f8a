"""A helper every adapter uses to emit a well-formed canonical stream.

Upstream wire formats differ in what they make explicit: Chat Completions
never opens or closes a text block, Anthropic always does. The builder keeps
the block bookkeeping in one place: it opens a block on its first delta,
closes the open block when another kind of content starts, and closes
everything before ``finish``. It also keeps what it emitted so that usage
can be estimated when the upstream reports none: the estimate is made once,
at ``finish`` and only then, rather than per delta on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .events import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    Start,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolInputDelta,
    ToolInputEnd,
    ToolInputStart,
    Usage,
)
from .tokens import estimate_tokens, token_units

FOLD = 64  # pieces of emitted text kept before they are measured together (EventBuilder._fold)


class EventBuilder:
    __slots__ = ("_block", "_kind", "_n", "_out", "_units", "_reasoning", "_reasoning_units", "started", "finished",
                 "tool_calls")

    def __init__(self) -> None:
        self._block: str | None = None  # id of the open text/reasoning block
        self._kind: str | None = None  # "text" | "reasoning"
        self._n = 0
        # text and tool arguments emitted, measured in bulk (``_fold``) for an estimate at the end
        self._out: list[str] = []
        self._units = 0  # token_units of what _out held before
        self._reasoning: list[str] = []
        self._reasoning_units = 0
        self.started = False
        self.finished = False
        self.tool_calls = 0

    def start(self, out: list[Event], response_id: str, model: str, created: int | None = None) -> None:
        if not self.started:
            self.started = True
            out.append(Start(response_id, model, created or int(time.time())))

    def _open(self, out: list[Event], kind: str) -> str:
        if self._kind != kind:
            self.close_block(out)
            self._n += 1
            self._block = f"{kind[0]}{self._n}"
            self._kind = kind
            out.append(TextStart(self._block) if kind == "text" else ReasoningStart(self._block))
        return self._block  # type: ignore[return-value]

    def text(self, out: list[Event], delta: str) -> None:
        if delta:
            pending = self._out
            pending.append(delta)
            if len(pending) >= FOLD:
                self._fold()
            out.append(TextDelta(self._block if self._kind == "text" else self._open(out, "text"), delta))

    def reasoning(self, out: list[Event], delta: str) -> None:
        if delta:
            self._reasoning.append(delta)
            if len(self._reasoning) >= FOLD:
                self._fold()
            out.append(ReasoningDelta(self._open(out, "reasoning"), delta))

    def _fold(self) -> None:
        """Measure the pending pieces at once and let them go: memory stays
        bounded on a long answer, and a delta costs an append, not a scan."""
        self._units += token_units("".join(self._out))
        self._out.clear()
        self._reasoning_units += token_units("".join(self._reasoning))
        self._reasoning.clear()

    @property
    def reasoning_chars(self) -> int:
        """The reasoning emitted, in ``token_units``."""
        self._fold()
        return self._reasoning_units

    @property
    def chars_out(self) -> int:
        """Everything emitted (text, reasoning, tool arguments), in ``token_units``."""
        self._fold()
        return self._units + self._reasoning_units

    def close_block(self, out: list[Event], *, signature: str | None = None,
                    encrypted: str | None = None, redacted: str | None = None) -> None:
        """Close the open text or reasoning block (reasoning may carry a signature)."""
        if self._kind == "text":
            out.append(TextEnd(self._block))  # type: ignore[arg-type]
        elif self._kind == "reasoning":
            out.append(ReasoningEnd(self._block, signature, encrypted, redacted))  # type: ignore[arg-type]
        self._kind = self._block = None

    def end_reasoning(self, out: list[Event], *, signature: str | None = None,
                      encrypted: str | None = None, redacted: str | None = None) -> None:
        """Close the reasoning block with its signature. A signature with no
        reasoning text before it (thinking display omitted) still becomes an
        empty reasoning block, so it can be echoed back on the next turn."""
        if self._kind != "reasoning" and (signature or encrypted or redacted):
            self._open(out, "reasoning")
        self.close_block(out, signature=signature, encrypted=encrypted, redacted=redacted)

    def redacted_reasoning(self, out: list[Event], data: str) -> None:
        self.close_block(out)
        self._n += 1
        bid = f"r{self._n}"
        out.append(ReasoningStart(bid))
        out.append(ReasoningEnd(bid, redacted=data))

    def tool_start(self, out: list[Event], call_id: str, name: str) -> None:
        self.close_block(out)
        self.tool_calls += 1
        out.append(ToolInputStart(call_id, name))

    def tool_delta(self, out: list[Event], call_id: str, delta: str) -> None:
        if delta:
            self._out.append(delta)
            if len(self._out) >= FOLD:
                self._fold()
            out.append(ToolInputDelta(call_id, delta))

    def tool_end(self, out: list[Event], call_id: str, name: str, arguments: str) -> None:
        out.append(ToolInputEnd(call_id))
        out.append(ToolCall(call_id, name, arguments or "{}"))

    def tool_call(self, out: list[Event], call_id: str, name: str, arguments: str) -> None:
        """A call that arrives whole (Gemini, Ollama): synthesise start/delta/end."""
        self.tool_start(out, call_id, name)
        self.tool_delta(out, call_id, arguments)
        self.tool_end(out, call_id, name, arguments)

    def finish(self, out: list[Event], reason: FinishReason, usage: Usage | None, *,
               raw_reason: str | None = None, prompt_chars: int | Callable[[], int] = 0) -> None:
        """Close open blocks and emit ``finish``; estimates usage when the upstream gave none."""
        if self.finished:
            return
        self.close_block(out)
        if usage is None:
            usage = Usage(estimate_tokens(prompt_chars() if callable(prompt_chars) else prompt_chars),
                          estimate_tokens(self.chars_out), estimated=True,
                          reasoning=estimate_tokens(self.reasoning_chars))
        elif not usage.reasoning and (self._reasoning or self._reasoning_units):
            # Anthropic and Ollama count thinking inside output tokens without a split: estimate
            # the split (marked) rather than report a false 0
            reasoning = estimate_tokens(self.reasoning_chars)
            usage = Usage(usage.input, usage.output, usage.cached_input,
                          min(usage.output, reasoning) if usage.output else reasoning, True)
        if reason == "stop" and self.tool_calls:
            reason = "tool_calls"
        self.finished = True
        out.append(Finish(reason, usage, raw_reason))
