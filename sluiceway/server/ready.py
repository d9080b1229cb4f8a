"""Readiness (``GET /readyz``): may this replica take traffic now? Unlike
liveness (``/healthz``, 200 while the process serves), it checks what a request
needs: the store answers a query, Redis answers a PING when configured, and at
least one provider is usable (a local worker not crash-looping, a remote one
with a deployment whose circuit is not open). No upstream is called: a probe
every few seconds must not cost tokens or hit rate limits.

200 ``{"status": "ready", "checks": {...}}`` or 503 ``"not_ready"`` with the
failing check's reason, so an orchestrator takes the replica out of rotation.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .errors import json_response

PROBE_TIMEOUT = 2.0  # seconds per check: a hung database must not hang the probe


async def _store(state: Any) -> dict[str, Any]:
    if state.store is None:
        return {"ok": False, "reason": "store not open"}
    from sqlalchemy import text

    async with state.store.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {"ok": True}


async def _redis(state: Any) -> dict[str, Any] | None:
    url = os.environ.get("REDIS_URL") or state.config.runs.redis_url
    if not url:
        return None
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return {"ok": True}


def _providers(state: Any) -> dict[str, Any]:
    gw = state.gateway
    health = gw.health()  # worker-backed providers only
    closed: dict[str, bool] = {}  # provider -> has a deployment whose circuit is closed
    for route in [*gw.router.routes.values(), *gw.router._direct.values()]:
        for dep in route.deployments:
            name = dep.provider.name
            closed[name] = closed.get(name, False) or dep.breaker.opened_at is None
    usable = [n for n in gw.providers
              if health.get(n, {}).get("status") != "unhealthy" and closed.get(n, True)]
    if not usable:
        return {"ok": False, "reason": "no usable provider", "providers": sorted(gw.providers)}
    return {"ok": True, "usable": sorted(usable)}


async def _check(coro) -> dict[str, Any] | None:  # noqa: ANN001
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await coro
    except Exception as e:  # noqa: BLE001 - the reason is the answer
        return {"ok": False, "reason": f"{type(e).__name__}: {e}"[:300]}


async def readyz(request: Request) -> Response:
    state = request.app.state.sluiceway
    store, redis = await asyncio.gather(_check(_store(state)), _check(_redis(state)))
    checks: dict[str, Any] = {"store": store, "providers": _providers(state)}
    if redis is not None:
        checks["redis"] = redis
    ready = all(c["ok"] for c in checks.values())
    return json_response({"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503)
