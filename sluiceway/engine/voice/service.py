"""Speech providers and recognisers built from ``voice:`` config, and the
names they are served under.

Speech models: ``espeak`` (embedded) and ``<provider>/<model>``. OpenAI's own
model names (``tts-1``, ``gpt-4o-mini-tts``…) go to the default voice, so SDK
examples work unchanged; likewise ``whisper-1`` and friends go to the default
recogniser."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ...core import NotFound
from ...core.extras import MissingExtra, installed
from ...providers.speech import Recognizer, SpeechProvider, stt_class, tts_class
from ..config import ConfigError
from ..strict import did_you_mean, explain, explain_unknown, known_keys
from .config import VoiceConfig

log = logging.getLogger("sluiceway.voice")
EMBEDDED = "espeak"
OFFLINE_STT = "pocketsphinx"
OPENAI_TTS_NAMES = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-tts"})
OPENAI_STT_NAMES = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"})


VoiceConfigError = ConfigError  # a bad voice section is a config error like any other


@dataclass(slots=True, frozen=True)
class Target:
    provider: Any  # SpeechProvider | Recognizer
    model: str | None  # the upstream model (None: the provider's default)


def _build(section: str, name: str, spec: dict[str, Any], loader, source=None, text=None) -> Any:
    spec = dict(spec)
    kind = spec.pop("kind", None) or name
    try:
        cls = loader(kind)
    except (ValueError, MissingExtra) as e:
        raise VoiceConfigError(f"voice.{section}.{name}: {e}") from None
    known = {*known_keys(cls.Settings), "kind"}
    for key in spec:
        if key not in known:
            raise VoiceConfigError(explain_unknown(source, text, ("voice", section, name, key),
                                                   did_you_mean(key, known),
                                                   f"a {kind} provider takes: {', '.join(sorted(known))}"))
    try:
        settings = cls.Settings.model_validate(spec)
    except ValidationError as e:
        raise VoiceConfigError(explain(e, cls.Settings, source=source, text=text,
                                       prefix=("voice", section, name))) from None
    return cls(name, settings)


class SpeechService:
    def __init__(self, config: VoiceConfig, *, source=None, text=None) -> None:
        self.config = config
        self.speakers: dict[str, SpeechProvider] = {}
        self.recognizers: dict[str, Recognizer] = {}
        for name, spec in config.speech.items():
            self.speakers[name] = _build("speech", name, spec, tts_class, source, text)
        for name, spec in config.transcription.items():
            self.recognizers[name] = _build("transcription", name, spec, stt_class, source, text)
        if config.embedded and EMBEDDED not in self.speakers:
            self.speakers[EMBEDDED] = tts_class("espeak")(EMBEDDED, tts_class("espeak").Settings())
        if config.offline_recognizer and OFFLINE_STT not in self.recognizers and installed("voice"):
            cls = stt_class("pocketsphinx")
            self.recognizers[OFFLINE_STT] = cls(OFFLINE_STT, cls.Settings())
        if config.default is not None and config.default not in self.speakers:
            raise VoiceConfigError(f"voice.default: no speech provider {config.default!r}"
                                   f"{did_you_mean(config.default, self.speakers)}")

    # ---------------------------------------------------------------- names
    def default_speaker(self) -> SpeechProvider | None:
        if self.config.default:
            return self.speakers[self.config.default]
        configured = [p for n, p in self.speakers.items() if n != EMBEDDED]
        return configured[0] if configured else self.speakers.get(EMBEDDED)

    def speech_models(self) -> list[str]:
        out: list[str] = []
        for name, p in self.speakers.items():
            out += [EMBEDDED] if name == EMBEDDED else [f"{name}/{m}" for m in p.models()]
        return out

    def transcription_models(self) -> list[str]:
        out: list[str] = []
        for name, r in self.recognizers.items():
            out += [OFFLINE_STT] if name == OFFLINE_STT else [f"{name}/{m}" for m in r.models()]
        return out

    def speaker(self, model: str | None) -> Target:
        """The provider (and upstream model) a speech model name means."""
        if not model or model == "default" or model in OPENAI_TTS_NAMES:
            p = self.default_speaker()
            if p is not None:
                return Target(p, None)
        elif model == EMBEDDED and EMBEDDED in self.speakers:
            return Target(self.speakers[EMBEDDED], None)
        else:
            name, _, upstream = model.partition("/")
            if name in self.speakers and name != EMBEDDED:
                return Target(self.speakers[name], upstream or None)
        raise NotFound(f"The speech model {model!r} does not exist; this server speaks with: "
                       f"{', '.join(self.speech_models()) or 'nothing (no speech provider)'}",
                       code="model_not_found", param="model")

    def recognizer(self, model: str | None) -> Target:
        if not self.recognizers:
            hint = "" if installed("voice") or not self.config.offline_recognizer else \
                f"; {MissingExtra('voice', 'the offline recogniser (pocketsphinx)').message}"
            raise NotFound(f"no speech recogniser is configured (voice.transcription){hint}",
                           code="model_not_found", param="model")
        if not model or model in OPENAI_STT_NAMES or model == "default":
            configured = [r for n, r in self.recognizers.items() if n != OFFLINE_STT]
            return Target((configured or list(self.recognizers.values()))[0], None)
        if model == OFFLINE_STT and OFFLINE_STT in self.recognizers:
            return Target(self.recognizers[OFFLINE_STT], None)
        name, _, upstream = model.partition("/")
        if name in self.recognizers and name != OFFLINE_STT:
            return Target(self.recognizers[name], upstream or None)
        raise NotFound(f"The transcription model {model!r} does not exist; this server has: "
                       f"{', '.join(self.transcription_models())}", code="model_not_found", param="model")

    async def aclose(self) -> None:
        for p in [*self.speakers.values(), *self.recognizers.values()]:
            with contextlib.suppress(Exception):
                await p.aclose()
