"""The speech provider contract: text in, audio bytes out as they are made;
audio in, text out. Like the model providers, each kind is one module with
a pydantic ``Settings`` (its JSON Schema is the form a UI shows)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

# OpenAI's /v1/audio/speech formats; what a provider can make is its own list
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechSettings(BaseModel):
    """Settings models forbid unknown keys: a typo must not silently drop a key."""

    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True, frozen=True)
class Speech:
    """One synthesis: ``audio`` yields the bytes in ``format`` as they are
    made; for ``pcm`` they are mono signed 16-bit little-endian at ``sample_rate``."""

    audio: AsyncIterator[bytes]
    format: str
    sample_rate: int


@runtime_checkable
class SpeechProvider(Protocol):
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    name: str

    def models(self) -> list[str]: ...  # speech model ids it serves

    def formats(self) -> tuple[str, ...]: ...

    async def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                    format: str = "pcm", model: str | None = None) -> Speech: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Recognizer(Protocol):
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    name: str

    def models(self) -> list[str]: ...

    async def transcribe(self, audio: bytes, *, filename: str = "audio.wav", language: str | None = None,
                         model: str | None = None, prompt: str | None = None) -> str: ...

    async def aclose(self) -> None: ...


def wav_header(sample_rate: int, data_len: int = 0xFFFFFFFF - 36, channels: int = 1) -> bytes:
    """A 44-byte PCM s16le WAV header; an unknown length (streaming) is the
    largest one, as streaming encoders write it."""
    byte_rate = sample_rate * channels * 2
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, 36 + data_len)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
            + b"data" + struct.pack("<I", min(0xFFFFFFFF, data_len)))


def parse_wav(data: bytes) -> tuple[int, int, bytes]:
    """(sample_rate, channels, PCM s16le frames) of a PCM WAV file; ValueError otherwise."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body:body + 16])
            if fmt not in (1, 0xFFFE) or bits != 16:
                raise ValueError("only 16-bit PCM WAV is supported")
        elif cid == b"data":
            if not rate:
                raise ValueError("WAV data before its fmt chunk")
            end = len(data) if size >= 0xFFFFFFFF - 64 else min(len(data), body + size)
            return rate, channels, data[body:end]
        pos = body + size + (size & 1)
    raise ValueError("WAV file without a data chunk")
