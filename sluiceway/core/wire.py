"""The raw upstream exchange of one generation, for debug traces.

Providers call it as bytes go out and come in (``providers/http.py`` and
``providers/frames.py``); the recorder stores it. It redacts credentials as
it records (any header that carries one, and key-like query parameters),
and keeps at most ``limit`` bytes of response body so a long answer cannot
grow a trace without bound.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .secrets import scrub_obj

SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|signature|credential|password", re.I)
SECRET_PARAM = re.compile(r"key|token|secret|signature|sig|password|credential", re.I)
REDACTED = "[redacted]"


def _text(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # binary framing (AWS event stream)
        return {"base64": base64.b64encode(data).decode()}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    q = [(k, REDACTED if SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(q)))


def redact_headers(headers: Any) -> dict[str, str]:
    return {str(k): REDACTED if SECRET_HEADER.search(str(k)) else str(v) for k, v in dict(headers).items()}


class WireTrace:
    __slots__ = ("limit", "request", "status", "headers", "_body", "_size", "truncated")

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self.request: dict[str, Any] | None = None
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self.truncated = False

    def on_request(self, method: str, url: str, headers: Any, body: bytes | None) -> None:
        """A new attempt (retry or fallback) replaces the last: the trace shows
        the exchange that answered; the request part lists earlier attempts."""
        self.status, self.headers, self._body, self._size, self.truncated = None, {}, [], 0, False
        self.request = scrub_obj({"method": method, "url": redact_url(str(url)), "headers": redact_headers(headers),
                                  "body": _text(body) if body else None})

    def on_response(self, status: int, headers: Any) -> None:
        self.status, self.headers = status, scrub_obj(redact_headers(headers))

    def on_data(self, data: bytes) -> None:
        room = self.limit - self._size
        if room <= 0:
            self.truncated = self.truncated or bool(data)
            return
        chunk = data[:room]
        self._body.append(chunk)
        self._size += len(chunk)
        if len(data) > room:
            self.truncated = True

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request,
                "response": {"status": self.status, "headers": self.headers,
                             "body": scrub_obj(_text(b"".join(self._body))), "truncated": self.truncated}}
