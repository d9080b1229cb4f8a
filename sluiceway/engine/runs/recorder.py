"""The recorder: the run observer that persists an assistant answer.

It folds the run's events as they pass (``core.Accumulator``), saves the
partial answer every ``checkpoint_interval`` seconds while it streams (so a
crash loses at most that much), and when the run ends — however it ends —
writes the final parts, status, usage, time to first token and tokens/s,
and the debug trace.

The trace holds the upstream request as the provider layer sees it (the
canonical request, the deployment, and the provider's settings with every
secret redacted), the raw HTTP exchange with the upstream as sent and as
received (``wire``: credentials redacted, body capped; recorded through the
request's ``WireTrace``), and the canonical event log of the response.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import orjson

from ...core import Accumulator, ChatRequest, Event, WireTrace, encode_event
from ...core.secrets import scrub_obj
from ...core.tokens import estimate_tokens, token_units
from ...store import Store, Trace
from .observers import Outcome

log = logging.getLogger("sluiceway.recorder")

_SECRET = re.compile(r"key|secret|token|auth|password|credential|cookie|signature", re.I)
_DELTAS = frozenset({"text-delta", "reasoning-delta", "tool-input-delta", "tool-call"})


def redact(obj: Any) -> Any:
    """Settings as JSON with every secret-looking field blanked."""
    if isinstance(obj, dict):
        return {k: "[redacted]" if _SECRET.search(str(k)) and v not in (None, "", [], {}) else redact(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def request_trace(req: ChatRequest, opened: Any) -> dict[str, Any]:
    dep = getattr(opened, "deployment", None)
    provider = getattr(dep, "provider", None)
    settings = getattr(provider, "settings", None)
    dumped = settings.model_dump(mode="json") if settings is not None and hasattr(settings, "model_dump") else {}
    if isinstance(dumped.get("headers"), dict):  # header values may be credentials whatever their name
        dumped["headers"] = {k: "[redacted]" for k in dumped["headers"]}
    return {"provider": getattr(provider, "name", None), "kind": getattr(provider, "kind", None),
            "upstream_model": getattr(dep, "model", None), "settings": scrub_obj(redact(dumped)),
            "attempts": list(getattr(opened, "attempts", []) or []),
            # orjson serialises the (slotted) dataclasses itself; wire is reported below, not copied
            "request": orjson.loads(orjson.dumps({f.name: getattr(req, f.name) for f in fields(req)
                                                  if f.name != "wire"}, default=str)),
            "wire": req.wire.to_json() if req.wire is not None else None}


class Recorder:
    def __init__(self, store: Store, message_id: str, req: ChatRequest, *, checkpoint_interval: float = 1.0,
                 trace: bool = True) -> None:
        self.store = store
        self.message_id = message_id
        self.req = req
        self.interval = checkpoint_interval
        self.trace = trace
        self.opened: Any = None  # set by the run's opener: which deployment answered
        # the run log's canonical JSON so far (the events seen, but for the terminal one): when the
        # session-chat readers have encoded them already, the trace reuses that instead of encoding again
        self.log_json: Callable[[], list[bytes]] | None = None
        if trace and req.wire is None:
            req.wire = WireTrace()  # the providers record the raw exchange into it
        self.t0 = time.monotonic()
        self.t_first: float | None = None
        self.acc = Accumulator()
        self.events: list[Event] = []  # for the trace: encoded once, at the end
        self.partial_calls: dict[str, dict[str, str]] = {}  # call_id → {name, arguments} still arriving
        self.results: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- observer
    def batch(self, events: list[Event]) -> None:
        self.acc.feed(events)
        for ev in events:
            t = ev.type
            if self.t_first is None and t in _DELTAS:
                self.t_first = time.monotonic()
            if t == "tool-input-start":
                self.partial_calls[ev.call_id] = {"name": ev.name, "arguments": ""}
            elif t == "tool-input-delta" and ev.call_id in self.partial_calls:
                self.partial_calls[ev.call_id]["arguments"] += ev.delta
            elif t == "tool-call":
                self.partial_calls.pop(ev.call_id, None)
            elif t == "tool-result":
                self.results.append({"type": "tool_result", "call_id": ev.call_id, "name": ev.name,
                                     "output": ev.output, "is_error": ev.is_error})
        if self.trace:
            self.events.extend(events)
        if self.interval > 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._checkpoint)

    async def end(self, outcome: Outcome) -> None:
        status = str(outcome)  # the stored message status: complete | interrupted | error
        if self._timer is not None:
            self._timer.cancel()
        if self._saving is not None:
            try:
                await self._saving
            except Exception:
                pass
        c = self.acc.result()
        t_end = time.monotonic()
        usage = c.usage
        if c.finish_reason is None or status != "complete":
            # no final usage from the upstream: estimate what was produced
            out = usage.output or estimate_tokens(token_units(c.text) + token_units(c.reasoning_text))
            usage_d = {"input": usage.input, "output": out, "cached_input": usage.cached_input,
                       "reasoning": usage.reasoning, "estimated": True if not usage.output else usage.estimated}
        else:
            usage_d = asdict(usage)
        out_tokens = usage_d["output"]
        tps = None
        if self.t_first is not None and out_tokens:
            tps = round(out_tokens / max(t_end - self.t_first, 1e-3), 2)
        ttft = round((self.t_first - self.t0) * 1000, 1) if self.t_first is not None else None
        error = ({"code": c.error.code, "message": c.error.message, "status": c.error.status}
                 if c.error is not None else None)
        dep = getattr(self.opened, "deployment", None)
        trace = Trace("canonical-events", request_trace(self.req, self.opened),
                      orjson.Fragment(b"[" + b",".join(self._events_json()) + b"]")) if self.trace else None
        # one transaction for the answer and its trace (none if the session was deleted meanwhile)
        await self.store.finish_message(
            self.message_id, status=status, parts=self.parts(), finish_reason=c.finish_reason,
            error=error, usage=usage_d, ttft_ms=ttft, tokens_per_s=tps,
            provider=getattr(getattr(dep, "provider", None), "name", None), trace=trace)

    # ------------------------------------------------------------- helpers
    def _events_json(self) -> list[bytes]:
        shared = self.log_json() if self.log_json is not None else []
        if len(shared) > len(self.events):  # not this run's log after all: encode our own
            shared = []
        return [*shared, *[encode_event(ev) for ev in self.events[len(shared):]]]

    def parts(self) -> list[dict[str, Any]]:
        c = self.acc.result()
        parts: list[dict[str, Any]] = []
        for b in c.reasoning:
            p: dict[str, Any] = {"type": "reasoning", "text": b.text}
            for k in ("signature", "encrypted", "redacted"):
                if getattr(b, k):
                    p[k] = getattr(b, k)
            parts.append(p)
        if c.text:
            parts.append({"type": "text", "text": c.text})
        parts.extend({"type": "tool_call", "call_id": tc.call_id, "name": tc.name, "arguments": tc.arguments}
                     for tc in c.tool_calls)
        parts.extend({"type": "tool_call", "call_id": cid, "name": pc["name"], "arguments": pc["arguments"],
                      "partial": True} for cid, pc in self.partial_calls.items())
        parts.extend(self.results)
        return parts

    def _checkpoint(self) -> None:
        self._timer = None
        if self._saving is not None and not self._saving.done():
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._checkpoint)
            return
        self._saving = asyncio.create_task(self._save_partial())

    async def _save_partial(self) -> None:
        try:
            await self.store.checkpoint(self.message_id, self.parts())
        except Exception as e:  # a failed checkpoint only widens the crash window
            log.warning("checkpoint of %s failed: %s", self.message_id, e)
