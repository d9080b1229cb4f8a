"""Make tool calls contiguous for protocols whose blocks cannot interleave.

Chat Completions upstreams may stream parallel tool calls interleaved (start
A, start B, args A, args B) and only complete them at ``finish``. Anthropic
content blocks and Responses output items must each run start → deltas →
end before the next begins (protocols.md §3.4, §4.2). ``Sequencer`` is a pure
reordering pass: the first open call streams live; any other call's events
wait until the open one has its ``tool-call``, then follow in order.
"""

from __future__ import annotations

from ..core import TERMINAL_TYPES, Event

_TOOL = frozenset({"tool-input-start", "tool-input-delta", "tool-input-end", "tool-call"})


class Sequencer:
    __slots__ = ("_current", "_queue", "_held")

    def __init__(self) -> None:
        self._current: str | None = None  # call id streaming live
        self._queue: list[str] = []  # calls waiting their turn, in start order
        self._held: dict[str, list[Event]] = {}

    def feed(self, events: list[Event]) -> list[Event]:
        if self._current is None and not self._queue and not any(ev.type in _TOOL for ev in events):
            return events  # the common case: text and reasoning pass straight through
        out: list[Event] = []
        for ev in events:
            t = ev.type
            if t in _TOOL:
                cid = ev.call_id
                if cid == self._current:
                    out.append(ev)
                    if t == "tool-call":
                        self._current = None
                        self._drain(out)
                elif cid in self._held:
                    self._held[cid].append(ev)
                elif self._current is None and not self._queue:
                    if t != "tool-call":
                        self._current = cid
                    out.append(ev)
                else:
                    self._queue.append(cid)
                    self._held[cid] = [ev]
            else:
                if t in TERMINAL_TYPES or t == "finish-step":
                    self._flush(out)
                out.append(ev)
        return out

    def _drain(self, out: list[Event]) -> None:
        while self._current is None and self._queue:
            cid = self._queue.pop(0)
            evs = self._held.pop(cid)
            out.extend(evs)
            if not any(ev.type == "tool-call" for ev in evs):
                self._current = cid

    def _flush(self, out: list[Event]) -> None:
        """Before a step ends, release whatever is still held (unfinished calls included)."""
        self._current = None
        for cid in self._queue:
            out.extend(self._held.pop(cid))
        self._queue.clear()
