"""A job output that is still streaming.

Only the last job's output reaches the client as a stream; an earlier job's
stream is either consumed live by the next job (a streaming sentence splitter
reading a chat's tokens) or collected into one value when a job needs it whole.
A live stream has exactly one reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


class LiveStream:
    __slots__ = ("source", "format", "taken", "claimed")

    def __init__(self, source: AsyncIterator[Any], format: str | None = None) -> None:
        self.source = source
        self.format = format  # "text" | "json" | None (as produced)
        self.taken = False  # its reader has started
        self.claimed = False  # handed to a job that will read it

    def __aiter__(self) -> AsyncIterator[Any]:
        if self.taken:
            raise RuntimeError("a streamed job output can be read only once")
        self.taken = True
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        try:
            async for chunk in self.source:
                # None or "": a chunk the output binding had nothing for (role, [DONE]); model-compose skips them
                if chunk is not None and chunk != "" and chunk != b"":
                    yield chunk
        finally:
            await aclose(self.source)

    async def collect(self) -> Any:
        """The whole stream as one value: text joined, anything else as a list."""
        chunks = [c async for c in self]
        if all(isinstance(c, str) for c in chunks):
            return "".join(chunks)
        if all(isinstance(c, bytes) for c in chunks):
            return b"".join(chunks).decode("utf-8", "replace")
        return chunks

    async def aclose(self) -> None:
        await aclose(self.source)


async def aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        try:
            await close()
        except RuntimeError:  # already running or closed elsewhere
            pass


async def materialize(value: Any) -> Any:
    """Collect every live stream inside a value (for components that need it whole)."""
    if isinstance(value, LiveStream):
        return await value.collect()
    if isinstance(value, dict):
        return {k: await materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [await materialize(v) for v in value]
    return value


def claim(value: Any) -> None:
    """Mark every live stream inside a job's input as having a reader."""
    if isinstance(value, LiveStream):
        value.claimed = True
    elif isinstance(value, dict):
        for v in value.values():
            claim(v)
    elif isinstance(value, list):
        for v in value:
            claim(v)


def has_stream(value: Any) -> bool:
    if isinstance(value, LiveStream):
        return True
    if isinstance(value, dict):
        return any(has_stream(v) for v in value.values())
    if isinstance(value, list):
        return any(has_stream(v) for v in value)
    return False
