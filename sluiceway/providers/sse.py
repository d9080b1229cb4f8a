"""Incremental Server-Sent Events parser for upstream streams (WHATWG §9.2).

Bytes in, ``(event, data)`` pairs out. It works on bytes and splits on line
ends before decoding, so a UTF-8 character split across network reads is
reassembled for free (a line end is never inside a multi-byte character).
Handles CRLF, lone CR (also split across reads), comments, multi-line
``data:``, a leading BOM, and fields without a space after the colon.
Written by hand rather than taken from a library because it sits on the hot
path: one pass per read, no per-line objects.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_buf", "_event", "_data", "_cr", "_first", "last_id", "retry")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._cr = False  # previous read ended in CR: a leading LF belongs to it
        self._first = True
        self.last_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if self._first and chunk:
            self._first = False
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[tuple[str, str]] = []
        for raw in lines:
            if not raw:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                self._event = ""
                self._data = []
                continue
            if raw[0] == 58:  # ":" comment / keep-alive
                continue
            line = raw.decode("utf-8", "replace")
            if raw[0] in b"{[":
                # A stray JSON line with no SSE framing (some vendors send a bare
                # error object): surface it as data so the adapter can read it.
                out.append(("message", line))
                continue
            field, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._event = value
            elif field == "id":
                if "\0" not in value:
                    self.last_id = value
            elif field == "retry" and value.isdigit():
                self.retry = int(value)
        return out

    def close(self) -> list[tuple[str, str]]:
        """At EOF. Per spec an unterminated event is discarded, but a bare
        trailing JSON line (no framing at all) is still surfaced."""
        tail = self._buf.decode("utf-8", "replace").strip()
        self._buf = b""
        if tail.startswith(("{", "[")):
            return [("message", tail)]
        if tail.startswith("data:") and not self._data:
            # upstream closed right after its last data line without the blank line
            v = tail[5:]
            return [(self._event or "message", v[1:] if v.startswith(" ") else v)]
        return []
