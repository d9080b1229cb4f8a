"""Anthropic Messages API (``POST /v1/messages``, streaming), natively: thinking
signatures, cache usage and refusal stops survive, unlike through an
OpenAI-compatible shim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr

from ..core import ChatRequest, Deadlines, Event
from .anthropic_wire import THINKING_BUDGETS, EventAdapter, request_body
from .base import ModelInfo
from .frames import JsonSSE, relay
from .http import open_stream
from .remote import RemoteProvider


class AnthropicSettings(BaseModel):
    base_url: str = Field("https://api.anthropic.com", description="API base URL, without /v1")
    api_key: SecretStr | None = Field(None, description="Sent as the x-api-key header")
    auth_token: SecretStr | None = Field(None, description="OAuth token sent as a bearer token instead of an API key")
    anthropic_version: str = Field("2023-06-01", description="The anthropic-version header")
    beta: list[str] = Field(default_factory=list, description="Beta features for the anthropic-beta header")
    max_tokens: int = Field(4096, ge=1, description="max_tokens when the request gives none (the API requires it)")
    thinking_budgets: dict[str, int] = Field(
        default_factory=lambda: dict(THINKING_BUDGETS),
        description="Thinking budget_tokens for each reasoning_effort value")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    models: list[str] = Field(default_factory=list, description="Models to list instead of asking GET /v1/models")


class AnthropicProvider(RemoteProvider):
    kind: ClassVar[str] = "anthropic"
    Settings: ClassVar[type[BaseModel]] = AnthropicSettings
    settings: AnthropicSettings

    def __init__(self, name: str, settings: AnthropicSettings) -> None:
        super().__init__(name, settings)
        self.base_url = settings.base_url.rstrip("/")

    def headers(self) -> dict[str, str]:
        s = self.settings
        keyed = self.with_key(s.api_key, "x-api-key") if s.api_key is not None else self.with_key(s.auth_token)
        h = {"anthropic-version": s.anthropic_version, **keyed}
        if s.beta:
            h["anthropic-beta"] = ",".join(s.beta)
        return h

    def body(self, req: ChatRequest) -> dict[str, Any]:
        return request_body(req, default_max_tokens=self.settings.max_tokens,
                            thinking_budgets=self.settings.thinking_budgets)

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        opening = open_stream(self.session, f"{self.base_url}/v1/messages", provider=self.name, deadline=deadline,
                              json=self.body(req), headers={**self.headers(), "accept": "text/event-stream"},
                              trace=req.wire)
        # message_stop is the end: the rest of the body is just the close
        return relay(opening, JsonSSE(EventAdapter(req), self.name), deadline, self.name, req.wire)

    async def fetch_models(self) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        params: dict[str, str] = {"limit": "1000"}
        for _page in range(20):
            doc = await self.get_json(f"{self.base_url}/v1/models", headers=self.headers(), params=params)
            if not isinstance(doc, dict):
                break
            for m in doc.get("data") or ():
                if isinstance(m, dict) and m.get("id"):
                    out.append(ModelInfo(str(m["id"]), owned_by="anthropic", created=_created(m)))
            if not doc.get("has_more") or not doc.get("last_id"):
                break
            params = {"limit": "1000", "after_id": str(doc["last_id"])}
        return out


def _created(m: dict[str, Any]) -> int:
    if isinstance(m.get("created"), int):
        return m["created"]
    try:
        return int(datetime.fromisoformat(str(m.get("created_at")).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
