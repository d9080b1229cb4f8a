"""The ``voice:`` section of the config: speech providers, recognisers and the chunker.

```yaml
voice:
  speech:                       # text → audio; served as <name>/<model> on /v1/audio/speech
    oai: {kind: openai, api_key: "${env.OPENAI_API_KEY}", model: gpt-4o-mini-tts}
    el:  {kind: elevenlabs, api_key: "${env.ELEVEN_API_KEY}", voice: 21m00Tcm4TlvDq8ikWAM}
  transcription:                # audio → text on /v1/audio/transcriptions
    whisper: {kind: openai, api_key: "${env.OPENAI_API_KEY}", model: whisper-1}
  default: oai                  # the voice of voice mode (default: the first above, else espeak)
  chunker: {min_chars: 12, max_chars: 240, max_wait: 0.4, first_wait: 0.15}
```
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..strict import Strict


class ChunkerConfig(Strict):
    min_chars: int = Field(12, ge=1)  # shorter sentences are merged with the next
    max_chars: int = Field(240, ge=20)  # longer ones are cut at a comma or a space
    max_wait: float = Field(0.4, ge=0.0)  # seconds text may wait for punctuation before it is spoken anyway
    first_wait: float = Field(0.15, ge=0.0)  # the same for the first piece, so the answer starts soon


class VoiceConfig(Strict):
    speech: dict[str, dict[str, Any]] = Field(default_factory=dict)
    transcription: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default: str | None = None  # speech provider for voice mode and unnamed models
    embedded: bool = True  # serve eSpeak NG as the speech model "espeak"
    offline_recognizer: bool = True  # serve PocketSphinx as "pocketsphinx" when it is installed
    chunker: ChunkerConfig = Field(default_factory=ChunkerConfig)
