"""Per-key limits in Redis, shared by every replica.

Per key (``{prefix}{key}:…``):
- ``:rpm``: a sorted set of admitted requests scored by time (ms);
- ``:tpm``: a sorted set of ``<tokens>:<nonce>`` scored by time (ms);
- ``:streams``: a sorted set of the streams in flight (one lease id each),
  scored by when the lease lapses (``stream_ttl`` after admission). A
  stream's end removes its lease; a replica that died without ending its
  streams leaves leases that lapse on their own, one by one.

``acquire`` is one Lua script, so the checks and the bookkeeping are atomic
across replicas, and it reads the time from Redis (``TIME``), so replicas'
clocks need not agree. Same semantics as ``limits.MemoryLimiter``.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from .limits import WINDOW, Limits, rpm_error, streams_error, tpm_error

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local rpm, tpm, ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ms >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= ms then return {3, 0} end
end
if tpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - win)
  local items = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local sum = 0
  for i = 1, #items, 2 do sum = sum + tonumber(string.match(items[i], '^(%d+):')) end
  if sum >= tpm then
    for i = 1, #items, 2 do
      sum = sum - tonumber(string.match(items[i], '^(%d+):'))
      if sum < tpm then return {2, tonumber(items[i + 1]) + win - now} end
    end
  end
end
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tonumber(oldest[2]) + win - now}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], win)
end
if ms >= 0 then
  local ttl = tonumber(ARGV[6]) * 1000
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0, 0}
"""

ADD_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


class RedisLimiter:
    def __init__(self, url: str, *, prefix: str = "sluiceway:limits:", window: float = WINDOW,
                 stream_ttl: float = 3600.0) -> None:
        self.redis = aioredis.from_url(url)
        self.prefix = prefix
        self.window_ms = int(window * 1000)
        self.stream_ttl = max(1, int(stream_ttl))
        self._acquire = self.redis.register_script(ACQUIRE)
        self._add = self.redis.register_script(ADD_TOKENS)

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}{key}:"
        return [base + "rpm", base + "tpm", base + "streams"]

    async def acquire(self, key: str, limits: Limits) -> str:
        def arg(v: int | None) -> int:
            return -1 if v is None else v

        lease = uuid.uuid4().hex  # names this request in the rpm set and, if it holds one, its stream lease
        which, wait_ms = await self._acquire(
            keys=self._keys(key),
            args=[self.window_ms, arg(limits.rpm), arg(limits.tpm), arg(limits.max_streams), lease,
                  self.stream_ttl])
        which, wait = int(which), int(wait_ms) / 1000
        if which == 1:
            raise rpm_error(wait, limits.rpm or 0)
        if which == 2:
            raise tpm_error(wait, limits.tpm or 0)
        if which == 3:
            raise streams_error(limits.max_streams or 0)
        return lease

    async def release(self, key: str, lease: str) -> None:
        await self.redis.zrem(self._keys(key)[2], lease)

    async def add_tokens(self, key: str, tokens: int) -> None:
        if tokens > 0:
            await self._add(keys=[self._keys(key)[1]], args=[f"{tokens}:{uuid.uuid4().hex}", self.window_ms])

    async def aclose(self) -> None:
        await self.redis.aclose()
