"""Shared HTTP plumbing for adapters that talk to a remote API: one pooled
aiohttp session per provider instance, deadline-aware body reads, and
mapping of HTTP error responses to typed errors."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from ..core import Deadlines, SluicewayError, Timeout, UpstreamUnavailable, WireTrace, error_from_status

log = logging.getLogger("sluiceway.http")

MAX_ERROR_BODY = 64 * 1024
INF = float("inf")


PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def new_session(deadline: Deadlines | None = None, *, limit: int = 0) -> aiohttp.ClientSession:
    """One pooled session per provider. ``trust_env`` only when a proxy is
    configured: otherwise aiohttp reads netrc and scans the environment on a
    thread for every request, which sits on the time-to-first-token path.
    No cookie jar: a shared session must not replay one user's upstream
    cookies on another's requests."""
    d = deadline or Deadlines()
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=d.connect, connect=d.connect),
        connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True),
        json_serialize=lambda o: orjson.dumps(o).decode(),
        auto_decompress=True,
        trust_env=any(os.environ.get(v) for v in PROXY_VARS),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_message(body: bytes) -> str:
    """The human message out of the many error shapes vendors use."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:2000] or "upstream error"
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, str):
            return err
        if isinstance(err, dict):
            for key in ("message", "msg", "detail", "error"):
                if isinstance(err.get(key), str):
                    return err[key]
        for key in ("message", "detail"):
            if isinstance(doc.get(key), str):
                return doc[key]
    return body.decode("utf-8", "replace")[:2000]


ErrorHook = Callable[[int, bytes, float | None, str], SluicewayError]
"""(status, error body, Retry-After seconds, provider name) → the typed error."""


def status_error(status: int, body: bytes, retry_after: float | None, provider: str) -> SluicewayError:
    """The default hook: the status decides the error class, the body gives the message."""
    return error_from_status(status, f"{provider}: {error_message(body)}", retry_after=retry_after,
                             provider=provider)


async def raise_for_status(resp: aiohttp.ClientResponse, provider: str, trace: WireTrace | None = None,
                           error: ErrorHook = status_error) -> None:
    """Raise the typed error of an error response (releasing it). ``error`` is
    the adapter's hook for vendors whose error bodies say more than the status
    (Gemini's key-invalid reason and retry delay, Bedrock's 424)."""
    if resp.status < 400:
        return
    try:
        body = await resp.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, OSError):
        body = b""  # the status alone still says what went wrong
    finally:
        resp.release()
    if trace is not None:
        trace.on_data(body)
    raise error(resp.status, body, parse_retry_after(resp.headers.get("retry-after")), provider)


class DeadlineReader:
    """Reads a response body chunk by chunk under first-token, idle and total
    deadlines. A coroutine per read rather than an async generator, to keep
    the per-chunk call chain short.

    One timer per stream rather than a timeout per read: a read only moves
    the deadline (a float), and the timer, when it fires, re-arms itself at
    the current deadline or cancels the read waiting past it. The idle
    deadline moves forward with every read, so the timer is re-armed about
    once per idle period instead of being made and cancelled per chunk."""

    __slots__ = ("_content", "_loop", "_next", "_idle", "_total_at", "_provider", "_first", "_timer", "_armed_at",
                 "_waiting", "_expired")

    def __init__(self, resp: aiohttp.ClientResponse, deadline: Deadlines, provider: str,
                 started: float | None = None) -> None:
        self._content = resp.content
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._total_at = (started or now) + deadline.total if deadline.total else None
        self._idle = deadline.idle
        self._next = now + deadline.first_token if deadline.first_token else None
        self._provider = provider
        self._first = False  # has content arrived? until then the first-token deadline holds
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = INF
        self._waiting: asyncio.Task[Any] | None = None  # the task inside read(), if any
        self._expired = False

    def _when(self) -> float | None:
        if self._next is None:
            return self._total_at
        if self._total_at is None:
            return self._next
        return min(self._next, self._total_at)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_at = None, INF
        when = self._when()
        if when is None:
            return
        if self._loop.time() < when:
            self._arm(when)  # reads moved the deadline on since this was armed
        elif self._waiting is not None:
            self._expired = True
            self._waiting.cancel()
        # else no read is waiting: the next read() arms a timer at the past deadline, which fires at once

    async def read(self) -> bytes:
        when = self._when()
        if when is not None and when < self._armed_at:
            self._arm(when)  # the first read, or the first token brought the deadline forward
        self._waiting = asyncio.current_task()
        try:
            data = await self._content.readany()
        except asyncio.CancelledError:
            if self._expired and self._waiting is not None and self._waiting.uncancel() == 0:
                raise self._timeout() from None
            raise
        except aiohttp.ClientPayloadError as e:
            # the library's wording ("<TransferEncodingError: 400, ...>") means nothing to a client
            log.info("%s: upstream body incomplete: %s", self._provider, e)
            raise UpstreamUnavailable(f"{self._provider}: the upstream connection broke before the answer "
                                      "was complete", provider=self._provider) from None
        except (aiohttp.ClientConnectionError, ConnectionError) as e:
            raise UpstreamUnavailable(f"{self._provider}: upstream connection lost: {type(e).__name__}",
                                      provider=self._provider) from None
        finally:
            self._waiting = None
        if self._first:
            self._next = self._loop.time() + self._idle if self._idle is not None else None
        return data

    def _timeout(self) -> Timeout:
        kind = "total" if self._total_at is not None and self._loop.time() >= self._total_at else (
            "idle" if self._first else "first-token")
        return Timeout(f"{self._provider}: upstream {kind} timeout", provider=self._provider)

    def mark_first_token(self) -> None:
        """Content has arrived: switch from the first-token deadline to the idle deadline."""
        if not self._first:
            self._first = True
            self._next = self._loop.time() + self._idle if self._idle is not None else None

    def close(self) -> None:
        """The stream is over: drop the timer (it holds this reader alive until it fires)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def open_stream(session: aiohttp.ClientSession, url: str, *, provider: str, deadline: Deadlines,
                      json: object = None, data: bytes | None = None, headers: dict | None = None,
                      params: dict | None = None, method: str = "POST",
                      trace: WireTrace | None = None, error: ErrorHook = status_error) -> aiohttp.ClientResponse:
    """Send the request and wait for response headers, mapping failures to typed errors
    (an error status through ``error``). ``trace`` (the request's ``wire``) records the
    exchange for the debug trace."""
    body = orjson.dumps(json) if json is not None else data
    hdrs = {"content-type": "application/json", **(headers or {})}
    if trace is not None:
        shown = f"{url}?{'&'.join(f'{k}={v}' for k, v in params.items())}" if params else str(url)
        trace.on_request(method, shown, hdrs, body)
    try:
        async with asyncio.timeout(deadline.first_token):
            resp = await session.request(method, url, data=body, headers=hdrs, params=params)
    except TimeoutError:
        raise Timeout(f"{provider}: no response headers in time", provider=provider) from None
    except aiohttp.ClientConnectorError as e:
        raise UpstreamUnavailable(f"{provider}: cannot connect to upstream ({e.os_error.__class__.__name__})",
                                  provider=provider) from None
    except (aiohttp.ClientError, OSError) as e:
        raise UpstreamUnavailable(f"{provider}: upstream request failed: {type(e).__name__}",
                                  provider=provider) from None
    if trace is not None:
        trace.on_response(resp.status, resp.headers)
    await raise_for_status(resp, provider, trace, error)
    return resp
