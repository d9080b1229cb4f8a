"""Per-key limits: requests per minute, tokens per minute and concurrent
streams, over a sliding 60-second window.

- RPM: a request is admitted while fewer than ``rpm`` were admitted in the
  last 60 s.
- TPM: tokens (input + output, from each response's usage once it ends) are
  counted; a request starts only while the last 60 s used fewer than ``tpm``.
  A single request may overshoot; the next one waits until enough tokens age
  out of the window.
- Streams: a generation holds a slot from admission until its stream ends.

``acquire`` checks all three and, only when all pass, records the request
and takes the slot, with no await in between (so the in-memory limiter is
atomic on one event loop; the Redis one does the same in one Lua script).
A limit hit raises ``RateLimited`` with ``retry_after`` in seconds.

``MemoryLimiter`` holds for this process; ``limits_redis.RedisLimiter`` is
used when ``REDIS_URL`` / ``runs.redis_url`` is set, so replicas share limits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..core import RateLimited

WINDOW = 60.0
STREAM_RETRY_AFTER = 1.0  # a slot frees when some stream ends; we cannot know when


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None

    def __bool__(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_streams is not None


class Limiter(Protocol):
    async def acquire(self, key: str, limits: Limits) -> str: ...  # a lease id for ``release``

    async def release(self, key: str, lease: str) -> None: ...  # the stream slot taken by acquire

    async def add_tokens(self, key: str, tokens: int) -> None: ...

    async def aclose(self) -> None: ...


def rpm_error(retry_after: float, rpm: int) -> RateLimited:
    return RateLimited(f"rate limit reached for this API key: {rpm} requests per minute",
                       retry_after=max(retry_after, 0.001), code="rate_limit_exceeded")


def tpm_error(retry_after: float, tpm: int) -> RateLimited:
    return RateLimited(f"rate limit reached for this API key: {tpm} tokens per minute",
                       retry_after=max(retry_after, 0.001), code="rate_limit_exceeded")


def streams_error(n: int) -> RateLimited:
    return RateLimited(f"this API key already has {n} concurrent stream(s), its limit",
                       retry_after=STREAM_RETRY_AFTER, code="rate_limit_exceeded")


@dataclass(slots=True)
class _KeyState:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    streams: int = 0


class MemoryLimiter:
    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._keys: dict[str, _KeyState] = {}

    def _state(self, key: str, now: float) -> _KeyState:
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = _KeyState()
        cut = now - self.window
        while st.requests and st.requests[0] <= cut:
            st.requests.popleft()
        while st.tokens and st.tokens[0][0] <= cut:
            st.token_sum -= st.tokens.popleft()[1]
        return st

    async def acquire(self, key: str, limits: Limits) -> str:
        now = self.clock()
        st = self._state(key, now)
        if limits.max_streams is not None and st.streams >= limits.max_streams:
            raise streams_error(limits.max_streams)
        if limits.tpm is not None and st.token_sum >= limits.tpm:
            left = st.token_sum
            for t, n in st.tokens:  # oldest first: when does the window drop below the limit?
                left -= n
                if left < limits.tpm:
                    raise tpm_error(t + self.window - now, limits.tpm)
        if limits.rpm is not None:
            if len(st.requests) >= limits.rpm:
                raise rpm_error(st.requests[0] + self.window - now, limits.rpm)
            st.requests.append(now)
        if limits.max_streams is not None:
            st.streams += 1
        return ""  # one process: a counter is enough, no lease ids

    async def release(self, key: str, lease: str) -> None:
        st = self._keys.get(key)
        if st is not None and st.streams > 0:
            st.streams -= 1

    async def add_tokens(self, key: str, tokens: int) -> None:
        if tokens <= 0:
            return
        now = self.clock()
        st = self._state(key, now)
        st.tokens.append((now, tokens))
        st.token_sum += tokens

    async def aclose(self) -> None:
        self._keys.clear()
