"""Google Gemini API (``generativelanguage.googleapis.com``), native streaming.

The key goes in the ``x-goog-api-key`` header, never in the URL (``?key=``
would end up in access logs and in error messages).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from ..core import ChatRequest, Deadlines, Event, Timeout, UpstreamUnavailable
from .base import ModelInfo
from .frames import JsonSSE, relay
from .gemini_wire import ChunkAdapter, http_error, request_body
from .http import MAX_ERROR_BODY, new_session, parse_retry_after


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


class GeminiProvider:
    kind: ClassVar[str] = "gemini"
    Settings: ClassVar[type[BaseModel]] = GeminiSettings

    def __init__(self, name: str, settings: GeminiSettings) -> None:
        self.name = name
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self.base_url = f"{settings.base_url.rstrip('/')}/{settings.api_version.strip('/')}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session()
        return self._session

    def headers(self) -> dict[str, str]:
        h = dict(self.settings.headers)
        if self.settings.api_key is not None:
            h["x-goog-api-key"] = self.settings.api_key.get_secret_value()
        return h

    def body(self, req: ChatRequest) -> dict[str, Any]:
        body = request_body(req, include_thoughts=self.settings.include_thoughts)
        return {**self.settings.params, **body} if self.settings.params else body

    def stream_url(self, model: str) -> str:
        model = model.removeprefix("models/")
        return f"{self.base_url}/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"

    async def _open(self, req: ChatRequest, deadline: Deadlines) -> aiohttp.ClientResponse:
        """Send the request and wait for headers; error bodies are read here
        (not in http.open_stream) because Gemini's carry the key-invalid
        reason and the retry delay in ``error.details``."""
        hdrs = {"content-type": "application/json", **self.headers()}
        url, body = self.stream_url(req.model), orjson.dumps(self.body(req))
        if req.wire is not None:
            req.wire.on_request("POST", url, hdrs, body)
        try:
            async with asyncio.timeout(deadline.first_token):
                resp = await self.session.post(url, data=body, headers=hdrs)
        except TimeoutError:
            raise Timeout(f"{self.name}: no response headers in time", provider=self.name) from None
        except (aiohttp.ClientError, OSError) as e:
            raise UpstreamUnavailable(f"{self.name}: cannot reach upstream ({type(e).__name__})",
                                      provider=self.name) from None
        if req.wire is not None:
            req.wire.on_response(resp.status, resp.headers)
        if resp.status >= 400:
            try:
                body = await resp.content.read(MAX_ERROR_BODY)
            except (aiohttp.ClientError, OSError):
                body = b""
            finally:
                resp.release()
            if req.wire is not None:
                req.wire.on_data(body)
            raise http_error(resp.status, body, parse_retry_after(resp.headers.get("retry-after")), self.name)
        return resp

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        return relay(self._open(req, deadline), JsonSSE(ChunkAdapter(req, req.model), self.name), deadline,
                     self.name, req.wire)

    async def list_models(self) -> list[ModelInfo]:
        if self.settings.models:
            return [ModelInfo(m, owned_by=self.name) for m in self.settings.models]
        out: list[ModelInfo] = []
        page: str | None = None
        for _ in range(20):  # the API pages at 50 by default; 1000 models is plenty
            params = {"pageSize": "1000", **({"pageToken": page} if page else {})}
            async with self.session.get(f"{self.base_url}/models", headers=self.headers(), params=params,
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status >= 400:
                    return out
                doc = orjson.loads(await resp.read())
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

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
