"""Optional features and the pip extra that provides each.

The default install serves the embedded model, the web UI and every remote
provider that speaks HTTP. What only some users need is an extra
(``pip install 'sluiceway[redis]'``); this table is the one place that says
which extra brings which modules, and ``require`` is the one way code asks for
one, so a missing extra is a clear message naming it, at configuration time,
never an ImportError traceback.
"""

from __future__ import annotations

import importlib.util

from .errors import SluicewayError

# extra → the top-level modules it installs (pyproject.toml's optional-dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "bedrock": ("botocore",),
    "postgres": ("asyncpg",),
    "redis": ("redis",),
    "mcp": ("mcp",),
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "transformers": ("transformers", "torch"),
    "voice": ("pocketsphinx",),
}


class MissingExtra(SluicewayError):
    """A configured feature whose extra is not installed."""

    status = 501
    code = "extra_not_installed"

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra, which is not installed: "
                         f"pip install 'sluiceway[{extra}]'")
        self.extra = extra
        self.feature = feature


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module without a spec
        return False


def installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be imported (looked up, not imported)."""
    return all(_found(m) for m in EXTRAS[extra])


def require(extra: str, feature: str) -> None:
    """Raise ``MissingExtra`` unless ``extra`` is installed; ``feature`` says
    what needs it, in the user's terms (a config key, a provider kind)."""
    if not installed(extra):
        raise MissingExtra(extra, feature)


__all__ = ["EXTRAS", "MissingExtra", "installed", "require"]
