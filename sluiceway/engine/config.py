"""Configuration: one YAML file plus environment variables.

``${env.NAME}`` anywhere in a string value is replaced from the environment
(``.env`` next to the config file, or in the working directory, is loaded
first and never overrides variables already set). A missing variable is an
error naming it, not a silent empty secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import load_dotenv
from pydantic import Field, ValidationError, field_validator

from ..core import Deadlines
from ..core.extras import MissingExtra, require
from .agents.config import AgentConfig, MCPServerConfig
from .resilience import ResilienceConfig
from .strict import Strict, explain
from .voice.config import VoiceConfig

ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_CONFIG = "sluiceway.yaml"


class ConfigError(ValueError):
    pass


class Timeouts(Strict):
    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = 900.0

    def deadlines(self) -> Deadlines:
        return Deadlines(self.connect, self.first_token, self.idle, self.total)


class DeploymentConfig(Strict):
    provider: str
    model: str
    weight: float = 1.0
    priority: int = 0
    timeouts: Timeouts | None = None


class ModelConfig(Strict):
    deployments: list[DeploymentConfig]
    strategy: Literal["priority", "weighted", "least-busy"] = "priority"  # see engine/router.py
    retries: int | None = None  # overrides resilience.retries for this alias
    midstream_failover: bool = False  # continue on the next deployment after a mid-stream failure

    @classmethod
    def parse(cls, alias: str, value: Any) -> ModelConfig:
        return cls.model_validate(cls.normalize(alias, value))

    @staticmethod
    def normalize(alias: str, value: Any) -> Any:
        """Accept ``alias: provider/model``, a list of those or of deployment
        objects, or the full ``{deployments: [...], strategy: ...}`` form;
        returns the full form, unvalidated (pydantic then names bad keys by path)."""
        def dep(v: Any) -> dict[str, Any]:
            if isinstance(v, str):
                provider, sep, model = v.partition("/")
                if not sep or not model:
                    raise ConfigError(f"models.{alias}: {v!r} is not provider/model")
                return {"provider": provider, "model": model}
            return v
        if isinstance(value, str):
            return {"deployments": [dep(value)]}
        if isinstance(value, list):
            return {"deployments": [dep(v) for v in value]}
        if isinstance(value, dict) and "deployments" not in value:
            return {"deployments": [dep(value)]}
        if isinstance(value, dict) and isinstance(value["deployments"], list):
            return {**value, "deployments": [dep(v) for v in value["deployments"]]}
        return value


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = Field(default_factory=list)
    keepalive: float = 15.0  # seconds of silence before an SSE comment; 0 = never
    stall_timeout: float = 60.0  # drop a client that accepts no bytes for this long; 0 = never
    max_body_bytes: int = 16 * 1024 * 1024
    cors_origins: list[str] = Field(default_factory=list)
    admin_key: str | None = None  # guards /admin/keys; SLUICEWAY_ADMIN_KEY overrides; unset = admin API off
    header_timeout: float = 10.0  # seconds a request's headers may take to arrive; then 408 and close; 0 = never
    body_timeout: float = 60.0  # seconds its body may take after the headers; 0 = never
    allowed_hosts: list[str] = Field(default_factory=list)  # extra Host names a loopback server in open mode answers
    public_metrics: bool = False  # /metrics without a key even when keys are configured
    public_docs: bool = False  # /openapi.json likewise

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, v: list[str]) -> list[str]:
        return [k for k in v if k]


class StoreConfig(Strict):
    """The conversation store. ``DATABASE_URL`` overrides ``url``."""

    url: str = "sqlite+aiosqlite:///./sluiceway.db"
    traces: bool = True  # keep a debug trace per assistant message
    trace_retention_days: float = 7.0  # traces older than this are pruned at startup; 0 = keep forever
    response_retention_days: float = 30.0  # stored /v1/responses, likewise (OpenAI keeps them 30 days)
    checkpoint_interval: float = 1.0  # seconds between saves of a streaming answer's partial text
    max_message_chars: int = 200_000


class RunsConfig(Strict):
    """Chat runs (server-owned generations). ``REDIS_URL`` overrides ``redis_url``."""

    disconnect: Literal["continue", "cancel"] = "continue"  # what a client leaving does to its run
    redis_url: str | None = None  # run logs in Redis Streams (shared by replicas) instead of memory
    ttl: float = 3600.0  # seconds a finished run's log stays readable
    shutdown_grace: float = 3.0  # seconds active runs may finish at shutdown before being interrupted
    live_ttl: float = 15.0  # with Redis: a dead replica's runs count as orphaned this long after its last heartbeat


class TelemetryConfig(Strict):
    """OpenTelemetry traces (needs the ``otel`` extra). ``OTEL_EXPORTER_OTLP_ENDPOINT`` also enables them."""

    otlp_endpoint: str | None = None
    service_name: str = "sluiceway"


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    default_model: str | None = None
    embedded: bool = True  # register the embedded SmolLM2 provider as "local"
    timeouts: Timeouts = Field(default_factory=Timeouts)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    mcp_servers: dict[str, MCPServerConfig] = Field(default_factory=dict)  # tool sources for agents
    agents: dict[str, AgentConfig] = Field(default_factory=dict)  # served as agent/<name> (engine/agents)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)  # speech providers (engine/voice)
    workflows: list[str] = Field(default_factory=list)  # model-compose files or folders, served as workflow/<id>
    path: Path | None = Field(default=None, exclude=True)
    text: str | None = Field(default=None, exclude=True, repr=False)  # the file as read, for error line numbers

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {alias: ModelConfig.normalize(alias, spec) for alias, spec in v.items()}


def expand_env(value: Any) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (referenced as ${{env.{name}}})")
        return ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


ENV_PREFIX = "SLUICEWAY_"


def env_overrides(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting from the environment: ``SLUICEWAY_`` + the key path in
    capitals with ``__`` between levels: ``SLUICEWAY_SERVER__PORT=9000``,
    ``SLUICEWAY_PROVIDERS__UP__BASE_URL=…`` (names are lower-cased), and a top-level
    setting without ``__`` (``SLUICEWAY_DEFAULT_MODEL=fast``, ``SLUICEWAY_EMBEDDED=false``).
    It beats the file. A value starting with ``[`` or ``{`` is read as YAML (lists,
    mappings); anything else stays a string for validation to convert, so a secret
    like ``0123`` is never turned into a number. Other SLUICEWAY_ variables
    (SLUICEWAY_CONFIG, SLUICEWAY_API_KEYS, …) keep their own meaning."""
    env = os.environ if environ is None else environ
    top = {n for n, f in Config.model_fields.items()  # settings, not sections: default_model, embedded, …
           if n not in ("path", "text") and not isinstance(f.get_default(call_default_factory=True), Strict | dict)}
    for name in sorted(env):
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        if not name.startswith(ENV_PREFIX) or (len(keys) == 1 and keys[0] not in top):
            continue
        if "" in keys:
            raise ConfigError(f"environment variable {name}: empty key in the path")
        value: Any = env[name]
        if value.lstrip()[:1] in ("[", "{"):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ConfigError(f"environment variable {name}: invalid YAML: {e}") from None
        node = raw
        for i, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: {'.'.join(keys[:i + 1])} is not a section")
        node[keys[-1]] = value
    return raw


POSTGRES_URLS = ("postgres://", "postgresql://", "postgresql+asyncpg://")  # what the store opens with asyncpg


def check_extras(cfg: Config, environ: Mapping[str, str] | None = None) -> None:
    """A ``ConfigError`` naming the pip extra (``core/extras.py``) for what the
    configuration turns on and this install lacks, before anything starts.
    Providers and speech kinds are checked where they are built."""
    env = os.environ if environ is None else environ
    src = f"{cfg.path}: " if cfg.text is not None else ""
    wants: list[tuple[str, str]] = []
    db = env.get("DATABASE_URL")
    if (db or cfg.store.url).startswith(POSTGRES_URLS):
        wants.append(("postgres", "DATABASE_URL (PostgreSQL)" if db else f"{src}store.url (PostgreSQL)"))
    if env.get("REDIS_URL"):
        wants.append(("redis", "REDIS_URL"))
    elif cfg.runs.redis_url:
        wants.append(("redis", f"{src}runs.redis_url"))
    if cfg.mcp_servers:
        wants.append(("mcp", f"{src}mcp_servers"))
    if cfg.telemetry.otlp_endpoint:
        wants.append(("otel", f"{src}telemetry.otlp_endpoint"))
    for extra, feature in wants:
        try:
            require(extra, feature)
        except MissingExtra as e:
            raise ConfigError(e.message) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    explicit = path is not None or "SLUICEWAY_CONFIG" in os.environ
    p = Path(path or os.environ.get("SLUICEWAY_CONFIG", DEFAULT_CONFIG))
    load_dotenv(p.parent / ".env" if p.parent != Path() else ".env", override=False)
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist")
        try:
            cfg = Config.model_validate(env_overrides({}))
        except ValidationError as e:
            raise ConfigError(explain(e, Config)) from None
        cfg.path = p  # not there yet: the settings API (engine/settings) creates it here
        check_extras(cfg)
        return cfg
    text = p.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    try:
        cfg = Config.model_validate(env_overrides(expand_env(raw)))
    except ConfigError:
        raise
    except ValidationError as e:
        raise ConfigError(explain(e, Config, source=p, text=text)) from None
    except ValueError as e:
        raise ConfigError(f"{p}: {e}") from None
    cfg.path = p
    cfg.text = text
    check_extras(cfg)
    return cfg


def parse_provider_flag(flag: str) -> tuple[str, dict[str, Any]]:
    """``name=openai,base_url=http://…,api_key=${env.KEY}`` → (name, settings).
    The first item names the provider and gives its kind."""
    items = [s for s in flag.split(",") if s]
    if not items or "=" not in items[0]:
        raise ConfigError(f"--provider {flag!r}: expected name=kind,key=value,…")
    name, _, kind = items[0].partition("=")
    settings: dict[str, Any] = {"kind": kind}
    for item in items[1:]:
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"--provider {flag!r}: {item!r} is not key=value")
        settings[k.strip()] = v
    return name.strip(), expand_env(settings)
