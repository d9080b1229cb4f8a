"""The canonical chat request: what every protocol decodes into and every
provider converts from. Plain dataclasses; not on the per-chunk hot path."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, Literal

from .wire import WireTrace

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image by URL: ``https://…`` or a ``data:<media>;base64,…`` URL."""

    url: str
    media_type: str | None = None
    detail: str | None = None
    type: Literal["image"] = "image"

    def data(self) -> tuple[str, str] | None:
        """(media_type, base64 data) for a data URL, else None."""
        if not self.url.startswith("data:"):
            return None
        head, _, b64 = self.url.partition(",")
        media = head[5:].split(";", 1)[0] or "application/octet-stream"
        return media, b64


@dataclass(slots=True)
class FilePart:
    """A document (e.g. PDF) given as a URL or data URL."""

    url: str
    media_type: str | None = None
    filename: str | None = None
    type: Literal["file"] = "file"


@dataclass(slots=True)
class ReasoningPart:
    """Reasoning from an earlier assistant turn; echoed back for vendors that
    need their signature/encrypted content on the next request."""

    text: str
    signature: str | None = None
    encrypted: str | None = None
    redacted: str | None = None
    type: Literal["reasoning"] = "reasoning"


Part = TextPart | ImagePart | FilePart | ReasoningPart


@dataclass(slots=True)
class ToolCallPart:
    call_id: str
    name: str
    arguments: str  # JSON text
    type: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)
    tool_calls: list[ToolCallPart] = field(default_factory=list)
    tool_call_id: str | None = None  # role == "tool"
    name: str | None = None
    is_error: bool = False  # role == "tool": the tool failed

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @classmethod
    def of(cls, role: Role, text: str) -> Message:
        return cls(role=role, content=[TextPart(text)])


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


# "auto" | "none" | "required" | {"name": "..."} (a specific tool)
ToolChoice = str | dict[str, str]


@dataclass(slots=True)
class Deadlines:
    """Timeouts in seconds (None = no limit): connect, first token,
    idle gap between chunks, and the whole generation."""

    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = 900.0


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    response_format: dict[str, Any] | None = None  # {"type": "json_object"} / {"type": "json_schema", ...}
    reasoning_effort: str | None = None
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # vendor parameters passed through untouched (OpenAI-style ``extra_body``)
    extra: dict[str, Any] = field(default_factory=dict)
    # records the raw upstream exchange for a debug trace (see core/wire.py); never sent anywhere
    wire: WireTrace | None = field(default=None, repr=False, compare=False)

    @property
    def system(self) -> str:
        """All system messages joined, for vendors that take one system prompt."""
        return "\n\n".join(m.text for m in self.messages if m.role == "system")

    def with_model(self, model: str) -> ChatRequest:
        """A copy naming another model: ``dataclasses.replace(req, model=…)``
        without its per-call field scan (done twice on every request)."""
        new = ChatRequest(*_values(self))
        new.model = model
        return new


_values = attrgetter(*(f.name for f in fields(ChatRequest)))
