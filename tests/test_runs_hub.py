"""The runs service on its own (no HTTP): every run ends in exactly one
terminal event in its log, whatever its source or observers do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluiceway.core import (
    Finish,
    Start,
    TextDelta,
    TextEnd,
    TextStart,
    UpstreamUnavailable,
    Usage,
    decode_event,
    encode_event,
)
from sluiceway.engine.runs import Outcome, Runs


class Source:
    def __init__(self, batches: list, hang: bool = False, fail: Exception | None = None) -> None:
        self._batches, self.hang, self.fail, self.closed = batches, hang, fail, False

    async def batches(self) -> AsyncIterator[list]:
        for b in self._batches:
            yield b
            await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


class Observer:
    def __init__(self, explode: bool = False) -> None:
        self.explode, self.seen, self.status = explode, [], None

    def batch(self, events) -> None:
        self.seen += [ev.type for ev in events]
        if self.explode:
            raise RuntimeError("observer bug")

    async def end(self, outcome: Outcome) -> None:
        self.status = outcome


BATCHES = [[Start("r", "m", 0), TextStart("t")], [TextDelta("t", "a"), TextDelta("t", "b")],
           [TextEnd("t"), Finish("stop", Usage(1, 2))]]


async def log_types(hub: Runs, run_id: str, after: int = 0) -> list[tuple[int, str]]:
    out = []
    async for entries in hub.read(run_id, after):
        out += [(n, ev.type) for n, ev in entries]
    return out


async def run_one(hub: Runs, run_id: str, src: Source, obs: Observer):
    async def open_():
        return src
    await hub.start(run_id, open_, [obs])
    return await hub.wait(run_id)


async def test_complete_run_log_and_replay_from_any_point():
    hub = Runs()
    obs, src = Observer(), Source(BATCHES)
    assert await run_one(hub, "r1", src, obs) == "complete"
    types = await log_types(hub, "r1")
    assert types == [(1, "start"), (2, "text-start"), (3, "text-delta"), (4, "text-delta"), (5, "text-end"),
                     (6, "finish")]
    for n in range(7):
        assert await log_types(hub, "r1", n) == types[n:]
    assert obs.status == "complete" and src.closed
    await hub.aclose()


async def test_the_memory_log_holds_the_very_events_no_json_round_trip():
    hub = Runs()
    src = Source(BATCHES)
    assert await run_one(hub, "r0", src, Observer()) == Outcome.COMPLETE
    logged = [ev async for entries in hub.read("r0") for _, ev in entries]
    assert all(a is b for a, b in zip(logged, [ev for batch in BATCHES for ev in batch], strict=True))
    await hub.aclose()


async def test_canonical_json_is_made_once_per_event_for_every_reader():
    hub = Runs()
    assert await run_one(hub, "rj", Source(BATCHES), Observer()) == Outcome.COMPLETE
    first = [e async for entries in hub.read_json("rj") for e in entries]
    again = [e async for entries in hub.read_json("rj", 2) for e in entries]
    assert [decode_event(j) for _, j in first] == [ev for batch in BATCHES for ev in batch]
    assert all(a[1] is b[1] for a, b in zip(first[2:], again, strict=True))  # the same bytes, not re-encoded
    assert all(a is b for a, (_, b) in zip(hub.log.json("rj"), first, strict=True))  # what the trace reuses
    await hub.aclose()


async def test_observers_end_in_list_order_each_once_even_if_one_fails():
    heard: list[str] = []

    class Saver(Observer):
        async def end(self, outcome: Outcome) -> None:
            heard.append(f"saver:{outcome}")
            raise RuntimeError("the store is down")

    class Accounting(Observer):
        async def end(self, outcome: Outcome) -> None:
            heard.append(f"accounting:{outcome}")

    hub = Runs()
    src = Source(BATCHES)

    async def open_():
        return src
    await hub.start("r7", open_, [Saver(), Accounting()])
    assert await hub.wait("r7") == Outcome.COMPLETE
    assert heard == ["saver:complete", "accounting:complete"]
    assert [t for _, t in await log_types(hub, "r7")][-1] == "finish"
    await hub.aclose()


async def test_an_observer_that_fails_still_ends_the_run():
    hub = Runs()
    obs, src = Observer(explode=True), Source(BATCHES)
    assert await run_one(hub, "r2", src, obs) == "error"
    types = await log_types(hub, "r2")
    assert [t for _, t in types][-1] == "error" and sum(t in ("finish", "error", "abort") for _, t in types) == 1
    assert obs.status == "error" and src.closed and "r2" not in hub.active
    await hub.aclose()


async def test_source_errors_and_missing_finish_end_in_one_error_event():
    hub = Runs()
    for run_id, src in (("r3", Source(BATCHES[:2], fail=UpstreamUnavailable("gone"))), ("r4", Source(BATCHES[:2]))):
        obs = Observer()
        assert await run_one(hub, run_id, src, obs) == "error"
        types = [t for _, t in await log_types(hub, run_id)]
        assert types == ["start", "text-start", "text-delta", "text-delta", "error"]
    await hub.aclose()


async def test_stop_and_shutdown_interrupt_with_one_abort():
    hub = Runs(shutdown_grace=0)
    src, obs = Source(BATCHES[:2], hang=True), Observer()

    async def open_():
        return src
    await hub.start("r5", open_, [obs])
    await asyncio.sleep(0.01)
    assert await hub.stop("r5", "stopped") is True
    assert await hub.stop("r5", "again") is False
    assert [t for _, t in await log_types(hub, "r5")][-1] == "abort" and obs.status == "interrupted"
    src2, obs2 = Source(BATCHES[:1], hang=True), Observer()

    async def open2():
        return src2
    await hub.start("r6", open2, [obs2])
    await asyncio.sleep(0.01)
    await hub.aclose()
    assert obs2.status == "interrupted" and src2.closed


def test_every_event_type_round_trips_through_the_log_encoding():
    from sluiceway.core import (
        Abort,
        Error,
        ReasoningDelta,
        ReasoningEnd,
        ReasoningStart,
        StepFinish,
        ToolCall,
        ToolInputDelta,
        ToolInputEnd,
        ToolInputStart,
        ToolResult,
    )

    evs = [Start("r", "m", 1), TextStart("t"), TextDelta("t", "日本 \n \"q\""), TextEnd("t"), ReasoningStart("r1"),
           ReasoningDelta("r1", "hm"), ReasoningEnd("r1", signature="sig"), ToolInputStart("c", "f"),
           ToolInputDelta("c", '{"a":'), ToolInputEnd("c"), ToolCall("c", "f", '{"a":1}'),
           ToolResult("c", "f", "out", is_error=True), StepFinish("tool_calls", Usage(1, 2, 0, 0, True)),
           Finish("stop", Usage(3, 4, 1, 2), raw_reason="stop"), Error("x", "boom", True, 503), Abort("stopped")]
    for ev in evs:
        assert b"\n" not in encode_event(ev)
        assert decode_event(encode_event(ev)) == ev
