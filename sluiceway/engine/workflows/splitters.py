"""Text splitters with model-compose's results: a recursive character splitter
(chunk size and overlap, separators tried in priority order, each kept at the
start of the piece it begins) and a streaming sentence splitter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

DEFAULT_SEPARATORS = ["\n\n", "\n", " ", ""]
_TERMINATORS = frozenset(".!?。！？…\n")
_WHITESPACE = frozenset(" \t\n")


def split_text(text: str, chunk_size: int, chunk_overlap: int, separators: list[str] | None = None) -> list[str]:
    if chunk_overlap > chunk_size:
        raise ValueError(f"chunk_overlap ({chunk_overlap}) is larger than chunk_size ({chunk_size})")
    return list(_split(text, separators or DEFAULT_SEPARATORS, chunk_size, chunk_overlap))


def _split(text: str, separators: list[str], size: int, overlap: int) -> Iterator[str]:
    # The first separator that occurs in the text is used for all of it; the rest
    # are the fallbacks for pieces that are still too long.
    sep, rest = "", []
    for i, s in enumerate(separators):
        if s == "" or s in text:
            sep, rest = s, separators[i + 1:] if s else []
            break
    pieces = _pieces(text, sep)
    window: list[str] = []
    for piece in pieces:
        if len(piece) < size:
            yield from _push(window, piece, size, overlap)
            continue
        chunk = _join(window)
        window.clear()
        if chunk:
            yield chunk
        if rest:
            yield from _split(piece, rest, size, overlap)
        elif piece.strip():
            yield piece.strip()
    chunk = _join(window)
    if chunk:
        yield chunk


def _pieces(text: str, sep: str) -> list[str]:
    """Split keeping each separator at the start of the piece after it."""
    if not sep:
        return list(text)
    parts = text.split(sep)
    out = [parts[0]] if parts[0] else []
    out += [sep + p for p in parts[1:]]
    return [p for p in out if p]


def _push(window: list[str], piece: str, size: int, overlap: int) -> Iterator[str]:
    total = sum(map(len, window))
    if total + len(piece) > size:
        chunk = _join(window)
        if chunk:
            yield chunk
        while window and (total > overlap or total + len(piece) > size):
            total -= len(window.pop(0))
    window.append(piece)


def _join(window: list[str]) -> str | None:
    text = "".join(window).strip()
    return text or None


class SentenceSplitter:
    """Feed text as it arrives; complete sentences come out. Sentences shorter
    than ``min_chunk_length`` are joined (with a space) to the next ones; text
    without a terminator is cut at ``max_chunk_length``, at a space if one is near."""

    def __init__(self, min_chunk_length: int = 0, max_chunk_length: int | None = None) -> None:
        if min_chunk_length < 0:
            raise ValueError("min_chunk_length must not be negative")
        if max_chunk_length is not None and max_chunk_length < max(min_chunk_length, 1):
            raise ValueError("max_chunk_length must be positive and at least min_chunk_length")
        self.min, self.max = min_chunk_length, max_chunk_length
        self.pending = ""
        self.buffer = ""

    def feed(self, text: str) -> Iterator[str]:
        if text:
            self.pending += text
            yield from self._drain(final=False)

    def flush(self) -> Iterator[str]:
        yield from self._drain(final=True)
        tail, self.buffer = self.buffer.strip(), ""
        if tail:
            yield tail

    def _drain(self, final: bool) -> Iterator[str]:
        while (cut := self._next(final)) is not None:
            sentence, end = cut
            self.pending = self.pending[end:]
            chunk = self._add(sentence)
            if chunk:
                yield chunk
        if final and self.pending.strip():
            chunk = self._add(self.pending.strip())
            if chunk:
                yield chunk
        if final:
            self.pending = ""

    def _next(self, final: bool) -> tuple[str, int] | None:
        text = self.pending
        for i, ch in enumerate(text):
            if ch not in _TERMINATORS:
                continue
            end = i + 1
            while end < len(text) and text[end] in _TERMINATORS:
                end += 1
            if not final and end == len(text):
                break  # "..." may still be arriving; only an oversize buffer is cut now
            sentence = text[:end].strip()
            return (sentence if any(c not in _TERMINATORS for c in sentence) else ""), end
        if self.max is not None and len(text) >= self.max:
            end = next((i for i in range(min(self.max, len(text)) - 1, 0, -1) if text[i] in _WHITESPACE), self.max)
            return text[:end].strip(), end
        return None

    def _add(self, sentence: str) -> str | None:
        if sentence:
            self.buffer = f"{self.buffer} {sentence}" if self.buffer else sentence
        if not self.buffer or len(self.buffer) < self.min:
            return None
        chunk, self.buffer = self.buffer, ""
        return chunk


async def split_sentences(source: AsyncIterator[str] | str, min_chunk_length: int = 0,
                          max_chunk_length: int | None = None) -> AsyncIterator[str]:
    splitter = SentenceSplitter(min_chunk_length, max_chunk_length)
    if isinstance(source, str):
        for chunk in splitter.feed(source):
            yield chunk
    else:
        try:
            async for piece in source:
                for chunk in splitter.feed(piece if isinstance(piece, str) else str(piece)):
                    yield chunk
        finally:  # closing this closes the stream it reads (and so its upstream) at once
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()
    for chunk in splitter.flush():
        yield chunk
