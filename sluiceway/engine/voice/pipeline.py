"""Text stream → speech: the voice-mode pipeline.

``pieces`` cuts a stream of text deltas into speakable pieces, flushing on
the chunker's max-wait timer while the text waits for punctuation; the text
is read by its own task so a slow synthesis never holds up the text stream.
``speak`` synthesises the pieces in order, streaming each piece's audio as
it is made. Cancelling the consumer stops the synthesis at once (the speech
process is killed, the upstream request closed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ...core import TERMINAL_TYPES
from ...providers.speech import SpeechProvider
from .chunker import SentenceChunker, speakable
from .config import ChunkerConfig


@dataclass(slots=True)
class Sentence:
    """A piece starts: ``text`` as written (for highlighting)."""

    seq: int
    text: str


@dataclass(slots=True)
class Audio:
    """PCM s16le mono audio of piece ``seq``."""

    seq: int
    data: bytes
    sample_rate: int


@dataclass(slots=True)
class SentenceEnd:
    seq: int
    bytes: int


VoiceEvent = Sentence | Audio | SentenceEnd


def chunker_for(cfg: ChunkerConfig, clock: Callable[[], float] = time.monotonic) -> SentenceChunker:
    return SentenceChunker(min_chars=cfg.min_chars, max_chars=cfg.max_chars, max_wait=cfg.max_wait,
                           first_wait=cfg.first_wait, clock=clock)


async def pieces(deltas: AsyncIterator[str], chunker: SentenceChunker) -> AsyncIterator[str]:
    q: asyncio.Queue[str | None] = asyncio.Queue()
    failure: list[BaseException] = []

    async def read() -> None:
        try:
            async for d in deltas:
                q.put_nowait(d)
        except Exception as e:  # handed to the consumer, after what was read
            failure.append(e)
        finally:
            q.put_nowait(None)

    reader = asyncio.create_task(read(), name="voice-text")
    try:
        while True:
            deadline = chunker.deadline
            try:
                if deadline is None:
                    d = await q.get()
                else:
                    async with asyncio.timeout(max(0.0, deadline - chunker.clock())):
                        d = await q.get()
            except TimeoutError:
                for p in chunker.flush_due():
                    yield p
                continue
            if d is None:
                break
            for p in chunker.feed(d):
                yield p
        for p in chunker.finish():
            yield p
        if failure:
            raise failure[0]
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def speak(texts: AsyncIterator[str], speaker: SpeechProvider, *, voice: str | None = None,
                speed: float = 1.0, model: str | None = None) -> AsyncIterator[VoiceEvent]:
    """Sentence / Audio… / SentenceEnd per piece, in order; every piece is announced,
    also one with nothing to say (a bare URL), so a client sees every sentence."""
    seq = 0
    async for text in texts:
        yield Sentence(seq, text)
        say = speakable(text)
        n = 0
        if say:
            speech = await speaker.speak(say, voice=voice, speed=speed, format="pcm", model=model)
            try:
                async for chunk in speech.audio:
                    n += len(chunk)
                    yield Audio(seq, chunk, speech.sample_rate)
            finally:
                await speech.audio.aclose()  # type: ignore[attr-defined]
        yield SentenceEnd(seq, n)
        seq += 1


async def run_text(entries: AsyncIterator[list[tuple[int, Any]]]) -> AsyncIterator[str]:
    """The answer text of a run log (``Runs.read``): its text deltas, until the
    run ends. Entries carry events (older logs: their canonical JSON)."""
    async for batch in entries:
        for _, ev in batch:
            if isinstance(ev, bytes | str):
                ev = orjson.loads(ev)
                kind, delta = ev["type"], ev.get("delta")
            else:
                kind, delta = ev.type, getattr(ev, "delta", None)
            if kind == "text-delta":
                yield delta
            elif kind in TERMINAL_TYPES:
                return
