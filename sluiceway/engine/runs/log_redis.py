"""Run logs in Redis, shared by every replica.

Per run:
- ``{prefix}{id}`` — a Redis Stream of event *groups*: entry ``n-0`` holds
  events ``s…n`` (field ``s`` = s, field ``d`` = their JSON joined by
  newlines, which compact JSON never contains); the last entry also has
  ``end``. ``XREAD … n-0`` returns every group that ends after event n, and
  the reader drops the events ≤ n of the first one: exactly what
  ``Last-Event-ID: n`` asks for. One entry per write, not per event, keeps
  Redis cheap on fast streams.
- ``{prefix}{id}:meta`` — the run's metadata (JSON).
- ``{prefix}{id}:live`` — present while the owning process runs it; the owner
  refreshes its TTL, so a crashed owner's runs stop looking live.

Everything expires ``ttl`` seconds after its last write. Stop requests are
published on ``{prefix}stop``; the owner's subscriber cancels the run.

The owner also keeps its runs in a local ``MemoryRunLog``: its own readers
(the client that started the run, reattaches that land on the same replica)
read from memory, and Redis is written behind by one writer task per run that
sends whatever has piled up in one pipelined round trip. So Redis latency is
never on the relay path, and a slow Redis coalesces writes instead of
slowing the stream. Only the end of a run waits for Redis to have it all.

This is the only run log that serialises events (``core.codec``): the
writer encodes what it sends, a remote reader decodes what it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from ...core import Event, decode_event, encode_event
from .log_memory import Entry, JsonEntry, MemoryRunLog

log = logging.getLogger("sluiceway.runs")

# delete a key only if it still holds the given value, atomically
_DROP_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(slots=True)
class _Writer:
    pending: list[Event] = field(default_factory=list)
    end: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class RedisRunLog:
    def __init__(self, url: str, *, ttl: float = 3600.0, prefix: str = "sluiceway:run:",
                 live_ttl: float = 15.0) -> None:
        self.redis = aioredis.from_url(url)
        self.ttl = max(1, int(ttl))
        self.prefix = prefix
        self.live_ttl = live_ttl
        self._seq: dict[str, int] = {}  # runs this process owns → last sequence number
        self._writers: dict[str, _Writer] = {}
        self.local = MemoryRunLog(ttl=min(ttl, 60.0))  # Redis has the log after that
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
                        p.pexpire(self._key(run_id, ":live"), int(self.live_ttl * 1000))
                    await p.execute()
            except Exception as e:
                log.warning("run heartbeat: %s", e)

    async def create(self, run_id: str, meta: dict[str, Any]) -> None:
        await self.local.create(run_id, meta)
        self._seq[run_id] = 0
        w = self._writers[run_id] = _Writer()
        w.task = asyncio.create_task(self._drain(run_id, w), name=f"runlog-writer-{run_id}")
        async with self.redis.pipeline(transaction=True) as p:
            p.set(self._key(run_id, ":meta"), orjson.dumps(meta), ex=self.ttl)
            p.set(self._key(run_id, ":live"), b"1", px=int(self.live_ttl * 1000))
            await p.execute()

    async def append(self, run_id: str, events: list[Event], *, end: bool = False) -> None:
        await self.local.append(run_id, events, end=end)
        w = self._writers.get(run_id)
        if w is None:
            return
        w.pending.extend(events)
        w.end = w.end or end
        w.wake.set()
        if end and w.task is not None:
            try:  # remote readers and stoppers wait for the end: let Redis have it before we go on
                await asyncio.wait_for(asyncio.shield(w.task), 10)
            except Exception as e:
                log.warning("run %s: flushing to Redis failed: %s", run_id, e)

    async def _drain(self, run_id: str, w: _Writer) -> None:
        while True:
            await w.wake.wait()
            w.wake.clear()
            batch, w.pending = w.pending, []
            end = w.end  # set in the same synchronous step as the last payloads: they are in batch
            if batch or end:
                try:
                    await self._write(run_id, batch, end)
                except Exception as e:  # the local readers are unaffected; remote ones see a gap
                    log.warning("run %s: writing %d event(s) to Redis failed: %s", run_id, len(batch), e)
            if end:
                self._writers.pop(run_id, None)
                return

    async def _write(self, run_id: str, events: list[Event], end: bool) -> None:
        payloads = [encode_event(ev) for ev in events]
        n = self._seq.get(run_id)
        if n is None:
            return
        # numbers are taken even if the write fails, so Redis ids always match the local ones
        self._seq[run_id] = n + len(payloads)
        if end:
            del self._seq[run_id]
        key = self._key(run_id)
        last = n + len(payloads)
        fields: dict[str, bytes | int] = {"s": n + 1, "d": b"\n".join(payloads)}
        if end:
            fields["end"] = 1
        async with self.redis.pipeline(transaction=True) as p:
            # an end with no events of its own (never expected) still needs an id above the last group
            p.xadd(key, fields, id=f"{last}-0" if payloads else f"{last}-1")
            p.expire(key, self.ttl)
            if end:
                p.expire(self._key(run_id, ":meta"), self.ttl)
                p.delete(self._key(run_id, ":live"))
            await p.execute()

    def read(self, run_id: str, after: int, *, heartbeat: float | None = None) -> AsyncIterator[list[Entry]]:
        if self.local.has(run_id):
            return self.local.read(run_id, after, heartbeat=heartbeat)
        return self._decoded(self._read_redis(run_id, after, heartbeat))

    def read_json(self, run_id: str, after: int, *,
                  heartbeat: float | None = None) -> AsyncIterator[list[JsonEntry]]:
        if self.local.has(run_id):
            return self.local.read_json(run_id, after, heartbeat=heartbeat)
        return self._read_redis(run_id, after, heartbeat)  # already JSON: passed on as it is

    def json(self, run_id: str) -> list[bytes]:
        return self.local.json(run_id)

    @staticmethod
    async def _decoded(entries: AsyncIterator[list[JsonEntry]]) -> AsyncIterator[list[Entry]]:
        async for batch in entries:
            yield [(n, decode_event(payload)) for n, payload in batch]

    async def _read_redis(self, run_id: str, after: int, heartbeat: float | None) -> AsyncIterator[list[JsonEntry]]:
        if not await self.redis.exists(self._key(run_id, ":meta")):
            return
        key = self._key(run_id)
        seen = max(after, 0)
        last = f"{seen}-0"
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            # short blocks: well under the client's socket timeout, and a dead owner is noticed within ~1 s
            got = await self.redis.xread({key: last}, count=1000, block=1000)
            if not got:
                if not await self.is_live(run_id):
                    # the owner is gone (or the run ended and expired): read what is left, then stop
                    got = await self.redis.xread({key: last}, count=100000)
                    if not got:
                        return
                else:
                    if heartbeat is not None and loop.time() - quiet_since >= heartbeat:
                        quiet_since = loop.time()
                        yield []
                    continue
            quiet_since = loop.time()
            entries = got[0][1]
            out: list[JsonEntry] = []
            ended = False
            for _, fields in entries:
                if fields[b"d"]:
                    for i, payload in enumerate(fields[b"d"].split(b"\n"), int(fields[b"s"])):
                        if i > seen:
                            out.append((i, payload))
                            seen = i
                ended = ended or b"end" in fields
            last = entries[-1][0].decode()
            if out:
                yield out
            if ended:
                return

    async def meta(self, run_id: str) -> dict[str, Any] | None:
        if self.local.has(run_id):
            return await self.local.meta(run_id)
        raw = await self.redis.get(self._key(run_id, ":meta"))
        return orjson.loads(raw) if raw else None

    async def is_live(self, run_id: str) -> bool:
        if self.local.has(run_id):
            return await self.local.is_live(run_id)
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
        if self.local.has(run_id):
            return await self.local.wait_ended(run_id)
        last = await self.redis.xrevrange(self._key(run_id), count=1)
        after = int(last[0][0].split(b"-", 1)[0]) - 1 if last else 0  # re-read the last entry: is it the end?
        async for _ in self._read_redis(run_id, after, 1.0):
            pass

    async def request_stop(self, run_id: str, reason: str) -> None:
        await self.redis.publish(self.prefix + "stop", f"{run_id} {reason}")

    # aliases live in Redis only: any replica may be asked to resolve one
    async def set_alias(self, name: str, run_id: str) -> None:
        await self.redis.set(self._key("alias:" + name), run_id, ex=self.ttl)

    async def get_alias(self, name: str) -> str | None:
        raw = await self.redis.get(self._key("alias:" + name))
        return raw.decode() if raw else None

    async def drop_alias(self, name: str, run_id: str) -> None:
        await self.redis.eval(_DROP_IF_EQUAL, 1, self._key("alias:" + name), run_id)

    async def aclose(self) -> None:
        writers = [w.task for w in self._writers.values() if w.task is not None]
        if writers:  # runs have ended by now (the service closes first): let their last writes land
            await asyncio.wait(writers, timeout=5)
        for w in self._writers.values():
            if w.task is not None:
                w.task.cancel()
        await self.local.aclose()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self.redis.aclose()
