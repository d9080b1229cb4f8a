"""Google Gemini API (``generativelanguage.googleapis.com``), native streaming.

The key goes in the ``x-goog-api-key`` header, never in the URL (``?key=``
would end up in access logs and in error messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr

from ..core import ChatRequest, Deadlines, Event
from .base import ModelInfo
from .frames import JsonSSE, relay
from .gemini_wire import ChunkAdapter, http_error, request_body
from .http import open_stream
from .remote import RemoteProvider


class GeminiSettings(BaseModel):
    base_url: str = Field("https://generativelanguage.googleapis.com", description="API host, without /v1beta")
    api_version: str = Field("v1beta", description="API version path segment")
    api_key: SecretStr | None = Field(None, description="Gemini API key, sent in the x-goog-api-key header")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Extra body fields on every request (e.g. safetySettings)")
    include_thoughts: bool = Field(False, description="Ask thinking models for thought summaries "
                                                      "(thinkingConfig.includeThoughts)")
    models: list[str] = Field(default_factory=list, description="Models to list instead of asking the API")


class GeminiProvider(RemoteProvider):
    kind: ClassVar[str] = "gemini"
    Settings: ClassVar[type[BaseModel]] = GeminiSettings
    settings: GeminiSettings

    def __init__(self, name: str, settings: GeminiSettings) -> None:
        super().__init__(name, settings)
        self.base_url = f"{settings.base_url.rstrip('/')}/{settings.api_version.strip('/')}"

    def headers(self) -> dict[str, str]:
        return self.with_key(self.settings.api_key, "x-goog-api-key")

    def body(self, req: ChatRequest) -> dict[str, Any]:
        body = request_body(req, include_thoughts=self.settings.include_thoughts)
        return {**self.settings.params, **body} if self.settings.params else body

    def stream_url(self, model: str) -> str:
        model = model.removeprefix("models/")
        return f"{self.base_url}/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        # error bodies go through gemini_wire.http_error: they carry the key-invalid
        # reason and the retry delay in ``error.details``
        opening = open_stream(self.session, self.stream_url(req.model), provider=self.name, deadline=deadline,
                              json=self.body(req), headers=self.headers(), trace=req.wire, error=http_error)
        return relay(opening, JsonSSE(ChunkAdapter(req, req.model), self.name), deadline, self.name, req.wire)

    async def fetch_models(self) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        page: str | None = None
        for _ in range(20):  # the API pages at 50 by default; 1000 models is plenty
            params = {"pageSize": "1000", **({"pageToken": page} if page else {})}
            doc = await self.get_json(f"{self.base_url}/models", headers=self.headers(), params=params)
            if not isinstance(doc, dict):
                break
            for m in doc.get("models") or ():
                if not isinstance(m, dict) or not m.get("name"):
                    continue
                methods = m.get("supportedGenerationMethods")
                if isinstance(methods, list) and "generateContent" not in methods:
                    continue  # embedding and other non-chat models
                limit = m.get("inputTokenLimit")
                out.append(ModelInfo(str(m["name"]).removeprefix("models/"), owned_by=self.name,
                                     context_length=limit if isinstance(limit, int) else None))
            page = doc.get("nextPageToken")
            if not page:
                break
        return out
