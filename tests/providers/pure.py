"""Driving a vendor's pure wire state machine without I/O, for the
per-vendor tests of its quirks."""

from __future__ import annotations

from typing import Any

from sluiceway.core import Event


def feed_all(adapter: Any, objs: list[dict[str, Any]], *, end: bool = True) -> list[Event]:
    """Feed decoded wire objects to ``adapter``, then its end of stream."""
    out: list[Event] = []
    for obj in objs:
        adapter.feed(obj, out)
    if end:
        adapter.end(out)
    return out


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]
