"""Provider adapters, one module per vendor wire format.

``KINDS`` maps a provider kind to its class, imported lazily so that an
optional heavy dependency (llama.cpp, transformers, botocore) is loaded only
when a provider of that kind is configured.
"""

from __future__ import annotations

import importlib

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


def provider_class(kind: str) -> type[Provider]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["KINDS", "ModelInfo", "Provider", "provider_class"]
