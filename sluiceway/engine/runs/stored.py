"""Stored Responses as a run observer: the Response object is folded as the
run goes and saved when it ends, before the run's end is logged, so a client
that has seen the end can retrieve it. The folding is the protocol's
(``protocols.openai_responses.ResponseFold``: no frames encoded), handed in by the server: the
engine does not know wire formats."""

from __future__ import annotations

from typing import Any, Protocol

from ...core import Event
from ...store import Store
from ...store.responses import save_response
from .observers import Outcome


class Folder(Protocol):
    def feed(self, events: list[Event]) -> Any: ...

    def result(self) -> dict[str, Any]: ...  # the object as it stands (cancelled if it never ended)


class StoredResponse:
    __slots__ = ("store", "folder")

    def __init__(self, store: Store, folder: Folder) -> None:
        self.store, self.folder = store, folder

    def batch(self, events: list[Event]) -> None:
        self.folder.feed(events)

    async def end(self, outcome: Outcome) -> None:
        await save_response(self.store, self.folder.result())
