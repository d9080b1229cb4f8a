"""Changes made elsewhere: hand edits of ``sluiceway.yaml`` / ``.env``
(a stat poll, cheap and reliable on every filesystem, including network
ones where inotify is blind to other machines' writes), and changes made by
another replica (Redis pub/sub: the replica that wrote the shared files
publishes, the others re-read them at once instead of at their next poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from pathlib import Path

import orjson

from ..config import ConfigError
from .admin import ProviderAdmin

log = logging.getLogger("sluiceway.settings")
CHANNEL = "sluiceway:settings"


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class SettingsSync:
    def __init__(self, admin: ProviderAdmin, redis_url: str | None = None, interval: float = 0.5) -> None:
        self.admin = admin
        self.redis_url = redis_url
        self.interval = interval
        self.origin = uuid.uuid4().hex
        self._stamps = self._now()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis = None
        self.reloads = 0  # applied changes that came from outside this process (tests read it)

    def _now(self) -> tuple:
        return _stamp(self.admin.path), _stamp(self.admin.env_path)

    async def start(self) -> None:
        self.admin.listeners.append(self._changed_here)
        if self.admin.path is not None:  # a config given in code has no file to watch
            self._tasks.append(asyncio.create_task(self._watch(), name="settings-watch"))
        if self.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url)
            self._tasks.append(asyncio.create_task(self._listen(), name="settings-redis"))

    async def _apply(self, why: str) -> None:
        try:
            async with self.admin.lock:
                self._stamps = self._now()
                await self.admin.reload()
            self.reloads += 1
            log.info("providers reloaded (%s)", why)
        except ConfigError as e:  # keep serving with what runs now; say what is wrong
            log.error("not applying %s: %s", why, e)
        except Exception:
            log.exception("reloading settings (%s) failed", why)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._now() != self._stamps:
                await self._apply("the config file changed")

    async def _changed_here(self) -> None:
        self._stamps = self._now()  # our own write: already applied
        if self._redis is not None:
            await self._redis.publish(CHANNEL, orjson.dumps({"origin": self.origin}))

    async def _listen(self) -> None:
        assert self._redis is not None
        delay = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                delay = 0.5
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    try:
                        origin = orjson.loads(msg["data"]).get("origin")
                    except Exception:
                        origin = None
                    if origin != self.origin:
                        await self._apply("another replica changed providers")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("settings subscription lost (%s); retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
