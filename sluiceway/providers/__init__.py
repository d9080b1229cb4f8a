"""Provider adapters, one module per vendor wire format.

``KINDS`` maps a provider kind to its class, imported lazily so that an
optional heavy dependency (llama.cpp, transformers, botocore) is loaded only
when a provider of that kind is configured. A kind whose dependency is a pip
extra (``KIND_EXTRAS``) is checked for it first: ``MissingExtra`` names the
extra to install instead of an ImportError from deep inside the adapter.
"""

from __future__ import annotations

import importlib

from ..core.extras import require
from .base import ModelInfo, Provider

KINDS: dict[str, str] = {
    "openai": "sluiceway.providers.openai:OpenAIProvider",
    "llamacpp": "sluiceway.providers.llamacpp:LlamaCppProvider",
    "anthropic": "sluiceway.providers.anthropic:AnthropicProvider",
    "gemini": "sluiceway.providers.gemini:GeminiProvider",
    "ollama": "sluiceway.providers.ollama:OllamaProvider",
    "azure": "sluiceway.providers.azure:AzureOpenAIProvider",
    "bedrock": "sluiceway.providers.bedrock:BedrockProvider",
    "transformers": "sluiceway.providers.transformers:TransformersProvider",
    "polling": "sluiceway.providers.polling:PollingProvider",
}
KIND_EXTRAS: dict[str, str] = {"bedrock": "bedrock", "transformers": "transformers"}  # core/extras.py


def provider_class(kind: str) -> type[Provider]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None
    if kind in KIND_EXTRAS:
        require(KIND_EXTRAS[kind], f"a {kind} provider")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["KINDS", "KIND_EXTRAS", "ModelInfo", "Provider", "provider_class"]
