"""Speech providers: text → audio (TTS) and audio → text (recognisers).

A kind of provider like the model providers: one class per upstream, a
pydantic ``Settings`` each, imported lazily by kind."""

from __future__ import annotations

import importlib

from ...core.extras import require
from .base import FORMATS, MEDIA_TYPES, Recognizer, Speech, SpeechProvider, parse_wav, wav_header

TTS_KINDS: dict[str, str] = {
    "espeak": "sluiceway.providers.speech.espeak:EspeakProvider",
    "openai": "sluiceway.providers.speech.remote:OpenAITTSProvider",
    "elevenlabs": "sluiceway.providers.speech.remote:ElevenLabsProvider",
}
STT_KINDS: dict[str, str] = {
    "openai": "sluiceway.providers.speech.remote:OpenAITranscriber",
    "pocketsphinx": "sluiceway.providers.speech.sphinx:SphinxRecognizer",
}


KIND_EXTRAS: dict[str, str] = {"pocketsphinx": "voice"}  # kinds whose package is a pip extra (core/extras.py)


def _load(table: dict[str, str], kind: str, what: str) -> type:
    try:
        target = table[kind]
    except KeyError:
        raise ValueError(f"unknown {what} kind {kind!r}; known: {', '.join(sorted(table))}") from None
    if kind in KIND_EXTRAS:
        require(KIND_EXTRAS[kind], f"a {kind} {what}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def tts_class(kind: str) -> type:
    return _load(TTS_KINDS, kind, "speech provider")


def stt_class(kind: str) -> type:
    return _load(STT_KINDS, kind, "transcription provider")


__all__ = ["FORMATS", "MEDIA_TYPES", "STT_KINDS", "TTS_KINDS", "Recognizer", "Speech", "SpeechProvider",
           "parse_wav", "stt_class", "tts_class", "wav_header"]
