"""Retiring a provider instance replaced at runtime: it is closed only after
the streams it serves have ended. The router counts them where it opens and
closes streams (``engine/inflight.py``), so nothing wraps a provider's stream."""

from __future__ import annotations

import logging
from typing import Any

from ..inflight import inflight, wait_idle

log = logging.getLogger("sluiceway.settings")

__all__ = ["inflight", "retire"]


async def retire(provider: Any, grace: float = 900.0) -> None:
    """Close ``provider`` once its streams have ended (at most ``grace`` seconds)."""
    if not await wait_idle(provider, grace):
        log.warning("closing provider %s with %d streams still open", provider.name, inflight(provider))
    try:
        await provider.aclose()
        log.info("closed replaced provider instance %s", provider.name)
    except Exception:
        log.exception("closing replaced provider %s", provider.name)
