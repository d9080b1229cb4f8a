"""AWS Bedrock ConverseStream (``POST /model/{modelId}/converse-stream``).

The request is signed with botocore's SigV4 signer and credentials from the
usual AWS chain (environment, shared config/profile, SSO, container or
instance roles) unless keys are configured; it is sent with aiohttp. The
binary ``application/vnd.amazon.eventstream`` response is framed and
CRC-checked by botocore's own ``EventStreamBuffer``; each message's JSON
payload goes through ``ConverseAdapter`` (``bedrock_wire.py``), a pure state
machine like the other adapters' (event type + payload in, canonical events out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from pydantic import BaseModel, Field, SecretStr
from yarl import URL

from ..core import (
    AuthError,
    ChatRequest,
    Deadlines,
    Event,
    SluicewayError,
    UpstreamError,
)
from .base import ModelInfo
from .bedrock_wire import (
    ConverseAdapter,
    EventStreamFrames,
    request_body,
)
from .frames import relay
from .http import open_stream, status_error
from .remote import RemoteProvider

log = logging.getLogger("sluiceway.providers.bedrock")


# --------------------------------------------------------------------- the I/O

class BedrockSettings(BaseModel):
    region: str = Field("us-east-1", description="AWS region of the Bedrock runtime endpoint")
    endpoint_url: str | None = Field(None, description="Override the runtime endpoint (VPC endpoints, tests)")
    access_key_id: str | None = Field(None, description="AWS access key id; empty = the usual AWS credential chain")
    secret_access_key: SecretStr | None = Field(None, description="AWS secret access key")
    session_token: SecretStr | None = Field(None, description="AWS session token for temporary credentials")
    profile: str | None = Field(None, description="Named profile of the shared AWS config, for the chain")
    max_tokens: int | None = Field(None, ge=1, description="maxTokens when the request gives none")
    models: list[str] = Field(default_factory=list, description="Model or inference-profile ids to list")
    control_endpoint_url: str | None = Field(None, description="Override the control-plane endpoint used to "
                                                               "list foundation models")


def http_error(status: int, body: bytes, retry_after: float | None, provider: str) -> SluicewayError:
    """An error response before the stream. 424 is ModelErrorException: the
    model failed, not the request, so another deployment may do."""
    err = status_error(status, body, retry_after, provider)
    return UpstreamError(err.message, provider=provider) if status == 424 else err


class BedrockProvider(RemoteProvider):
    kind: ClassVar[str] = "bedrock"
    Settings: ClassVar[type[BaseModel]] = BedrockSettings
    settings: BedrockSettings

    def __init__(self, name: str, settings: BedrockSettings) -> None:
        super().__init__(name, settings)
        self.endpoint = (settings.endpoint_url or f"https://bedrock-runtime.{settings.region}.amazonaws.com").rstrip("/")
        self._chain: Any = None  # credentials from the chain, resolved once (they refresh themselves)

    async def credentials(self) -> ReadOnlyCredentials:
        s = self.settings
        if s.access_key_id and s.secret_access_key is not None:
            token = s.session_token.get_secret_value() if s.session_token else None
            return Credentials(s.access_key_id, s.secret_access_key.get_secret_value(), token) \
                .get_frozen_credentials()
        if self._chain is None:
            import botocore.session

            # the chain may read files or ask the instance metadata service: keep it off the loop
            session = botocore.session.Session(profile=s.profile)
            self._chain = await asyncio.to_thread(session.get_credentials)
            if self._chain is None:
                raise AuthError(f"{self.name}: no AWS credentials found (configure keys, a profile or a role)",
                                provider=self.name)
        return await asyncio.to_thread(self._chain.get_frozen_credentials)

    async def signed(self, method: str, url: str, body: bytes | None, service: str = "bedrock",
                     headers: dict[str, str] | None = None) -> dict[str, str]:
        """Headers for ``url`` signed with SigV4 (the URL must be sent exactly as signed)."""
        aws = AWSRequest(method=method, url=url, data=body, headers=headers or {})
        SigV4Auth(await self.credentials(), service, self.settings.region).add_auth(aws)
        return dict(aws.headers.items())

    def url(self, model: str) -> str:
        # model ids and ARNs carry ':' and '/': encode once here, SigV4 encodes the path again
        return f"{self.endpoint}/model/{quote(model, safe='')}/converse-stream"

    def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        # finished (metadata seen) is the end of the body; otherwise relay drops the
        # connection so Bedrock stops generating
        return relay(self._open(req, deadline), EventStreamFrames(ConverseAdapter(req, req.model)), deadline,
                     self.name, req.wire)

    async def _open(self, req: ChatRequest, deadline: Deadlines) -> aiohttp.ClientResponse:
        body = orjson.dumps(request_body(req, default_max_tokens=self.settings.max_tokens))
        url = self.url(req.model)
        headers = await self.signed("POST", url, body, headers={
            "content-type": "application/json", "accept": "application/vnd.amazon.eventstream"})
        return await open_stream(self.session, URL(url, encoded=True), provider=self.name,  # type: ignore[arg-type]
                                 deadline=deadline, data=body, headers=headers, trace=req.wire, error=http_error)

    async def fetch_models(self) -> list[ModelInfo]:
        base = (self.settings.control_endpoint_url or f"https://bedrock.{self.settings.region}.amazonaws.com")
        url = f"{base.rstrip('/')}/foundation-models?byOutputModality=TEXT"
        headers = await self.signed("GET", url, None)
        doc = await self.get_json(URL(url, encoded=True), headers=headers)
        summaries = doc.get("modelSummaries", []) if isinstance(doc, dict) else []
        return [ModelInfo(str(m["modelId"]), owned_by=str(m.get("providerName") or "bedrock"))
                for m in summaries if isinstance(m, dict) and m.get("modelId")]
