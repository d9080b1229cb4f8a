"""Any OpenAI-compatible Chat Completions API: OpenAI, DeepSeek, SiliconFlow,
Volcengine Ark, Groq, OpenRouter, vLLM, Ollama /v1, llama.cpp server, LM Studio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr

from ..core import ChatRequest, Deadlines, Event
from .base import ModelInfo
from .frames import JsonSSE, relay
from .http import open_stream
from .openai_wire import ChunkAdapter, request_body
from .remote import RemoteProvider


class OpenAISettings(BaseModel):
    base_url: str = Field("https://api.openai.com/v1", description="API base URL, up to and including /v1")
    api_key: SecretStr | None = Field(None, description="Sent as a bearer token")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    query: dict[str, str] = Field(default_factory=dict, description="Extra query parameters")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra body parameters on every request")
    models: list[str] = Field(default_factory=list, description="Models to list when the API has no /models")
    max_tokens_field: str = Field("", description="max_tokens or max_completion_tokens (auto when empty)")
    stream_options: bool = Field(True, description="Ask for usage with stream_options.include_usage")
    auth_header: str = Field("authorization", description="Header carrying the key (Azure: api-key)")


class OpenAIProvider(RemoteProvider):
    kind: ClassVar[str] = "openai"
    Settings: ClassVar[type[BaseModel]] = OpenAISettings
    settings: OpenAISettings

    def __init__(self, name: str, settings: OpenAISettings) -> None:
        super().__init__(name, settings)
        self.base_url = settings.base_url.rstrip("/")
        self._max_tokens_field = settings.max_tokens_field or (
            "max_completion_tokens" if "api.openai.com" in self.base_url else "max_tokens")

    def headers(self) -> dict[str, str]:
        return self.with_key(self.settings.api_key, self.settings.auth_header)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def chat_url(self, req: ChatRequest) -> str:
        """Where a chat request goes; Azure puts the deployment in the path."""
        return self.url("chat/completions")

    def body(self, req: ChatRequest) -> dict[str, Any]:
        body = request_body(req, stream=True, max_tokens_field=self._max_tokens_field,
                            stream_options=self.settings.stream_options)
        if self.settings.params:
            body = {**self.settings.params, **body}
        return body

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        opening = open_stream(self.session, self.chat_url(req), provider=self.name, deadline=deadline,
                              json=self.body(req), headers=self.headers(), params=self.settings.query or None,
                              trace=req.wire)
        return relay(opening, JsonSSE(ChunkAdapter(req), self.name), deadline, self.name, req.wire)

    async def fetch_models(self) -> list[ModelInfo]:
        doc = await self.get_json(self.url("models"), headers=self.headers(), params=self.settings.query or None)
        data = doc.get("data", []) if isinstance(doc, dict) else []
        return [ModelInfo(str(m.get("id")), owned_by=str(m.get("owned_by") or self.name),
                          created=int(m.get("created") or 0)) for m in data if isinstance(m, dict)]
