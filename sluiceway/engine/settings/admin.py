"""Provider instances as data: list, create, update, delete while the server runs.

An instance lives in ``sluiceway.yaml`` under ``providers.<name>``; its
secrets live in ``.env`` as ``SLUICEWAY_<NAME>_<FIELD>`` (``…_API_KEY``)
and the YAML refers to them as ``${env.…}``. Every change is written to disk
first and then applied by re-reading the file, so a change made here, a
hand edit and a change made by another replica all take the same path
(``reload``). Secrets are never returned (``mask``) and never logged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap

from ...providers import KINDS
from ..config import ENV_REF, Config, ConfigError, expand_env
from ..gateway import EMBEDDED_PROVIDER, FORM_KEYS, Gateway
from ..strict import explain
from . import catalogue
from .files import edit_yaml, update_env
from .form import env_name, looks_secret, mask, references, validate
from .inflight import retire

log = logging.getLogger("sluiceway.settings")
APPLIED_KEYS = ("models", "default_model", "timeouts", "resilience", "embedded")  # what a reload changes


class Conflict(ValueError):
    pass


class ProviderAdmin:
    def __init__(self, gateway: Gateway, path: Path | None = None, env_path: Path | None = None) -> None:
        self.gateway = gateway
        base = gateway.config
        # None: a config built in memory (tests, embedding) — readable here, never written
        self.path: Path | None = Path(path or base.path) if (path or base.path) else None
        self.env_path: Path | None = Path(env_path) if env_path else (
            self.path.with_name(".env") if self.path else None)
        self.base = base
        # providers that came from elsewhere (--provider, an in-memory config): kept under the file's
        try:
            file_providers = self._raw().get("providers") or {}
        except yaml.YAMLError:
            file_providers = {}
        self.overlay = {n: s for n, s in base.providers.items() if n not in file_providers}
        self.had_file = self.path is not None and self.path.exists()
        # .env values this process took from the file (a real environment variable always wins)
        self.from_env = {k: v for k, v in dotenv_values(self.env_path).items()
                         if v is not None and os.environ.get(k) == v} \
            if self.env_path is not None and self.env_path.exists() else {}
        self.lock = asyncio.Lock()
        self.listeners: list[Any] = []  # async callables told after a local change (replica sync)
        self._closing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ reading
    def _raw(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        raw = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        return raw if isinstance(raw, dict) else {}

    def _raw_entry(self, name: str, raw: dict[str, Any] | None = None) -> dict[str, Any] | None:
        providers = (self._raw() if raw is None else raw).get("providers")
        entry = providers.get(name) if isinstance(providers, dict) else None
        return dict(entry) if isinstance(entry, dict) else None

    def source(self, name: str, raw: dict[str, Any] | None = None) -> str:
        if self._raw_entry(name, raw) is not None:
            return "file"
        if name not in self.gateway._specs:
            return "builtin"  # attached by the gateway (agents, workflows)
        if name in self.overlay:
            return "startup"
        return "embedded" if name == EMBEDDED_PROVIDER else "startup"

    def view(self, name: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """One instance as the API shows it: env references as written, secrets masked."""
        spec = self.gateway._specs.get(name)
        if spec is None:
            provider = self.gateway.providers.get(name)
            if provider is None:
                raise KeyError(name)
            # attached by the gateway itself (agents, workflows): shown, not editable here
            return {"name": name, "kind": getattr(provider, "kind", name), "display_name": name,
                    "default_model": None, "settings": {}, "secrets": {}, "source": "builtin", "editable": False}
        doc = self._raw() if doc is None else doc
        raw = self._raw_entry(name, doc) or {}
        kind = spec.get("kind") or name
        secrets = set(catalogue.secret_fields(kind)) if kind in KINDS else set()
        settings: dict[str, Any] = {}
        for key, value in spec.items():
            if key in ("kind", *FORM_KEYS):
                continue
            if key in secrets:
                settings[key] = mask(str(value)) if value else None
            elif isinstance(raw.get(key), str) and ENV_REF.search(raw[key]):
                settings[key] = raw[key]  # show the reference, not what it expands to
            elif isinstance(value, dict) and key in ("headers", "query"):
                settings[key] = {k: mask(str(v)) if looks_secret(k) else v for k, v in value.items()}
            else:
                settings[key] = value
        return {"name": name, "kind": kind, "display_name": spec.get("display_name") or name,
                "default_model": spec.get("default_model"), "settings": settings,
                "secrets": {k: bool(spec.get(k)) for k in sorted(secrets)},
                "source": self.source(name, doc), "editable": self.source(name, doc) != "embedded"}

    def list(self) -> list[dict[str, Any]]:
        doc = self._raw()  # parsed once for the whole list
        return [self.view(n, doc) for n in self.gateway.providers]

    def _writable(self) -> Path:
        if self.path is None:
            raise Conflict("this server runs on a configuration given in code, with no config file to "
                           "save to; start it with --config PATH (or from the directory of sluiceway.yaml)")
        return self.path

    # ------------------------------------------------------------ writing
    async def save(self, body: dict[str, Any], *, create: bool | None, name: str | None = None,
                   partial: bool = False) -> tuple[dict[str, Any], bool]:
        """Create (``create=True``), update (``False``) or either (``None``).
        Returns (the view, whether it existed before)."""
        async with self.lock:
            self._writable()
            if name is not None:
                body = {**body, "name": name}
            target = body.get("name")
            exists = isinstance(target, str) and target in self.gateway.providers
            if create is True and exists:
                raise Conflict(f"a provider named {target!r} already exists; "
                               "PUT /settings/providers/{name} updates it")
            if create is False and not exists:
                raise KeyError(target)
            if exists and self.source(str(target)) in ("embedded", "builtin"):
                raise Conflict(f"{target!r} is built in (the embedded model, agents, workflows); "
                               "it cannot be edited here")
            existing = self._raw_entry(str(target)) if exists else None
            if exists and existing is None:  # from the command line: start from what runs
                existing = copy.deepcopy(self.gateway._specs.get(str(target), {}))
            pname, kind, entry, env = validate(body, existing, partial=partial)
            await asyncio.to_thread(self._write, pname, entry, env)
            await self.reload()
        await self._notify()
        log.info("provider %s (%s) %s", pname, kind, "updated" if exists else "created")
        return self.view(pname), exists

    def _write(self, name: str, entry: dict[str, Any], env: dict[str, str]) -> None:
        assert self.path is not None and self.env_path is not None
        if env:
            update_env(self.env_path, env)
            for k, v in env.items():
                os.environ[k] = v
                self.from_env[k] = v

        def change(doc: CommentedMap) -> None:
            providers = doc.get("providers")
            if not isinstance(providers, dict):
                providers = doc["providers"] = CommentedMap()
            current = providers.get(name)
            if isinstance(current, dict):  # edit in place: comments on kept keys survive
                for k in [k for k in current if k not in entry]:
                    del current[k]
                for k, v in entry.items():
                    if current.get(k) != v:
                        current[k] = v
            else:
                providers[name] = CommentedMap(entry)
                providers.fa.set_block_style()  # ``providers: {}`` grows into a block, not one long line

        edit_yaml(self.path, change)

    async def delete(self, name: str) -> dict[str, Any]:
        async with self.lock:
            if name not in self.gateway.providers:
                raise KeyError(name)
            self._writable()
            src = self.source(name)
            if src != "file":
                raise Conflict(f"{name!r} is not defined in {self.path} ({src}); remove it where it is defined")
            users = [a for a, mc in self.gateway.config.models.items()
                     if any(d.provider == name for d in mc.deployments)]
            if users:
                raise Conflict(f"the model aliases {', '.join(sorted(users))} route to {name!r}; "
                               "change them first")
            view = self.view(name)
            await asyncio.to_thread(self._remove, name)
            await self.reload()
        await self._notify()
        log.info("provider %s deleted", name)
        return view

    def _remove(self, name: str) -> None:
        assert self.path is not None and self.env_path is not None
        ours = references(self._raw_entry(name) or {}, env_name(name, ""))  # secrets we wrote for it

        def change(doc: CommentedMap) -> None:
            providers = doc.get("providers")
            if isinstance(providers, dict) and name in providers:
                del providers[name]
                if not providers:  # an empty block mapping would be written as an invalid bare "{}" line
                    providers.fa.set_flow_style()

        edit_yaml(self.path, change)
        if ours:
            update_env(self.env_path, {}, ours)

    # ------------------------------------------------------------ applying
    def _refresh_env(self) -> None:
        """Re-read ``.env``: keys it set change or go; real environment variables stay."""
        values = {k: v for k, v in dotenv_values(self.env_path).items() if v is not None} \
            if self.env_path is not None and self.env_path.exists() else {}
        for k, v in values.items():
            if k not in os.environ or self.from_env.get(k) == os.environ.get(k):
                os.environ[k] = v
                self.from_env[k] = v
        for k in [k for k in self.from_env if k not in values]:
            if os.environ.get(k) == self.from_env[k]:
                del os.environ[k]
            del self.from_env[k]

    def load(self) -> Config:
        """The config to run: the file's providers (and routing) over the startup overlay."""
        if self.path is None:
            return self.base
        self._refresh_env()
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{self.path}: invalid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path}: the top level must be a mapping")
        try:
            cfg = Config.model_validate(expand_env(raw))
        except ValidationError as e:
            raise ConfigError(explain(e, Config, source=self.path, text=text)) from None
        fallback = Config() if self.had_file else self.base
        update: dict[str, Any] = {"providers": {**self.overlay, **cfg.providers}}
        for key in APPLIED_KEYS:
            update[key] = getattr(cfg, key) if key in raw else getattr(fallback, key)
        merged = self.base.model_copy(update=update)
        merged.path, merged.text = self.path, text
        return merged

    async def reload(self) -> bool:
        """Apply the files as they are now. A broken file leaves the running
        providers alone (the error is logged and raised)."""
        cfg = self.load()
        retired = self.gateway.reload(cfg)
        for p in retired:  # streams in flight finish on the old instance, then it closes
            task = asyncio.create_task(retire(p, grace=self.base.timeouts.total or 900.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if retired:
            log.info("providers reloaded; %d instance(s) retire after their streams", len(retired))
        return bool(retired)

    async def _notify(self) -> None:
        for listener in self.listeners:
            try:
                await listener()
            except Exception as e:  # a replica missing one notice still sees the file change
                log.warning("settings change notice failed: %s", e)

    async def aclose(self) -> None:
        for t in list(self._closing):
            t.cancel()

