"""What every adapter that talks to a remote HTTP API shares: its name and
settings, one pooled aiohttp session opened lazily (and reopened if it was
closed), ``aclose``, and model listing (the configured list when there is
one, else the vendor's own listing, best effort)."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, SecretStr
from yarl import URL

from .base import ModelInfo
from .http import new_session

LIST_TIMEOUT = aiohttp.ClientTimeout(total=10)


class RemoteProvider:
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    def __init__(self, name: str, settings: Any) -> None:
        self.name = name
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session()
        return self._session

    def with_key(self, key: SecretStr | None, header: str = "authorization") -> dict[str, str]:
        """The configured extra headers plus the key: a bearer token in
        Authorization, the bare key in any other header (api-key, x-goog-api-key)."""
        h = dict(getattr(self.settings, "headers", None) or {})
        value = key.get_secret_value() if key is not None else ""
        if value:
            if header.lower() == "authorization":
                h["authorization"] = f"Bearer {value}"
            else:
                h[header] = value
        return h

    async def list_models(self) -> list[ModelInfo]:
        configured = getattr(self.settings, "models", None)
        if configured:
            return [ModelInfo(m, owned_by=self.name) for m in configured]
        return await self.fetch_models()

    async def fetch_models(self) -> list[ModelInfo]:
        """The vendor's own model listing; none by default."""
        return []

    async def get_json(self, url: str | URL, *, headers: dict[str, str] | None = None,
                       params: dict[str, str] | None = None) -> Any:
        """GET a listing document; None when the API refuses it (a model list
        is informational: a refusal must not fail the caller)."""
        async with self.session.get(url, headers=headers, params=params, timeout=LIST_TIMEOUT) as resp:
            if resp.status >= 400:
                return None
            return orjson.loads(await resp.read())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
