"""The canonical event stream (protocols.md §8.1).

Every provider adapter produces these and every protocol encoder consumes
them. They are small frozen slotted dataclasses; each class carries its wire
name in the ``type`` class attribute so encoders can dispatch on a string.

Providers yield events in *batches* (``list[Event]``): one batch per upstream
read, so the server can encode a batch and hand it to the client as one write.

Events are immutable by convention, not ``frozen=True``: a frozen dataclass
sets every field through ``object.__setattr__``, which made constructing a
text delta ~2.5x slower on the hottest line of the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]


@dataclass(slots=True)
class Usage:
    """Token counts. ``input`` includes ``cached_input``; ``output`` includes ``reasoning``."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    reasoning: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.input + self.output

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cached_input + other.cached_input,
            self.reasoning + other.reasoning,
            self.estimated or other.estimated,
        )


@dataclass(slots=True)
class Start:
    type: ClassVar[str] = "start"
    response_id: str
    model: str
    created: int


@dataclass(slots=True)
class TextStart:
    type: ClassVar[str] = "text-start"
    block_id: str


@dataclass(slots=True)
class TextDelta:
    type: ClassVar[str] = "text-delta"
    block_id: str
    delta: str


@dataclass(slots=True)
class TextEnd:
    type: ClassVar[str] = "text-end"
    block_id: str


@dataclass(slots=True)
class ReasoningStart:
    type: ClassVar[str] = "reasoning-start"
    block_id: str


@dataclass(slots=True)
class ReasoningDelta:
    type: ClassVar[str] = "reasoning-delta"
    block_id: str
    delta: str


@dataclass(slots=True)
class ReasoningEnd:
    """End of a reasoning block. ``signature`` (Anthropic, Gemini) and
    ``encrypted`` (OpenAI Responses) must be echoed back on the next turn;
    ``redacted`` carries an opaque redacted-thinking payload."""

    type: ClassVar[str] = "reasoning-end"
    block_id: str
    signature: str | None = None
    encrypted: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class ToolInputStart:
    type: ClassVar[str] = "tool-input-start"
    call_id: str
    name: str
    server: str | None = None  # who runs it when the gateway does (agents): "builtin", "python", an MCP server


@dataclass(slots=True)
class ToolInputDelta:
    type: ClassVar[str] = "tool-input-delta"
    call_id: str
    delta: str


@dataclass(slots=True)
class ToolInputEnd:
    type: ClassVar[str] = "tool-input-end"
    call_id: str


@dataclass(slots=True)
class ToolCall:
    """A complete tool call; ``arguments`` is the full JSON text."""

    type: ClassVar[str] = "tool-call"
    call_id: str
    name: str
    arguments: str
    server: str | None = None  # as on ToolInputStart


@dataclass(slots=True)
class ToolResult:
    """Result of a tool the gateway itself executed (agent loop)."""

    type: ClassVar[str] = "tool-result"
    call_id: str
    name: str
    output: str
    is_error: bool = False
    server: str | None = None  # as on ToolInputStart
    elapsed: float | None = None  # seconds the tool ran


@dataclass(slots=True)
class StepFinish:
    type: ClassVar[str] = "finish-step"
    reason: FinishReason
    usage: Usage


@dataclass(slots=True)
class Finish:
    type: ClassVar[str] = "finish"
    reason: FinishReason
    usage: Usage
    raw_reason: str | None = None


@dataclass(slots=True)
class Error:
    """Terminal error. ``status`` is the HTTP status the error would have had
    before the stream started; encoders use ``code`` and ``message``."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool = False
    status: int = 500


@dataclass(slots=True)
class ToolApprovalRequest:
    """An agent waits for a person to approve a tool call before running it
    (answered through the server's approval endpoint with ``approval_id``)."""

    type: ClassVar[str] = "tool-approval-request"
    approval_id: str
    call_id: str
    name: str
    server: str | None = None


@dataclass(slots=True)
class Abort:
    type: ClassVar[str] = "abort"
    reason: str = "cancelled"


Event = (
    Start
    | TextStart
    | TextDelta
    | TextEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolInputStart
    | ToolInputDelta
    | ToolInputEnd
    | ToolCall
    | ToolResult
    | StepFinish
    | Finish
    | Error
    | ToolApprovalRequest
    | Abort
)

TERMINAL_TYPES = frozenset({"finish", "error", "abort"})
