"""The canonical event codec: ``Event`` ↔ compact JSON.

Only what leaves the process serialises events: the Redis run log, the
debug trace, the session-chat wire format. In-process paths pass ``Event``
objects.
"""

from __future__ import annotations

import orjson

from . import events as _events
from .events import Event, Usage

_EVENT_CLASSES: dict[str, type] = {
    cls.type: cls for cls in vars(_events).values()
    if isinstance(cls, type) and isinstance(getattr(cls, "type", None), str)}
# '{"type":"<type>",' per event type, made once: encoding is on the hot path
HEADS: dict[str, bytes] = {t: b'{"type":"' + t.encode() + b'",' for t in _EVENT_CLASSES}
_dumps = orjson.dumps


def encode_event(ev: Event) -> bytes:
    """Canonical event → compact JSON with its ``type`` first. orjson
    serialises the (slotted) dataclass natively; ``type`` is a ClassVar, so it
    is spliced in front."""
    body = _dumps(ev)
    if body == b"{}":
        return HEADS[ev.type][:-1] + b"}"
    return HEADS[ev.type] + body[1:]


def decode_event(payload: bytes) -> Event:
    """The inverse of ``encode_event``."""
    d = orjson.loads(payload)
    cls = _EVENT_CLASSES[d.pop("type")]
    if "usage" in d and isinstance(d["usage"], dict):
        d["usage"] = Usage(**d["usage"])
    return cls(**d)
