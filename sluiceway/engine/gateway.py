"""The gateway object the server holds: configured providers and the router."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass

from pydantic import ValidationError

from ..core.extras import MissingExtra
from ..core.secrets import SECRETS, install_log_scrubber, secret_values
from ..providers import ModelInfo, Provider, provider_class
from ..providers.worker import WorkerProvider
from .agents.provider import attach as attach_agents
from .config import Config, ConfigError, ModelConfig
from .metrics import Metrics
from .router import Router
from .strict import did_you_mean, explain, explain_unknown, known_keys
from .voice.service import SpeechService
from .workflows.provider import attach as attach_workflows

log = logging.getLogger("sluiceway")

EMBEDDED_PROVIDER = "local"
EMBEDDED_ALIAS = "smollm2"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
FORM_KEYS = ("display_name", "default_model")  # provider keys kept for the settings UI (engine/settings)


@dataclass(slots=True, frozen=True)
class ListedModel:
    id: str
    provider: str
    owned_by: str
    created: int


def build_provider(name: str, settings: dict, config: Config | None = None) -> Provider:
    settings = dict(settings)
    source = config.path if config else None
    text = config.text if config else None
    kind = settings.pop("kind", None) or name
    try:
        cls = provider_class(kind)
    except (ValueError, MissingExtra) as e:
        raise ConfigError(f"{source}: providers.{name}: {e}" if source else f"providers.{name}: {e}") from None
    settings.pop("timeouts", None)
    for key in FORM_KEYS:  # what the settings form shows about an instance; not the adapter's business
        settings.pop(key, None)
    # Unknown keys are errors: a dropped ``baseurl`` once sent an API key to the default host.
    known = {*known_keys(cls.Settings), "kind", "timeouts"}
    for key in settings:
        if key not in known:
            raise ConfigError(explain_unknown(source, text, ("providers", name, key), did_you_mean(key, known),
                                              f"a {kind} provider takes: {', '.join(sorted(known))}"))
    try:
        validated = cls.Settings.model_validate(settings)
    except ValidationError as e:
        raise ConfigError(explain(e, cls.Settings, source=source, text=text, prefix=("providers", name))) from None
    if getattr(cls, "runs_in_worker", False):  # native inference: a crash must not take the gateway down
        return WorkerProvider(cls, name, validated)
    return cls(name, validated)  # type: ignore[call-arg]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.metrics = Metrics()
        self.providers: dict[str, Provider] = {}
        self._specs: dict[str, dict] = {}
        self.reload(config)

    def reload(self, config: Config) -> list[Provider]:
        """Apply ``config``'s providers and routes, at startup and at runtime
        (engine/settings): a provider whose settings are unchanged keeps its
        instance, and streams already open keep the instance they hold.
        Returns the replaced and removed providers, for the caller to close
        once their streams have ended."""
        specs = dict(config.providers)
        models = dict(config.models)
        default_model = config.default_model
        if config.embedded and EMBEDDED_PROVIDER not in specs:
            specs[EMBEDDED_PROVIDER] = {"kind": "llamacpp"}
        if EMBEDDED_PROVIDER in specs and specs[EMBEDDED_PROVIDER].get("kind", "llamacpp") == "llamacpp":
            models.setdefault(EMBEDDED_ALIAS, ModelConfig.parse(EMBEDDED_ALIAS, f"{EMBEDDED_PROVIDER}/{EMBEDDED_MODEL}"))
            if default_model is None and not config.providers:
                default_model = EMBEDDED_ALIAS
        providers: dict[str, Provider] = {
            n: self.providers[n] if n in self.providers and self._specs.get(n) == s else build_provider(n, s, config)
            for n, s in specs.items()}
        attach_agents(self, config, providers)  # agent/<name>: steps call back through self.router
        attach_workflows(self, config, providers)  # workflow/<id>: model components call self.router
        try:
            router = Router(providers, models, config.timeouts, default_model,
                            resilience=config.resilience, metrics=self.metrics)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for p in providers.values():  # redaction by value: traces, errors, logs, the store
            SECRETS.add(secret_values(p.settings))
        SECRETS.add([*config.server.api_keys, config.server.admin_key or ""])
        install_log_scrubber()
        old_speech = getattr(self, "speech", None)  # engine/voice: kept while its config is unchanged
        speech = old_speech if old_speech is not None and old_speech.config == config.voice else \
            SpeechService(config.voice, source=config.path, text=config.text)
        retired = [p for n, p in self.providers.items() if providers.get(n) is not p]
        self.config, self.providers, self.router = config, providers, router
        self.speech = speech
        self._specs = copy.deepcopy(specs)
        self._models_cache: tuple[float, list[ListedModel]] | None = None
        return retired

    async def list_models(self, *, refresh: bool = False, ttl: float = 60.0) -> list[ListedModel]:
        """Aliases first, then every provider's upstream models as provider/model."""
        now = time.monotonic()
        if not refresh and self._models_cache and now - self._models_cache[0] < ttl:
            return self._models_cache[1]
        out = [ListedModel(alias, "+".join(sorted({d.provider.name for d in r.deployments})), "sluiceway", 0)
               for alias, r in self.router.routes.items()]

        async def one(p: Provider) -> list[ModelInfo]:
            try:
                async with asyncio.timeout(10):
                    return await p.list_models()
            except Exception as e:  # a dead provider must not hide the others
                log.warning("listing models of %s failed: %s", p.name, e)
                return []

        names = list(self.providers)
        for name, infos in zip(names, await asyncio.gather(*(one(self.providers[n]) for n in names)), strict=True):
            out.extend(ListedModel(f"{name}/{m.id}", name, m.owned_by or name, m.created) for m in infos)
        out.extend(ListedModel(m, "speech", "sluiceway", 0) for m in self.speech.speech_models())  # espeak, …
        self._models_cache = (now, out)
        return out

    def health(self) -> dict[str, dict]:
        """Providers that can be unhealthy on their own (local model workers)."""
        return {n: p.health() for n, p in self.providers.items() if isinstance(p, WorkerProvider)}

    async def aclose(self) -> None:
        await self.speech.aclose()
        for p in self.providers.values():
            try:
                await p.aclose()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing provider %s", p.name)
