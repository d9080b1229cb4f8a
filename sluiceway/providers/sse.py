"""Incremental Server-Sent Events parser for upstream streams (WHATWG §9.2).

Bytes in, ``(event, data)`` pairs out, the data still bytes: every caller
parses it as JSON, and orjson reads bytes directly, so a payload is never
decoded to ``str`` first. Splitting on line ends before anything else keeps a
UTF-8 character split across network reads intact (a line end is never
inside a multi-byte character). Handles CRLF, lone CR (also split across
reads), comments, multi-line ``data:``, a leading BOM, and fields without a
space after the colon. Written by hand rather than taken from a library
because it sits on the hot path: one split per read, and an event of one
``data:`` line (nearly every event) costs one slice.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_buf", "_event", "_data", "_cr", "_first", "last_id", "retry")

    def __init__(self) -> None:
        self._buf = b""
        self._event = b""
        self._data: list[bytes] = []
        self._cr = False  # previous read ended in CR: a leading LF belongs to it
        self._first = True
        self.last_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
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
        # whole events first: nearly every one is a single "data: " line, taken with one slice
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        out: list[tuple[str, bytes]] = []
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                out.append(("message", block[6:]))
            elif block:
                self._lines(block.split(b"\n"), out)
                if self._data:
                    out.append((self._event.decode("utf-8", "replace") if self._event else "message",
                                b"\n".join(self._data)))
                self._data = []
                self._event = b""
        return out

    def _lines(self, lines: list[bytes], out: list[tuple[str, bytes]]) -> None:
        """The field lines of one event (no blank line among them)."""
        for raw in lines:
            if raw.startswith(b"data:"):
                self._data.append(raw[6:] if raw[5:6] == b" " else raw[5:])
            elif not raw or raw[0] == 58:  # ":" comment / keep-alive
                continue
            elif raw[0] in b"{[":
                # A stray JSON line with no SSE framing (some vendors send a bare
                # error object): surface it as data so the adapter can read it.
                out.append(("message", raw))
            else:
                self._field(raw)

    def _field(self, raw: bytes) -> None:
        field, sep, value = raw.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"data":  # "data" with no colon: an empty data line
            self._data.append(value)
        elif field == b"event":
            self._event = value
        elif field == b"id":
            if b"\0" not in value:
                self.last_id = value.decode("utf-8", "replace")
        elif field == b"retry" and value.isdigit():
            self.retry = int(value)

    def close(self) -> list[tuple[str, bytes]]:
        """At EOF. Per spec an unterminated event is discarded, but a bare
        JSON line (no framing at all) is still surfaced, and so is a last
        ``data:`` line the upstream closed on without its blank line."""
        lines = self._buf.split(b"\n")
        self._buf = b""
        out: list[tuple[str, bytes]] = []
        self._lines(lines[:-1], out)  # the complete lines of the unterminated event
        tail = lines[-1].strip()
        if tail.startswith((b"{", b"[")):
            out.append(("message", tail))
        elif tail.startswith(b"data:") and not self._data:
            v = tail[5:]
            out.append((self._event.decode("utf-8", "replace") or "message", v[1:] if v.startswith(b" ") else v))
        self._data = []
        return out
