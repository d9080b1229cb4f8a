"""Run logs in Redis, shared by every replica.

Per run:
- ``{prefix}{id}`` — a Redis Stream; entry ``n-0`` holds event ``n`` (field
  ``d``), the last one also has ``end``. So ``XREAD … n-0`` is exactly
  "everything after event n", which is what ``Last-Event-ID: n`` asks for.
- ``{prefix}{id}:meta`` — the run's metadata (JSON).
- ``{prefix}{id}:live`` — present while the owning process runs it; the owner
  refreshes its TTL, so a crashed owner's runs stop looking live.

Everything expires ``ttl`` seconds after its last write. Stop requests are
published on ``{prefix}stop``; the owner's subscriber cancels the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from .hub import Entry

log = logging.getLogger("sluiceway.hub")


class RedisRunLog:
    def __init__(self, url: str, *, ttl: float = 3600.0, prefix: str = "sluiceway:run:",
                 live_ttl: float = 15.0) -> None:
        self.redis = aioredis.from_url(url)
        self.ttl = max(1, int(ttl))
        self.prefix = prefix
        self.live_ttl = live_ttl
        self._seq: dict[str, int] = {}  # runs this process owns → last sequence number
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None

    def _key(self, run_id: str, suffix: str = "") -> str:
        return f"{self.prefix}{run_id}{suffix}"

    async def open(self, on_stop: Callable[[str, str], Awaitable[None]]) -> None:
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(self.prefix + "stop")  # subscribed before we return: no stop is missed
        self._tasks = [asyncio.create_task(self._listen(on_stop), name="runlog-stop-listener"),
                       asyncio.create_task(self._heartbeat(), name="runlog-heartbeat")]

    async def _listen(self, on_stop: Callable[[str, str], Awaitable[None]]) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis went away: retry rather than lose stops forever
                log.warning("run stop listener: %s", e)
                await asyncio.sleep(1.0)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            run_id, _, reason = msg["data"].decode().partition(" ")
            if run_id in self._seq:
                await on_stop(run_id, reason or "stopped")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.live_ttl / 3)
            if not self._seq:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as p:
                    for run_id in list(self._seq):
                        p.expire(self._key(run_id, ":live"), int(self.live_ttl))
                    await p.execute()
            except Exception as e:
                log.warning("run heartbeat: %s", e)

    async def create(self, run_id: str, meta: dict[str, Any]) -> None:
        self._seq[run_id] = 0
        async with self.redis.pipeline(transaction=True) as p:
            p.set(self._key(run_id, ":meta"), orjson.dumps(meta), ex=self.ttl)
            p.set(self._key(run_id, ":live"), b"1", ex=int(self.live_ttl))
            await p.execute()

    async def append(self, run_id: str, payloads: list[bytes], *, end: bool = False) -> None:
        n = self._seq.get(run_id)
        if n is None:
            return
        key = self._key(run_id)
        async with self.redis.pipeline(transaction=True) as p:
            for i, payload in enumerate(payloads, n + 1):
                fields: dict[str, bytes] = {"d": payload}
                if end and i == n + len(payloads):
                    fields["end"] = b"1"
                p.xadd(key, fields, id=f"{i}-0")
            p.expire(key, self.ttl)
            if end:
                p.expire(self._key(run_id, ":meta"), self.ttl)
                p.delete(self._key(run_id, ":live"))
            await p.execute()
        self._seq[run_id] = n + len(payloads)
        if end:
            del self._seq[run_id]

    async def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        if not await self.redis.exists(self._key(run_id, ":meta")):
            return
        key = self._key(run_id)
        last = f"{max(after, 0)}-0"
        block = int((heartbeat or 5.0) * 1000)
        while True:
            got = await self.redis.xread({key: last}, count=1000, block=block)
            if not got:
                if heartbeat is not None:
                    yield []
                if not await self.is_live(run_id):
                    # the owner is gone (or the run ended and expired): read what is left, then stop
                    got = await self.redis.xread({key: last}, count=100000)
                    if not got:
                        return
                else:
                    continue
            entries = got[0][1]
            out: list[Entry] = []
            ended = False
            for eid, fields in entries:
                out.append((int(eid.split(b"-", 1)[0]), fields[b"d"]))
                ended = ended or b"end" in fields
            last = entries[-1][0].decode()
            yield out
            if ended:
                return

    async def meta(self, run_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key(run_id, ":meta"))
        return orjson.loads(raw) if raw else None

    async def is_live(self, run_id: str) -> bool:
        return bool(await self.redis.exists(self._key(run_id, ":live")))

    async def live_among(self, run_ids: list[str]) -> set[str]:
        if not run_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as p:
            for r in run_ids:
                p.exists(self._key(r, ":live"))
            found = await p.execute()
        return {r for r, ok in zip(run_ids, found, strict=True) if ok}

    async def wait_ended(self, run_id: str) -> None:
        last = await self.redis.xrevrange(self._key(run_id), count=1)
        after = int(last[0][0].split(b"-", 1)[0]) - 1 if last else 0  # re-read the last entry: is it the end?
        async for _ in self.read(run_id, after, heartbeat=1.0):
            pass

    async def request_stop(self, run_id: str, reason: str) -> None:
        await self.redis.publish(self.prefix + "stop", f"{run_id} {reason}")

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self.redis.aclose()
