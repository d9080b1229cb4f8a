"""The provider kinds a user can pick in the settings form, with vendor
presets, and each kind's form: the JSON Schema of its pydantic ``Settings``
plus the hints a form needs (secret, required, advanced, default, presets).

A kind is code (``sluiceway/providers/<kind>.py``); this module only
describes it. What the adapters' Settings lack for a form (which fields
matter first, which vendors a kind covers) lives here, not in the adapters.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import SecretStr

from ...providers import KINDS, provider_class

# The form's own keys, stored in the provider entry next to the settings
# (gateway.FORM_KEYS) and never passed to the adapter.
NAME_FIELD = {"type": "string", "title": "Name", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
              "description": "Short id; models are addressed as <name>/<model>"}
FORM_FIELDS: dict[str, dict[str, Any]] = {
    "display_name": {"type": "string", "title": "Display name", "description": "Shown in the UI"},
    "default_model": {"type": "string", "title": "Default model",
                      "description": "Used by the connection test and selected after saving"},
}


# Titles for settings whose generated title reads badly ("Base Url")
TITLES = {"base_url": "Base URL", "api_key": "API key", "endpoint_url": "Endpoint URL", "submit_url": "Submit URL",
          "status_url": "Status URL", "cancel_url": "Cancel URL", "api_version": "API version",
          "ad_token": "Entra ID token", "access_key_id": "Access key ID", "secret_access_key": "Secret access key",
          "auth_token": "Auth token", "model_path": "Model path", "model_id": "Model ID", "n_ctx": "Context size"}


def _preset(vendor: str, default_model: str = "", **settings: Any) -> dict[str, Any]:
    return {"vendor": vendor, "default_model": default_model, "settings": settings}


KIND_INFO: dict[str, dict[str, Any]] = {
    "openai": {
        "title": "OpenAI-compatible",
        "description": "Any API that speaks OpenAI Chat Completions over SSE.",
        "primary": ["base_url", "api_key"],
        "vendors": [
            _preset("OpenAI", "gpt-4.1-mini", base_url="https://api.openai.com/v1"),
            _preset("DeepSeek", "deepseek-chat", base_url="https://api.deepseek.com/v1"),
            _preset("Groq", "llama-3.1-8b-instant", base_url="https://api.groq.com/openai/v1"),
            _preset("SiliconFlow", "deepseek-ai/DeepSeek-V3", base_url="https://api.siliconflow.cn/v1"),
            _preset("Volcengine Ark", "", base_url="https://ark.cn-beijing.volces.com/api/v3"),
            _preset("OpenRouter", "openai/gpt-4.1-mini", base_url="https://openrouter.ai/api/v1"),
            _preset("Moonshot", "moonshot-v1-8k", base_url="https://api.moonshot.cn/v1"),
            _preset("DashScope (Qwen)", "qwen-plus", base_url="https://dashscope.aliyuncs.com/compatible-mode/v1"),
            _preset("Mistral", "mistral-small-latest", base_url="https://api.mistral.ai/v1"),
            _preset("Together", "", base_url="https://api.together.xyz/v1"),
            _preset("vLLM", "", base_url="http://127.0.0.1:8000/v1"),
            _preset("llama.cpp server", "", base_url="http://127.0.0.1:8080/v1"),
            _preset("LM Studio", "", base_url="http://127.0.0.1:1234/v1"),
            _preset("Ollama (/v1)", "", base_url="http://127.0.0.1:11434/v1"),
        ],
    },
    "anthropic": {
        "title": "Anthropic Messages",
        "description": "Claude through the Messages API (thinking, tool use, cache usage).",
        "primary": ["base_url", "api_key"],
        "vendors": [_preset("Anthropic", "claude-sonnet-4-5", base_url="https://api.anthropic.com")],
    },
    "gemini": {
        "title": "Google Gemini",
        "description": "streamGenerateContent over SSE; the key goes in a header.",
        "primary": ["api_key", "base_url"],
        "vendors": [_preset("Google AI Studio", "gemini-2.5-flash",
                            base_url="https://generativelanguage.googleapis.com")],
    },
    "ollama": {
        "title": "Ollama (native)",
        "description": "Ollama's own /api/chat NDJSON stream.",
        "primary": ["base_url"],
        "vendors": [_preset("Ollama", "llama3.2", base_url="http://127.0.0.1:11434")],
    },
    "azure": {
        "title": "Azure OpenAI",
        "description": "Azure OpenAI deployments (api-key or Entra token).",
        "primary": ["endpoint", "api_key", "api_version", "deployments"],
        "vendors": [],
    },
    "bedrock": {
        "title": "AWS Bedrock",
        "description": "ConverseStream with SigV4; the usual AWS credential chain when no keys are given.",
        "primary": ["region", "access_key_id", "secret_access_key"],
        "vendors": [],
    },
    "polling": {
        "title": "Polling task API",
        "description": "APIs that return growing snapshots of a task; diffed into a stream.",
        "primary": ["submit_url", "status_url", "api_key"],
        "vendors": [],
    },
    "llamacpp": {
        "title": "Local GGUF (llama.cpp)",
        "description": "A GGUF file on this machine, in a supervised worker process.",
        "primary": ["model_path"],
        "vendors": [],
    },
    "transformers": {
        "title": "Local Hugging Face model",
        "description": "A model directory on this machine (needs the transformers extra).",
        "primary": ["model_path"],
        "vendors": [],
    },
}


def info(kind: str) -> dict[str, Any]:
    return KIND_INFO.get(kind) or {"title": kind, "description": "", "primary": [], "vendors": []}


def kinds() -> list[dict[str, Any]]:
    out = []
    for kind in KINDS:
        i = info(kind)
        out.append({"kind": kind, "title": i["title"], "description": i["description"],
                    "vendors": [v["vendor"] for v in i["vendors"]]})
    return out


def is_secret(prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf") or [prop]
    return any(o.get("writeOnly") or o.get("format") == "password" for o in options)


def widget(prop: dict[str, Any]) -> str:
    """How a form edits the field: text, password, number, integer, checkbox, list, json."""
    if is_secret(prop):
        return "password"
    types = [o.get("type") for o in (prop.get("anyOf") or [prop])]
    for t, w in (("boolean", "checkbox"), ("integer", "integer"), ("number", "number"),
                 ("array", "list"), ("object", "json")):
        if t in types:
            return w if len([x for x in types if x != "null"]) == 1 else "json"
    return "text"


def secret_fields(kind: str) -> list[str]:
    """Settings typed ``SecretStr`` (also inside ``X | None``), without building a JSON Schema."""
    try:
        fields = provider_class(kind).Settings.model_fields
    except (ValueError, ImportError, AttributeError):
        return []
    return [name for name, f in fields.items()
            if f.annotation is SecretStr or SecretStr in typing.get_args(f.annotation)]


def form(kind: str) -> dict[str, Any]:
    """The schema of ``kind``'s form with per-field UI hints, required fields first."""
    cls = provider_class(kind)  # ValueError for an unknown kind
    schema = cls.Settings.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    i = info(kind)
    primary = [p for p in i["primary"] if p in props]
    fields: list[dict[str, Any]] = [{"name": "name", "widget": "text", "required": True, "secret": False,
                                     "advanced": False, "title": NAME_FIELD["title"],
                                     "description": NAME_FIELD["description"], "pattern": NAME_FIELD["pattern"]}]
    for key, meta in FORM_FIELDS.items():
        fields.append({"name": key, "widget": "text", "required": False, "secret": False, "advanced": False,
                       "title": meta["title"], "description": meta["description"]})
    for name, p in props.items():
        f: dict[str, Any] = {"name": name, "widget": widget(p), "required": name in required,
                             "secret": is_secret(p), "advanced": name not in primary and name not in required,
                             "title": TITLES.get(name) or name.replace("_", " ").capitalize(),
                             "description": p.get("description", "")}
        if "default" in p and not f["secret"]:
            f["default"] = p["default"]
        presets = sorted({v["settings"][name] for v in i["vendors"] if name in v["settings"]})
        if presets:
            f["presets"] = presets
        fields.append(f)
    order = {n: k for k, n in enumerate(primary)}
    fields[3:] = sorted(fields[3:], key=lambda f: (not f["required"], f["advanced"], order.get(f["name"], 99)))
    full = {**schema, "properties": {"name": NAME_FIELD, **FORM_FIELDS, **props},
            "required": ["name", *schema.get("required", [])]}
    return {"kind": kind, "title": i["title"], "description": i["description"], "schema": full,
            "fields": fields, "presets": i["vendors"]}
