"""The canonical event codec: ``Event`` ↔ compact JSON.

Only what leaves the process serialises events: the Redis run log, the
debug trace, the session-chat wire format. In-process paths pass ``Event``
objects.
"""

from __future__ import annotations

import orjson

from . import events as _events
from .events import Event, Usage


def encode_event(ev: Event) -> bytes:
    """Canonical event → compact JSON with its ``type`` first. orjson
    serialises the (slotted) dataclass natively; ``type`` is a ClassVar, so it
    is spliced in front."""
    body = orjson.dumps(ev)
    head = b'{"type":"' + ev.type.encode() + b'"'
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


_EVENT_CLASSES: dict[str, type] = {
    cls.type: cls for cls in vars(_events).values()
    if isinstance(cls, type) and isinstance(getattr(cls, "type", None), str)}


def decode_event(payload: bytes) -> Event:
    """The inverse of ``encode_event``."""
    d = orjson.loads(payload)
    cls = _EVENT_CLASSES[d.pop("type")]
    if "usage" in d and isinstance(d["usage"], dict):
        d["usage"] = Usage(**d["usage"])
    return cls(**d)
