"""Offline speech recognition with PocketSphinx: its PyPI wheel ships the
US English acoustic model, dictionary and language model, so it runs with
no download. Accuracy is modest (it is a small 2010s model); configure an
OpenAI-compatible transcription provider for anything serious."""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

from pydantic import BaseModel, Field

from ...core import BadRequest, UpstreamUnavailable
from .audio import decode_to_pcm16k
from .base import SpeechSettings


class SphinxSettings(SpeechSettings):
    lm: str | None = Field(None, description="Language model path (default: the wheel's en-us)")
    dictionary: str | None = Field(None, description="Pronunciation dictionary path (default: the wheel's)")


class SphinxRecognizer:
    kind: ClassVar[str] = "pocketsphinx"
    Settings: ClassVar[type[BaseModel]] = SphinxSettings

    def __init__(self, name: str, settings: SphinxSettings) -> None:
        self.name = name
        self.settings = settings
        self._decoder = None
        self._lock = threading.Lock()  # one decoder, one utterance at a time

    @staticmethod
    def installed() -> bool:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            return False
        return True

    def models(self) -> list[str]:
        return ["pocketsphinx"]

    def _decode(self, pcm: bytes) -> str:
        from pocketsphinx import Decoder

        with self._lock:
            if self._decoder is None:
                kw = {k: v for k, v in (("lm", self.settings.lm), ("dict", self.settings.dictionary)) if v}
                self._decoder = Decoder(loglevel="FATAL", **kw)
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            hyp = d.hyp()
            return hyp.hypstr if hyp is not None else ""

    async def transcribe(self, audio: bytes, *, filename: str = "audio.wav", language: str | None = None,
                         model: str | None = None, prompt: str | None = None) -> str:
        if language and not language.lower().startswith("en"):
            raise BadRequest("the offline recogniser knows only English", param="language")
        if not self.installed():
            raise UpstreamUnavailable("pocketsphinx is not installed", code="speech_unavailable")
        pcm = await decode_to_pcm16k(audio, filename)
        if len(pcm) < 3200:  # under 0.1 s: nothing said (and the decoder rejects an empty utterance)
            return ""
        try:
            return await asyncio.to_thread(self._decode, pcm)
        except (RuntimeError, ValueError, IndexError) as e:  # the decoder's complaints are about the audio
            raise BadRequest(f"the audio could not be recognised: {e}", param="file") from None

    async def aclose(self) -> None:
        self._decoder = None
