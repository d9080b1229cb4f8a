"""Azure OpenAI: the Chat Completions wire format of the ``openai`` adapter,
addressed by deployment (``{endpoint}/openai/deployments/{deployment}/chat/
completions?api-version=…``) and authenticated with an ``api-key`` header.

Azure's stream opens with a ``choices: []`` chunk carrying
``prompt_filter_results`` (protocols.md §9 #12); ``ChunkAdapter`` skips empty
choices, so nothing Azure-specific is needed on the response side.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, field_validator

from ..core import ChatRequest
from .openai import OpenAIProvider, OpenAISettings


class AzureSettings(BaseModel):
    endpoint: str = Field(..., description="Resource endpoint, e.g. https://my-resource.openai.azure.com")
    api_key: SecretStr | None = Field(None, description="Resource key, sent as the api-key header")
    ad_token: SecretStr | None = Field(None, description="Microsoft Entra ID token, sent as a bearer token "
                                                         "instead of api_key")
    api_version: str = Field("2024-10-21", description="The api-version query parameter")
    deployments: dict[str, str] = Field(
        default_factory=dict,
        description="Model name → deployment name; a model not listed is used as the deployment name")
    max_tokens_field: str = Field("max_completion_tokens",
                                  description="max_tokens or max_completion_tokens (o-series need the latter)")
    stream_options: bool = Field(True, description="Ask for usage with stream_options.include_usage")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra body parameters on every request")

    @field_validator("deployments", mode="before")
    @classmethod
    def _list_is_identity(cls, v: Any) -> Any:
        # ``deployments: [gpt-4o, o3-mini]`` means deployments named like their models
        return {d: d for d in v} if isinstance(v, list) else v


class AzureOpenAIProvider(OpenAIProvider):
    """``list_models`` gives the configured deployments, else the resource's
    ``{endpoint}/openai/models``."""

    kind: ClassVar[str] = "azure"
    Settings: ClassVar[type[BaseModel]] = AzureSettings

    def __init__(self, name: str, settings: AzureSettings) -> None:
        self.azure = settings
        token = settings.ad_token
        super().__init__(name, OpenAISettings(
            base_url=f"{settings.endpoint.rstrip('/')}/openai",
            api_key=token or settings.api_key,
            auth_header="authorization" if token is not None else "api-key",
            headers=settings.headers,
            query={"api-version": settings.api_version},
            params=settings.params,
            models=list(settings.deployments),
            max_tokens_field=settings.max_tokens_field,
            stream_options=settings.stream_options,
        ))

    def deployment(self, model: str) -> str:
        return self.azure.deployments.get(model, model)

    def chat_url(self, req: ChatRequest) -> str:
        return self.url(f"deployments/{quote(self.deployment(req.model), safe='')}/chat/completions")
