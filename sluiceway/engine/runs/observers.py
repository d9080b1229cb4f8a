"""The one contract for whatever watches a stream: persistence (the
recorder, stored Responses), metrics, a key's limits.

An observer sees every batch the client is sent and hears the end once,
with one ``Outcome``. Several observers are a plain list, called in order:
``end_all`` awaits each in turn (a saver listed before the accounting has
saved before the accounting hears the end) and a failing one does not keep
the others from hearing it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from ...core import Event

log = logging.getLogger("sluiceway.runs")


class Outcome(StrEnum):
    COMPLETE = "complete"  # a finish event
    INTERRUPTED = "interrupted"  # stopped, shut down, or the client left
    ERROR = "error"


class Observer(Protocol):
    def batch(self, events: list[Event]) -> None: ...

    async def end(self, outcome: Outcome) -> None: ...


def batch_all(observers: Sequence[Observer], events: list[Event]) -> None:
    for o in observers:
        o.batch(events)


async def end_all(observers: Sequence[Observer], outcome: Outcome) -> None:
    for o in observers:
        try:
            await o.end(outcome)
        except Exception:
            log.exception("observer %s failed at the end of a stream", type(o).__name__)


def outcome_of(terminal: Event | None) -> Outcome:
    """The outcome a stream's terminal event stands for."""
    if terminal is None or terminal.type == "error":
        return Outcome.ERROR
    return Outcome.COMPLETE if terminal.type == "finish" else Outcome.INTERRUPTED
