"""A provider form body → the YAML entry to save and the secrets for ``.env``,
with one error message per field.

Secrets are the kind's ``SecretStr`` settings and credential-looking entries
of ``headers`` / ``query`` (``authorization``, ``x-api-key``…). Each goes to
``.env`` as ``SLUICEWAY_<NAME>_<FIELD>`` and the entry keeps a
``${env.…}`` reference. A secret left empty, or sent back masked as the API
shows it, keeps its saved value.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import ValidationError

from ...providers import KINDS, provider_class
from ..config import ENV_REF, ConfigError
from ..gateway import FORM_KEYS
from ..strict import did_you_mean, known_keys
from . import catalogue

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SECRET_MAPS = ("headers", "query")  # dict settings whose credential-looking entries are secrets


class FieldErrors(ValueError):
    """Validation failed; ``fields`` maps a form field to what is wrong with it."""

    def __init__(self, fields: dict[str, str], status: int = 422) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields
        self.status = status


def mask(value: str) -> str:
    """``sk-abc…wxyz`` → ``sk-…wxyz``: enough to recognise a key, never enough to use it."""
    if not value:
        return ""
    if ENV_REF.fullmatch(value):
        return value
    head = value.split("-", 1)[0] + "-" if "-" in value[:8] else ""
    return f"{head}…{value[-4:]}" if len(value) >= 12 else "…"


def is_masked(value: Any) -> bool:
    return isinstance(value, str) and "…" in value


def looks_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in ("auth", "key", "token", "secret", "pass", "cookie", "signature"))


def env_name(provider: str, field: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", f"SLUICEWAY_{provider}_{field}".upper())


def expand(value: Any, pending: dict[str, str]) -> Any:
    """``${env.X}`` from ``pending`` (secrets about to be written), else the environment."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in pending:
                return pending[name]
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (referenced as ${{env.{name}}})")
        return ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand(v, pending) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, pending) for v in value]
    return value


def _secret(name: str, field: str, value: Any, old: Any, env: dict[str, str]) -> Any:
    """The entry's value for a secret: kept, a reference, or a new ``.env`` variable."""
    if value in ("", None) or is_masked(value) or value == old:
        return old
    if not isinstance(value, str):
        raise TypeError("must be a string")
    if ENV_REF.fullmatch(value):
        return value
    var = env_name(name, field)
    env[var] = value
    return f"${{env.{var}}}"


def validate(body: dict[str, Any], existing: dict[str, Any] | None = None, *,
             partial: bool = False) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    """(name, kind, the YAML entry, secrets for ``.env``), or ``FieldErrors``.
    ``existing`` is the saved entry (an update). PATCH (``partial``) keeps
    every field not sent; PUT keeps only the secrets (they are never sent back)."""
    errors: dict[str, str] = {}
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        errors["name"] = "required: lowercase letters, digits, - and _ (models are named <name>/<model>)"
    kind = body.get("kind") or (existing or {}).get("kind")
    if kind not in KINDS:
        errors["kind"] = f"unknown kind {kind!r}; known: {', '.join(KINDS)}"
    if errors:
        raise FieldErrors(errors)
    assert isinstance(name, str) and isinstance(kind, str)
    cls = provider_class(kind)
    known = set(known_keys(cls.Settings))
    secrets = set(catalogue.secret_fields(kind))
    entry: dict[str, Any] = {"kind": kind}
    old = {k: v for k, v in (existing or {}).items() if k != "kind"} \
        if existing is not None and existing.get("kind", kind) == kind else {}
    entry.update({k: v for k, v in old.items() if partial or k in secrets})
    env: dict[str, str] = {}
    for key, value in body.items():
        if key in ("name", "kind"):
            continue
        if key not in known and key not in FORM_KEYS:
            errors[key] = f"unknown field{did_you_mean(key, known | set(FORM_KEYS))}"
            continue
        try:
            if key in secrets:
                kept = _secret(name, key, value, old.get(key), env)
                if kept is None or value is None and partial:
                    entry.pop(key, None)  # PATCH {"api_key": null} removes it
                else:
                    entry[key] = kept
            elif value is None or value == "":
                entry.pop(key, None)  # back to the default
            elif key in SECRET_MAPS and isinstance(value, dict):
                before = old.get(key) if isinstance(old.get(key), dict) else {}
                entry[key] = {k: _secret(name, f"{key}_{k}", v, before.get(k), env) if looks_secret(k) else v
                              for k, v in value.items()}
            else:
                entry[key] = value
        except TypeError as e:
            errors[key] = str(e)
    # check what the adapter will get, secrets resolved
    resolved: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "kind" or key in FORM_KEYS:
            continue
        try:
            resolved[key] = expand(value, env)
        except ConfigError as e:
            errors[key] = str(e)
    for key, value in resolved.items():
        if key.endswith("url") and isinstance(value, str) and value and not re.match(r"^https?://[^/\s]+", value):
            errors[key] = "must be an http:// or https:// URL"
    try:  # the fields not already refused, so every problem is reported at once
        cls.Settings.model_validate({k: v for k, v in resolved.items() if k not in errors})
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "kind"
            errors.setdefault(field, "unknown field" if err.get("type") == "extra_forbidden" else err["msg"])
    if errors:
        raise FieldErrors(errors)
    return name, kind, entry, env


def references(entry: dict[str, Any], prefix: str) -> tuple[str, ...]:
    """The ``${env.…}`` variables an entry refers to whose names start with ``prefix``."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.extend(m.group(1) for m in ENV_REF.finditer(v) if m.group(1).startswith(prefix))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(entry)
    return tuple(out)
