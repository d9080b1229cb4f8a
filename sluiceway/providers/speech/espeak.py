"""The embedded offline voice: eSpeak NG, run as a child process per piece.

No key, no network, no model download: Debian's ``espeak-ng`` package (the
setup scripts install it). It speaks English and, with the ``cmn`` voice,
Mandarin; a piece with CJK characters switches to it. eSpeak writes its WAV
to stdout as it synthesises, so audio is yielded as it is made."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import BaseModel, Field

from ...core import BadRequest, UpstreamUnavailable
from .audio import sox_convert, sox_formats, to_mono_rate
from .base import Speech, SpeechSettings, wav_header

SAMPLE_RATE = 22050
OPENAI_RATE = 24000  # OpenAI's "pcm" is 24 kHz; we resample to match what its clients assume
# OpenAI's voice names → eSpeak voice+variant, so SDK examples work unchanged
VOICES = {"alloy": "en-us+f3", "ash": "en-us+m3", "ballad": "en-gb+m5", "coral": "en-us+f4",
          "echo": "en-us+m1", "fable": "en-gb+m3", "onyx": "en-us+m7", "nova": "en-us+f2",
          "sage": "en-gb+f3", "shimmer": "en-us+f5", "verse": "en-us+m2", "marin": "en-us+f1",
          "cedar": "en-us+m4"}


class EspeakSettings(SpeechSettings):
    binary: str = Field("espeak-ng", description="eSpeak NG executable (PATH is searched)")
    voice: str = Field("alloy", description="Default voice: an OpenAI voice name or an eSpeak voice (en-us, en-gb+f3, …)")
    cjk_voice: str = Field("cmn", description="eSpeak voice for pieces with Chinese/Japanese/Korean characters")
    words_per_minute: int = Field(175, ge=80, le=450, description="Speaking rate at speed 1.0")


def _has_cjk(text: str) -> bool:
    return any(0x3000 <= ord(c) <= 0x9FFF or 0xAC00 <= ord(c) <= 0xD7AF for c in text)


class EspeakProvider:
    kind: ClassVar[str] = "espeak"
    Settings: ClassVar[type[BaseModel]] = EspeakSettings

    def __init__(self, name: str, settings: EspeakSettings) -> None:
        self.name = name
        self.settings = settings

    def models(self) -> list[str]:
        return ["espeak"]

    def formats(self) -> tuple[str, ...]:
        return ("wav", "pcm", *sox_formats())

    async def aclose(self) -> None:
        return None  # nothing pooled: one short-lived process per piece

    def available(self) -> bool:
        return shutil.which(self.settings.binary) is not None

    def voice_for(self, voice: str | None, text: str) -> str:
        v = (voice or self.settings.voice).strip()
        if _has_cjk(text) and (v in VOICES or v.startswith("en")):
            return self.settings.cjk_voice
        v = VOICES.get(v.lower(), v)
        if not v or len(v) > 64 or not all(c.isalnum() or c in "-_+" for c in v):
            raise BadRequest(f"unknown voice {voice!r}", param="voice")
        return v

    async def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                    format: str = "pcm", model: str | None = None) -> Speech:
        if format not in self.formats():
            raise BadRequest(f"response_format {format!r} is not available here; "
                             f"this server makes: {', '.join(self.formats())}", param="response_format")
        exe = shutil.which(self.settings.binary)
        if exe is None:
            raise UpstreamUnavailable("the embedded voice needs espeak-ng: run scripts/setup.sh "
                                      "(or apt-get install espeak-ng)", code="speech_unavailable")
        wpm = max(80, min(450, round(self.settings.words_per_minute * speed)))
        args = [exe, "--stdout", "-v", self.voice_for(voice, text), "-s", str(wpm)]
        raw = self._run(args, text)
        if format == "wav":
            return Speech(self._wav(raw), "wav", SAMPLE_RATE)
        if format == "pcm":
            return Speech(self._pcm(raw), "pcm", SAMPLE_RATE)
        return Speech(self._encoded(raw, format), format, SAMPLE_RATE)

    async def _run(self, args: list[str], text: str) -> AsyncIterator[bytes]:
        """eSpeak's WAV stream, minus its 44-byte header: PCM s16le as made.
        Closing the iterator kills the process (barge-in stops synthesis too)."""
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(text.encode())
            proc.stdin.close()
            await proc.stdout.readexactly(44)
            while chunk := await proc.stdout.read(16384):
                yield chunk
        except asyncio.IncompleteReadError:
            return  # nothing to say (empty text)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()

    @staticmethod
    async def _pcm(raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Whole 16-bit samples only (a read may end between a sample's bytes)."""
        carry = b""
        try:
            async for chunk in raw:
                chunk = carry + chunk
                cut = len(chunk) - len(chunk) % 2
                carry = chunk[cut:]
                if cut:
                    yield chunk[:cut]
        finally:
            await raw.aclose()

    async def _wav(self, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        yield wav_header(SAMPLE_RATE)
        async for chunk in self._pcm(raw):
            yield chunk

    async def _encoded(self, raw: AsyncIterator[bytes], fmt: str) -> AsyncIterator[bytes]:
        pcm = b"".join([c async for c in self._pcm(raw)])
        yield await sox_convert(pcm, in_args=["-t", "raw", "-r", str(SAMPLE_RATE), "-b", "16", "-c", "1",
                                              "-e", "signed-integer", "-L"], out_type=fmt)


def resample_stream(chunks: AsyncIterator[bytes], rate: int, target: int) -> AsyncIterator[bytes]:
    """PCM chunks at ``rate`` → ``target`` Hz, chunk by chunk (for OpenAI's 24 kHz ``pcm``)."""
    async def gen() -> AsyncIterator[bytes]:
        async for c in chunks:
            yield to_mono_rate(c, rate, 1, target)
    return gen()
