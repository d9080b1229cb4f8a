"""The provider contract (DESIGN.md "Providers")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..core import ChatRequest, Deadlines, Event


@dataclass(slots=True, frozen=True)
class ModelInfo:
    id: str  # the upstream model id
    owned_by: str = ""
    created: int = 0
    context_length: int | None = None


@runtime_checkable
class Provider(Protocol):
    """One configured upstream. ``stream`` yields batches of canonical events,
    one batch per upstream read, and raises typed errors from ``core.errors``
    before its first batch when the upstream refuses. Closing the iterator
    closes the upstream connection (or stops local generation)."""

    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    name: str

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...
