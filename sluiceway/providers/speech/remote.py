"""Remote speech APIs over HTTP: any OpenAI-compatible TTS
(``/audio/speech``, streamed body), ElevenLabs (``/text-to-speech/{voice}/stream``)
and any OpenAI-compatible transcription API (``/audio/transcriptions``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, Field, SecretStr

from ...core import BadRequest, SluicewayError, UpstreamUnavailable
from ..http import new_session, raise_for_status
from .base import Speech, SpeechSettings

CHUNK = 8192


class _Http:
    name: str
    _session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session()
        return self._session

    async def _post(self, url: str, **kw: Any) -> aiohttp.ClientResponse:
        try:
            resp = await self.session().post(url, **kw)
        except (aiohttp.ClientError, OSError) as e:
            raise UpstreamUnavailable(f"{self.name}: {e}", provider=self.name) from e
        await raise_for_status(resp, self.name)
        return resp

    async def _body(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The response body as it arrives; closing the iterator closes the connection."""
        try:
            async for chunk in resp.content.iter_chunked(CHUNK):
                yield chunk
        except (aiohttp.ClientError, OSError) as e:
            raise UpstreamUnavailable(f"{self.name}: {e}", provider=self.name) from e
        finally:
            resp.close()

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()


class OpenAITTSSettings(SpeechSettings):
    base_url: str = Field("https://api.openai.com/v1", description="API base URL, up to and including /v1")
    api_key: SecretStr | None = Field(None, description="Sent as a bearer token")
    model: str = Field("gpt-4o-mini-tts", description="Upstream TTS model")
    voice: str = Field("alloy", description="Default voice")
    models: list[str] = Field(default_factory=list, description="Speech model ids served as <name>/<model>")
    pcm_rate: int = Field(24000, description="Sample rate of the upstream's pcm format")


class OpenAITTSProvider(_Http):
    kind: ClassVar[str] = "openai"
    Settings: ClassVar[type[BaseModel]] = OpenAITTSSettings

    def __init__(self, name: str, settings: OpenAITTSSettings) -> None:
        self.name = name
        self.settings = settings

    def models(self) -> list[str]:
        return self.settings.models or [self.settings.model]

    def formats(self) -> tuple[str, ...]:
        return ("mp3", "opus", "aac", "flac", "wav", "pcm")

    async def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                    format: str = "pcm", model: str | None = None) -> Speech:
        s = self.settings
        headers = {"authorization": f"Bearer {s.api_key.get_secret_value()}"} if s.api_key else {}
        body = {"model": model or s.model, "input": text, "voice": voice or s.voice,
                "response_format": format, "speed": speed}
        resp = await self._post(f"{s.base_url.rstrip('/')}/audio/speech", json=body, headers=headers)
        return Speech(self._body(resp), format, s.pcm_rate)


class ElevenLabsSettings(SpeechSettings):
    base_url: str = Field("https://api.elevenlabs.io", description="API base URL")
    api_key: SecretStr | None = Field(None, description="Sent as xi-api-key")
    voice: str = Field("21m00Tcm4TlvDq8ikWAM", description="Default voice id")
    model: str = Field("eleven_flash_v2_5", description="model_id")
    pcm_rate: int = Field(22050, description="Sample rate asked for as pcm_<rate>")


class ElevenLabsProvider(_Http):
    kind: ClassVar[str] = "elevenlabs"
    Settings: ClassVar[type[BaseModel]] = ElevenLabsSettings

    def __init__(self, name: str, settings: ElevenLabsSettings) -> None:
        self.name = name
        self.settings = settings

    def models(self) -> list[str]:
        return [self.settings.model]

    def formats(self) -> tuple[str, ...]:
        return ("mp3", "pcm")

    async def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                    format: str = "pcm", model: str | None = None) -> Speech:
        s = self.settings
        if format not in self.formats():
            raise BadRequest(f"response_format {format!r} is not available from ElevenLabs; use mp3 or pcm",
                             param="response_format")
        output = f"pcm_{s.pcm_rate}" if format == "pcm" else "mp3_44100_128"
        headers = {"xi-api-key": s.api_key.get_secret_value()} if s.api_key else {}
        body: dict[str, Any] = {"text": text, "model_id": model or s.model}
        if speed != 1.0:
            body["voice_settings"] = {"speed": max(0.7, min(1.2, speed))}
        url = f"{s.base_url.rstrip('/')}/v1/text-to-speech/{voice or s.voice}/stream"
        resp = await self._post(url, json=body, headers=headers, params={"output_format": output})
        return Speech(self._body(resp), format, s.pcm_rate)


class OpenAITranscribeSettings(SpeechSettings):
    base_url: str = Field("https://api.openai.com/v1", description="API base URL, up to and including /v1")
    api_key: SecretStr | None = Field(None, description="Sent as a bearer token")
    model: str = Field("whisper-1", description="Upstream transcription model")


class OpenAITranscriber(_Http):
    kind: ClassVar[str] = "openai-transcribe"
    Settings: ClassVar[type[BaseModel]] = OpenAITranscribeSettings

    def __init__(self, name: str, settings: OpenAITranscribeSettings) -> None:
        self.name = name
        self.settings = settings

    def models(self) -> list[str]:
        return [self.settings.model]

    async def transcribe(self, audio: bytes, *, filename: str = "audio.wav", language: str | None = None,
                         model: str | None = None, prompt: str | None = None) -> str:
        s = self.settings
        form = aiohttp.FormData()
        form.add_field("file", audio, filename=filename)
        form.add_field("model", model or s.model)
        form.add_field("response_format", "json")
        if language:
            form.add_field("language", language)
        if prompt:
            form.add_field("prompt", prompt)
        headers = {"authorization": f"Bearer {s.api_key.get_secret_value()}"} if s.api_key else {}
        resp = await self._post(f"{s.base_url.rstrip('/')}/audio/transcriptions", data=form, headers=headers)
        try:
            doc = await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError) as e:
            raise SluicewayError(f"{self.name}: the transcription answer was not JSON", status=502,
                                 code="upstream_error") from e
        finally:
            resp.release()
        return str(doc.get("text", "")) if isinstance(doc, dict) else ""
