"""Who is calling, and may they: API keys, model allow-lists and limits.

Every API route calls ``authenticate(request)`` where it used to check the
static key list, and generation routes call ``admit(request, model)`` once
they know the model. The resulting ``Grant`` is a stream observer
(``engine.runs.Observer``): it records the response's token usage when the
stream finishes and frees the key's stream slot when it ends.

Keys:
- static keys (``server.api_keys``): no limits, every model;
- virtual keys (``sluiceway keys create`` / ``POST /admin/keys``): looked up
  by SHA-256 in the store, with a short in-process cache (``CACHE_TTL``; so
  a key revoked from another process stops working within that time, and a
  revocation through this process's admin API at once).

A server with neither static nor active virtual keys is open, as before;
once any key exists a request must present one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from ..core import AuthError, Event, PermissionDenied, Usage
from ..engine.limits import Limiter, Limits, MemoryLimiter
from ..engine.runs import Outcome
from ..store import ANY, Owner
from .requests import presented_key

if TYPE_CHECKING:
    from .state import AppState

log = logging.getLogger("sluiceway.auth")
T = TypeVar("T")

CACHE_TTL = 2.0  # seconds a key lookup (hit or miss) is trusted
CACHE_MAX = 10_000
VIRTUAL_PREFIX = "sk-sw-"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a virtual key (``key_id``), a static key or nobody (open server)."""

    key_id: str | None = None
    name: str = "anonymous"
    models: tuple[str, ...] = ()  # empty: every model
    limits: Limits = Limits()
    admin: bool = False  # the admin key: sees every key's sessions, messages, traces and runs

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    @property
    def owner(self) -> Owner:
        """What this caller may read and change: its own key's rows (a virtual key),
        the rows of static keys and of an open server (None), or all (the admin)."""
        return ANY if self.admin else self.key_id


ANONYMOUS = Principal()
STATIC = Principal(name="static")
ADMIN = Principal(name="admin", admin=True)


class Grant:
    """One admitted generation, as a stream observer: ``batch`` sees the
    finish usage, ``end`` frees the stream slot (once)."""

    __slots__ = ("auth", "key", "lease", "holds", "counts", "_counted", "_ended")

    def __init__(self, auth: Auth | None = None, key: str | None = None, *, lease: str = "", holds: bool = False,
                 counts: bool = False) -> None:
        self.auth, self.key, self.lease, self.holds, self.counts = auth, key, lease, holds, counts
        self._counted = self._ended = False

    @property
    def inert(self) -> bool:
        """Nothing to count and no slot to free: a stream need not call it."""
        return not (self.holds or self.counts)

    def batch(self, events: list[Event]) -> None:
        if self.counts and events and events[-1].type == "finish":
            self.count(events[-1].usage)  # type: ignore[union-attr]

    def count(self, usage: Usage | None) -> None:
        if not self.counts or self._counted or usage is None or self.auth is None or self.key is None:
            return
        self._counted = True
        self.auth.spawn(self.auth.limiter.add_tokens(self.key, usage.total))

    def observers(self, *others: Any) -> list[Any]:
        """``others`` then this grant, unless it has nothing to do: the common
        stream (no limited key) pays for no extra observer per batch."""
        return [*others] if self.inert else [*others, self]

    async def end(self, outcome: Outcome = Outcome.COMPLETE) -> None:
        self.release()

    def release(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self.holds and self.auth is not None and self.key is not None:
            self.auth.spawn(self.auth.limiter.release(self.key, self.lease))

    async def guard(self, work: Awaitable[T]) -> T:
        """Await ``work`` (opening the upstream); if it fails, the slot is freed."""
        try:
            return await work
        except BaseException:
            self.release()
            raise


FREE = Grant()  # static keys and open servers: nothing to hold or count


class Auth:
    def __init__(self, state: AppState, limiter: Limiter | None = None, *, cache_ttl: float = CACHE_TTL) -> None:
        self.state = state
        self.limiter: Limiter = limiter or MemoryLimiter()
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, Principal | None, bool]] = {}  # hash → (expires, principal, revoked)
        self._any_keys: tuple[float, bool] = (0.0, False)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def _once(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """Single-flight: concurrent callers share one query instead of each
        queueing its own on the database (a stampede when a cache entry lapses
        while many streams open at once)."""
        fut = self._inflight.get(key)
        if fut is None:
            fut = self._inflight[key] = asyncio.ensure_future(fetch())
            fut.add_done_callback(lambda _f: self._inflight.pop(key, None))
        return await asyncio.shield(fut)

    @classmethod
    def for_state(cls, state: AppState) -> Auth:
        """Limits in Redis when ``REDIS_URL`` / ``runs.redis_url`` is set, else in memory."""
        url = os.environ.get("REDIS_URL") or state.config.runs.redis_url
        if url:
            from ..engine.limits_redis import RedisLimiter

            return cls(state, RedisLimiter(url))
        return cls(state)

    @property
    def admin_key(self) -> str | None:
        return os.environ.get("SLUICEWAY_ADMIN_KEY") or self.state.config.server.admin_key or None

    # ------------------------------------------------------------ keys
    async def authenticate(self, request: Request) -> Principal:
        static = self.state.api_keys
        key = presented_key(request)
        if key is not None:
            admin = self.admin_key
            if admin and hmac.compare_digest(key.encode(), admin.encode()):
                return ADMIN
            if static and _is_static(key, static):
                return STATIC
            if key.startswith(VIRTUAL_PREFIX) and self.state.store is not None:
                principal, revoked = await self._lookup(key)
                if principal is not None:
                    return principal
                if revoked:
                    raise AuthError("this API key has been revoked", code="invalid_api_key")
            if not static and not await self._keys_exist():
                return ANONYMOUS  # an open server ignores unknown keys, as it always has
            raise AuthError("invalid API key", code="invalid_api_key")
        if not static and not await self._keys_exist():
            return ANONYMOUS
        raise AuthError("missing API key: send Authorization: Bearer <key>", code="missing_api_key")

    async def _lookup(self, raw: str) -> tuple[Principal | None, bool]:
        from ..store.keys import find_key, hash_key

        h = hash_key(raw)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        store = self.state.store
        assert store is not None
        rec = await self._once(h, lambda: find_key(store, raw))
        principal, revoked = None, False
        if rec is not None:
            revoked = rec["revoked_at"] is not None
            if not revoked:
                principal = Principal(rec["id"], rec["name"], tuple(rec["models"]),
                                      Limits(rec["rpm"], rec["tpm"], rec["max_concurrent_streams"]))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[h] = (time.monotonic() + self.cache_ttl, principal, revoked)
        return principal, revoked

    async def _keys_exist(self) -> bool:
        store = self.state.store
        if store is None:
            return False
        now = time.monotonic()
        if self._any_keys[0] > now:
            return self._any_keys[1]
        from ..store.keys import has_active_keys

        exists = await self._once("*any-keys*", lambda: has_active_keys(store))
        self._any_keys = (time.monotonic() + self.cache_ttl, exists)
        return exists

    def forget(self) -> None:
        """Drop cached lookups (after this process created or revoked a key)."""
        self._cache.clear()
        self._any_keys = (0.0, False)

    # ---------------------------------------------------------- limits
    async def admit(self, principal: Principal, model: str) -> Grant:
        if model in ("", "default"):  # the default model is allowed by its own name
            model = self.state.gateway.router.default_model or model
        if not principal.allows(model):
            raise PermissionDenied(f"this API key may not use the model {model!r}", code="model_not_allowed",
                                   param="model")
        if principal.key_id is None or not principal.limits:
            return FREE
        lease = await self.limiter.acquire(principal.key_id, principal.limits)
        return Grant(self, principal.key_id, lease=lease, holds=principal.limits.max_streams is not None,
                     counts=principal.limits.tpm is not None)

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("limit bookkeeping failed: %s", task.exception())

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.limiter.aclose()


def _is_static(key: str, keys: list[str]) -> bool:
    k = key.encode()
    ok = False
    for candidate in keys:  # compare with every key so timing does not tell which matched
        ok |= hmac.compare_digest(k, candidate.encode())
    return ok


def auth_of(request: Request) -> Auth:
    auth = getattr(request.app.state, "auth", None)
    if auth is None:  # an app built without create_app's wiring: memory limits
        auth = request.app.state.auth = Auth(request.app.state.sluiceway)
    return auth


async def authenticate(request: Request) -> Principal:
    """Resolve the presented key (401 when required and missing, unknown or
    revoked). Remembered on the request for ``admit``."""
    principal = await auth_of(request).authenticate(request)
    request.state.principal = principal
    return principal


async def admit(request: Request, model: str) -> Grant:
    """Check the model against the key's allow-list (403) and take its limits
    (429 with ``retry_after``); the returned grant must be ended."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        principal = await authenticate(request)
    return await auth_of(request).admit(principal, model)


def owner(request: Request) -> Owner:
    """The owner filter of an authenticated request (see ``Principal.owner``)."""
    principal = getattr(request.state, "principal", None)
    return principal.owner if principal is not None else None


def row_owner(filter_: Owner) -> str | None:
    """The owner to record on what a caller makes: the admin's rows, like static keys', are None."""
    return None if filter_ == ANY else filter_
