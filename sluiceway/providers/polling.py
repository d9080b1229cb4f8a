"""Task-style APIs that never stream: submit a task, then poll a status URL
that returns a growing snapshot of the whole answer (many hosted and
enterprise endpoints work this way, "轮询式API").

``PollingProvider`` turns the snapshots into a canonical stream: it diffs
each snapshot against what it has already emitted (``SnapshotDiff``),
honours the first-token, idle and total deadlines, and stops polling as soon
as the client leaves, calling the API's cancel endpoint when there is one.
Subclass it for a specific API (override ``submit_body``, ``parse_status``),
or configure it as the generic provider of kind ``polling``.

Unicode. A snapshot is whole text, but it can end anywhere: inside a
surrogate pair (backends that slice UTF-16), between a base letter and its
combining accent, inside a ZWJ emoji sequence or a flag. The last
grapheme-ish cluster of each snapshot is therefore held back until the next
snapshot (or the final one) shows it is complete, so no delta ever starts
with a combining mark or splits an emoji.
"""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from ..core import (
    ChatRequest,
    Deadlines,
    Event,
    EventBuilder,
    RateLimited,
    Timeout,
    UpstreamError,
    UpstreamUnavailable,
    Usage,
)
from ..core.tokens import prompt_chars
from .http import open_stream, parse_retry_after, status_error
from .remote import RemoteProvider

log = logging.getLogger("sluiceway.providers.polling")

ZWJ = "\u200d"
POLL_TIMEOUT = 60.0  # one status request, when no deadline is closer


# ------------------------------------------------------------------ pure part

def dig(doc: Any, path: str) -> Any:
    """``a.b.0.c`` into nested dicts and lists; None when absent. Empty path → None."""
    if not path:
        return None
    cur = doc
    for key in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(key)
        elif isinstance(cur, list) and key.lstrip("-").isdigit() and -len(cur) <= int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return None
    return cur


def _extends(c: str) -> bool:
    """Does ``c`` attach to the character before it (so a cut must not fall before it)?"""
    o = ord(c)
    return (unicodedata.category(c) in ("Mn", "Me", "Mc") or c == ZWJ
            or 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF  # variation selectors
            or 0x1F3FB <= o <= 0x1F3FF  # emoji skin-tone modifiers
            or 0xE0020 <= o <= 0xE007F  # emoji tag sequences (subdivision flags)
            or 0xD800 <= o <= 0xDFFF  # half of a surrogate pair
            or 0x1160 <= o <= 0x11FF or 0xD7B0 <= o <= 0xD7FF)  # Hangul conjoining vowels/finals


def _regional(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def safe_cut(s: str, start: int) -> int:
    """The largest index ≥ ``start`` before which ``s`` can be emitted now: the
    last cluster (its base, its combining marks, a ZWJ chain, a flag pair)
    may still grow in the next snapshot, so it is held back."""
    i = len(s)
    while i > start:
        i -= 1
        c = s[i]
        if _extends(c):
            continue
        if i > start and s[i - 1] == ZWJ:
            continue  # joined to what comes before: keep walking back
        if _regional(c):
            n = 0
            while i - n - 1 >= start and _regional(s[i - n - 1]):
                n += 1
            if n % 2 == 1:  # c is the second half of a flag
                i -= 1
        break
    return max(i, start)


def clean(text: str) -> str:
    """Replace lone surrogates (which cannot be encoded as UTF-8) with U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


class SnapshotDiff:
    """Cumulative snapshots in, Unicode-safe deltas out.

    A snapshot that is a prefix of what was already emitted is a stale read
    (a lagging replica) and yields nothing. One that neither extends nor
    prefixes it means the upstream rewrote its answer: text already sent
    cannot be taken back, so that is an error."""

    __slots__ = ("emitted", "what")

    def __init__(self, what: str = "text") -> None:
        self.emitted = ""
        self.what = what

    def feed(self, snapshot: str, *, final: bool = False) -> str:
        done = self.emitted
        if not snapshot.startswith(done):
            if done.startswith(snapshot):
                return ""
            raise UpstreamError(f"polling: the {self.what} snapshot no longer extends what was already "
                                f"streamed (at character {len(done)})")
        end = len(snapshot) if final else safe_cut(snapshot, len(done))
        if end <= len(done):
            return ""
        delta = snapshot[len(done):end]
        self.emitted = snapshot[:end]
        return clean(delta)


# ------------------------------------------------------------------- provider

class PollingSettings(BaseModel):
    submit_url: str = Field(..., description="URL that creates a task (POST, JSON body)")
    status_url: str = Field(..., description="Status URL template (GET); {task_id} is replaced")
    cancel_url: str | None = Field(None, description="Cancel URL template (POST); {task_id} is replaced")
    cancel_method: str = Field("POST", description="HTTP method of the cancel call")
    api_key: SecretStr | None = Field(None, description="Sent in auth_header (as a bearer token for authorization)")
    auth_header: str = Field("authorization", description="Header carrying the key")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    body_style: str = Field("messages", description="'messages' (chat messages) or 'prompt' (one flattened prompt)")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra body fields on every submit")
    task_id_path: str = Field("id", description="JSON path of the task id in the submit response")
    text_path: str = Field("output.text", description="JSON path of the cumulative answer text")
    reasoning_path: str = Field("", description="JSON path of cumulative reasoning text (optional)")
    done_path: str = Field("status", description="JSON path of the status or done flag")
    done_values: list[Any] = Field(
        default_factory=lambda: [True, "done", "completed", "complete", "succeeded", "success", "finished"],
        description="Values at done_path meaning the answer is complete (strings compared case-insensitively)")
    error_values: list[Any] = Field(
        default_factory=lambda: ["failed", "error", "cancelled", "canceled", "expired"],
        description="Values at done_path meaning the task failed")
    error_path: str = Field("error", description="JSON path of the failure message")
    finish_reason_path: str = Field("", description="JSON path of a finish reason (stop/length), optional")
    input_tokens_path: str = Field("", description="JSON path of input token usage, optional")
    output_tokens_path: str = Field("", description="JSON path of output token usage, optional")
    interval: float = Field(0.5, gt=0, description="Seconds between polls")
    max_poll_errors: int = Field(3, ge=0, description="Consecutive transient poll failures (429, 5xx) tolerated")
    models: list[str] = Field(default_factory=list, description="Model names to list")


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


class PollingProvider(RemoteProvider):
    kind: ClassVar[str] = "polling"
    Settings: ClassVar[type[BaseModel]] = PollingSettings
    settings: PollingSettings

    def __init__(self, name: str, settings: PollingSettings) -> None:
        super().__init__(name, settings)
        self._done = {_norm(v) for v in settings.done_values}
        self._failed = {_norm(v) for v in settings.error_values}
        self._background: set[asyncio.Task[None]] = set()

    def headers(self) -> dict[str, str]:
        return self.with_key(self.settings.api_key, self.settings.auth_header)

    # ----------------------------------------------------------- API hooks
    def submit_body(self, req: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model}
        if self.settings.body_style == "prompt":
            body["prompt"] = "\n\n".join(f"{m.role}: {m.text}" for m in req.messages if m.text)
        else:
            body["messages"] = [{"role": m.role, "content": m.text} for m in req.messages]
        for key, value in (("max_tokens", req.max_tokens), ("temperature", req.temperature),
                           ("top_p", req.top_p), ("seed", req.seed)):
            if value is not None:
                body[key] = value
        if req.stop:
            body["stop"] = req.stop
        return {**self.settings.params, **body, **req.extra}

    def task_url(self, template: str, task_id: str) -> str:
        return template.replace("{task_id}", str(task_id))

    def parse_status(self, doc: Any) -> tuple[str | None, str | None, str]:
        """(text snapshot, reasoning snapshot, state) with state one of
        ``running``, ``done``, ``failed``."""
        s = self.settings
        text = dig(doc, s.text_path)
        reasoning = dig(doc, s.reasoning_path)
        flag = _norm(dig(doc, s.done_path))
        state = "done" if flag in self._done else "failed" if flag in self._failed else "running"
        return (text if isinstance(text, str) else None, reasoning if isinstance(reasoning, str) else None, state)

    def usage(self, doc: Any) -> Usage | None:
        i, o = dig(doc, self.settings.input_tokens_path), dig(doc, self.settings.output_tokens_path)
        if isinstance(i, int) and isinstance(o, int):
            return Usage(i, o)
        return None

    # -------------------------------------------------------------- stream
    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        s = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        total_at = started + deadline.total if deadline.total else None
        resp = await open_stream(self.session, s.submit_url, provider=self.name, deadline=deadline,
                                 json=self.submit_body(req), headers=self.headers())
        try:
            doc = orjson.loads(await resp.read())
        except (orjson.JSONDecodeError, aiohttp.ClientError) as e:
            raise UpstreamError(f"{self.name}: task submit answered with no JSON ({type(e).__name__})") from None
        finally:
            resp.release()
        task_id = dig(doc, s.task_id_path)
        if task_id is None or isinstance(task_id, dict | list):
            raise UpstreamError(f"{self.name}: no task id at {s.task_id_path!r} in the submit response")
        task_id = str(task_id)

        b = EventBuilder()
        text, reasoning = SnapshotDiff("text"), SnapshotDiff("reasoning")
        pchars = prompt_chars(req)
        finished = False
        # first-token deadline until the first delta, then idle since the last growth
        next_at = started + deadline.first_token if deadline.first_token else None
        got_token = False
        poll_errors = 0

        def apply(doc: Any, out: list[Event]) -> bool:
            nonlocal finished
            t, r, state = self.parse_status(doc)
            if state == "failed":
                finished = True  # nothing left to cancel
                err = dig(doc, s.error_path)
                msg = err.get("message") if isinstance(err, dict) else err
                raise UpstreamError(f"{self.name}: task {task_id} failed: {msg or 'no reason given'}")
            final = state == "done"
            if r is not None:
                b.reasoning(out, reasoning.feed(r, final=final))
            if t is not None:
                b.text(out, text.feed(t, final=final))
            if final:
                finished = True
                raw = dig(doc, s.finish_reason_path)
                reason = "length" if raw in ("length", "max_tokens") else "stop"
                b.finish(out, reason, self.usage(doc), raw_reason=raw if isinstance(raw, str) else None,
                         prompt_chars=pchars)
            return any(e.type in ("text-delta", "reasoning-delta") for e in out)

        def limit() -> tuple[float | None, str]:
            cands = [(next_at, "idle" if got_token else "first-token"), (total_at, "total")]
            cands = [c for c in cands if c[0] is not None]
            return min(cands, key=lambda c: c[0]) if cands else (None, "")  # type: ignore[return-value]

        try:
            out: list[Event] = []
            b.start(out, task_id, req.model)
            if apply(doc, out):  # some APIs answer (partly) in the submit response
                got_token = True
                next_at = loop.time() + deadline.idle if deadline.idle else None
            yield out
            pause = s.interval
            while not finished:
                when, kind = limit()
                delay = pause if when is None else min(pause, max(0.0, when - loop.time()))
                await asyncio.sleep(delay)
                if when is not None and loop.time() >= when:
                    raise Timeout(f"{self.name}: upstream {kind} timeout (task {task_id})", provider=self.name)
                try:
                    doc = await self._poll(self.task_url(s.status_url, task_id), when)
                except (UpstreamUnavailable, UpstreamError, RateLimited) as e:
                    poll_errors += 1
                    if poll_errors > s.max_poll_errors:
                        raise
                    log.warning("%s: poll of task %s failed (%s), retrying", self.name, task_id, e.message)
                    pause = max(s.interval, getattr(e, "retry_after", None) or 0.0)  # honour Retry-After
                    continue
                poll_errors, pause = 0, s.interval
                out = []
                if apply(doc, out):
                    got_token = True
                    next_at = loop.time() + deadline.idle if deadline.idle else None
                if out:
                    yield out
        finally:
            if not finished and s.cancel_url:
                # fire and forget: the client is gone, do not make it wait for the cancel
                task = loop.create_task(self._cancel(self.task_url(s.cancel_url, task_id)))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _poll(self, url: str, when: float | None) -> Any:
        loop = asyncio.get_running_loop()
        budget = POLL_TIMEOUT if when is None else max(0.05, min(POLL_TIMEOUT, when - loop.time()))
        try:
            async with asyncio.timeout(budget):
                async with self.session.get(url, headers=self.headers()) as resp:
                    body = await resp.read()
                    status, retry_after = resp.status, parse_retry_after(resp.headers.get("retry-after"))
        except TimeoutError:
            raise Timeout(f"{self.name}: status poll timed out", provider=self.name) from None
        except (aiohttp.ClientError, OSError) as e:
            raise UpstreamUnavailable(f"{self.name}: status poll failed: {type(e).__name__}",
                                      provider=self.name) from None
        if status >= 400:
            err = status_error(status, body, retry_after, self.name)
            if status >= 500 and not isinstance(err, UpstreamUnavailable):
                raise UpstreamUnavailable(err.message, provider=self.name)  # transient: retried
            raise err  # 429 (RateLimited) and 5xx are retried by the loop; other 4xx end the stream
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            # lone surrogates (a snapshot cut inside a pair) are valid JSON to the stdlib only
            try:
                return json.loads(body)
            except ValueError:
                raise UpstreamError(f"{self.name}: status poll answered with invalid JSON") from None

    async def _cancel(self, url: str) -> None:
        try:
            async with self.session.request(self.settings.cancel_method, url, headers=self.headers(),
                                            timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
        except Exception as e:  # best effort: the task may already be over
            log.info("%s: cancel %s failed: %s", self.name, url, type(e).__name__)

    async def aclose(self) -> None:
        if self._background:  # let a last fire-and-forget cancel reach the API
            await asyncio.wait(set(self._background), timeout=2)
        await super().aclose()


__all__ = ["PollingProvider", "PollingSettings", "SnapshotDiff", "dig", "safe_cut"]
