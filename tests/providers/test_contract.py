"""The provider contract, proved once over every remote provider kind
(``kinds.KINDS``): recorded wire streams (``wire/<kind>/<case>.*``) replayed
by the fake upstream over real sockets into the provider's ``stream``.

Every kind must turn its vendor's stream into the same canonical events
(text, reasoning, tool calls, usage), whatever the read boundaries; report
truncation, a dropped connection and an in-band error as typed errors after
the text that came before; map error statuses to the typed errors (with
Retry-After); time out on a slow first token or a stall, and close the
upstream then as when the consumer leaves; send the key
where the vendor expects it and never in a URL; list configured models
without asking the upstream."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from sluiceway.core import (
    AuthError,
    BadRequest,
    ChatRequest,
    Deadlines,
    Event,
    Message,
    NotFound,
    PermissionDenied,
    RateLimited,
    SluicewayError,
    Timeout,
    Tool,
    UpstreamError,
    UpstreamUnavailable,
)
from sluiceway.providers import provider_class

from ..upstream import DROP, HANG, FakeUpstream
from .kinds import KEY, KINDS, Kind

TEXT = "Hello, 世界 🙂"
DEADLINE = Deadlines(connect=5, first_token=10, idle=10, total=30)
WEATHER = Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def kinds_with(case: str) -> list:
    return [pytest.param(k, id=k.name) for k in KINDS if case in k.cases]


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    batches: int = 0
    error: SluicewayError | None = None

    def joined(self, etype: str) -> str:
        return "".join(e.delta for e in self.events if e.type == etype)  # type: ignore[attr-defined]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def finish(self):
        assert self.types[-1] == "finish", self.types
        return self.events[-1]


@asynccontextmanager
async def provider_for(kind: Kind, upstream: FakeUpstream, model: str):
    p = kind.provider(upstream, model)
    try:
        yield p
    finally:
        await p.aclose()


async def drain(kind: Kind, upstream: FakeUpstream, model: str, *, tools: bool = False,
                deadline: Deadlines = DEADLINE) -> Run:
    run = Run()
    req = ChatRequest(model=model, messages=[Message.of("user", "hi")], tools=[WEATHER] if tools else [])
    async with provider_for(kind, upstream, model) as p:
        try:
            async for batch in p.stream(req, deadline=deadline):
                assert batch, "a batch is never empty"
                run.batches += 1
                run.events.extend(batch)
        except SluicewayError as e:
            run.error = e
    return run


async def replay(kind: Kind, upstream: FakeUpstream, case: str, *, tools: bool = False, **serve) -> Run:
    model = kind.model(case)
    kind.serve(upstream, model, kind.split(kind.wire(case)), **serve)
    run = await drain(kind, upstream, model, tools=tools)
    for rec in upstream.for_model(model):
        assert KEY not in rec.path, "the key went into a URL"
        sent = {k.lower(): v for k, v in rec.headers.items()}
        if kind.key_header == "authorization":
            assert sent["authorization"] == f"Bearer {KEY}"
        elif kind.key_header:
            assert sent[kind.key_header] == KEY
        else:  # signed: the secret itself never travels
            assert sent["authorization"].startswith("AWS4-HMAC-SHA256 ") and KEY not in str(sent)
    return run


def through_first(kind: Kind, case: str, needle: bytes) -> list[bytes]:
    """The recording's messages up to and including the first that holds ``needle``."""
    messages = kind.split(kind.wire(case))
    n = next(i for i, m in enumerate(messages) if needle in m)
    return messages[:n + 1]


# ------------------------------------------------------------------ streams

@pytest.mark.parametrize("slice_size", [0, 7], ids=["per-message", "7-byte-reads"])
@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_text_and_usage_whatever_the_read_boundaries(upstream, kind, slice_size):
    run = await replay(kind, upstream, "text", slice_size=slice_size)
    assert run.error is None, run.error
    assert run.types[0] == "start" and run.joined("text-delta") == TEXT
    assert run.types.count("text-delta") >= 2  # streamed, not gathered
    fin = run.finish
    assert fin.reason == "stop"
    assert (fin.usage.input, fin.usage.output, fin.usage.estimated) == (12, 7, False)


@pytest.mark.parametrize("kind", kinds_with("reasoning"))
async def test_reasoning_then_text(upstream, kind):
    run = await replay(kind, upstream, "reasoning")
    assert run.error is None, run.error
    assert run.joined("reasoning-delta") == "Let me think." and run.joined("text-delta") == "It is 4."
    assert run.types.index("reasoning-end") < run.types.index("text-start")
    assert run.finish.reason == "stop"


@pytest.mark.parametrize("kind", kinds_with("tools"))
async def test_tool_call_streams_and_finishes_as_tool_calls(upstream, kind):
    run = await replay(kind, upstream, "tools", tools=True)
    assert run.error is None, run.error
    [call] = [e for e in run.events if e.type == "tool-call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"} and call.call_id
    starts = [e for e in run.events if e.type == "tool-input-start"]
    assert [s.call_id for s in starts] == [call.call_id]
    assert run.types.index("tool-input-start") < run.types.index("tool-call")
    assert run.finish.reason == "tool_calls"


# ------------------------------------------------------------ broken streams

@pytest.mark.parametrize("kind", kinds_with("truncated"))
async def test_clean_eof_before_the_end_is_a_truncation_error(upstream, kind):
    run = await replay(kind, upstream, "truncated")
    assert isinstance(run.error, UpstreamError) and "truncated" in run.error.message
    assert run.joined("text-delta") == "Hello, 世界"  # what came first was delivered
    assert "finish" not in run.types


@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_dropped_connection_is_a_retryable_error(upstream, kind):
    model = kind.model("drop")
    kind.serve(upstream, model, through_first(kind, "text", b"Hello"), tail=DROP)
    run = await drain(kind, upstream, model)
    assert run.error is not None and run.error.retryable, run.error
    assert isinstance(run.error, UpstreamError | UpstreamUnavailable)
    assert run.joined("text-delta") and TEXT.startswith(run.joined("text-delta"))
    assert "finish" not in run.types


@pytest.mark.parametrize("kind", kinds_with("midstream_error"))
async def test_in_band_error_after_partial_text(upstream, kind):
    run = await replay(kind, upstream, "midstream_error")
    assert run.error is not None and run.error.retryable, run.error
    assert "overloaded" in run.error.message
    assert run.joined("text-delta") == "partial"


STATUSES = ((400, BadRequest), (401, AuthError), (403, PermissionDenied), (404, NotFound), (429, RateLimited),
            (500, UpstreamError), (503, UpstreamUnavailable))


@pytest.mark.parametrize(("kind", "status", "error"), [
    pytest.param(k, s, e, id=f"{k.name}-{s}") for k in KINDS for s, e in STATUSES + k.statuses])
async def test_error_status_becomes_the_typed_error_before_any_batch(upstream, kind, status, error):
    model = kind.model(f"status{status}")
    kind.refuse(upstream, model, status, {"retry-after": "7"})
    run = await drain(kind, upstream, model)
    assert type(run.error) is error and run.batches == 0, run.error
    assert "the upstream says no" in run.error.message and KEY not in run.error.message
    assert run.error.provider == kind.name
    if status == 429:
        assert run.error.retry_after == 7.0


# ------------------------------------------------------------------- cancel

@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_leaving_mid_stream_closes_the_upstream(upstream, kind):
    """The consumer closes the stream after the first text; the provider must
    drop the upstream connection (so the vendor stops generating) or, for a
    task API, call its cancel endpoint and stop polling."""
    model = kind.model("cancel")
    kind.serve(upstream, model, through_first(kind, "text", b"Hello"), tail=HANG)
    req = ChatRequest(model=model, messages=[Message.of("user", "hi")])
    async with provider_for(kind, upstream, model) as p:
        stream = p.stream(req, deadline=DEADLINE)
        async for batch in stream:
            if any(e.type == "text-delta" for e in batch):
                break
        else:
            pytest.fail("no text before the stall")
        await stream.aclose()  # type: ignore[attr-defined]
    await upstream_was_left(kind, upstream, model)


async def upstream_was_left(kind: Kind, upstream: FakeUpstream, model: str) -> None:
    """The stream request's connection was closed by the provider before the
    body ended, or, for a task API, the task was cancelled (the provider's
    ``aclose`` waits for that fire-and-forget call)."""
    if kind.name == "polling":
        assert len(upstream.for_model(f"{model}-cancel")) == 1
        return
    rec = upstream.last(model)
    # off the loop: the socket close itself runs on this loop
    assert await asyncio.to_thread(rec.wait_closed, 1.0), "upstream connection still open 1 s after the stream ended"
    assert rec.client_closed and not rec.completed


# ---------------------------------------------------------------- deadlines

@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_no_first_token_in_time_is_a_timeout_and_leaves_the_upstream(upstream, kind):
    model = kind.model("slowstart")
    before_text = through_first(kind, "text", b"Hello")[:-1]  # everything up to the first text, if any
    kind.serve(upstream, model, before_text, tail=HANG)
    run = await drain(kind, upstream, model, deadline=Deadlines(connect=5, first_token=0.2, idle=10, total=30))
    assert isinstance(run.error, Timeout) and "first-token" in run.error.message, run.error
    assert "text-delta" not in run.types
    await upstream_was_left(kind, upstream, model)


@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_stall_after_text_is_an_idle_timeout_and_leaves_the_upstream(upstream, kind):
    model = kind.model("stall")
    kind.serve(upstream, model, through_first(kind, "text", b"Hello"), tail=HANG)
    run = await drain(kind, upstream, model, deadline=Deadlines(connect=5, first_token=10, idle=0.2, total=30))
    assert isinstance(run.error, Timeout) and "idle" in run.error.message, run.error
    assert run.joined("text-delta")
    await upstream_was_left(kind, upstream, model)


# ------------------------------------------------------------------- models

@pytest.mark.parametrize("kind", kinds_with("text"))
async def test_configured_models_are_listed_without_asking_the_upstream(upstream, kind):
    model = kind.model("list")
    field = "deployments" if kind.name == "azure" else "models"
    cls = provider_class(kind.name)
    p = cls(kind.name, cls.Settings(**kind.settings(upstream.url, model), **{field: [f"{model}-a", f"{model}-b"]}))
    before = len(upstream.records)
    try:
        listed = await p.list_models()
    finally:
        await p.aclose()
    assert [(m.id, m.owned_by) for m in listed] == [(f"{model}-a", kind.name), (f"{model}-b", kind.name)]
    asked = [r.path for r in upstream.records[before:] if "models" in r.path or r.path.startswith("/api/tags")]
    assert asked == []
