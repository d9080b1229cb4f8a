"""Property tests: however an upstream interleaves parallel tool calls and
however its reads split the events, the Responses and Anthropic encoders emit
items/blocks one after another (§3.4, §4.2), and the SDKs' own stream
accumulators rebuild exactly the calls that were made."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.core import (
    ChatRequest,
    Event,
    Finish,
    Message,
    Start,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolInputDelta,
    ToolInputEnd,
    ToolInputStart,
    Usage,
)
from sluiceway.protocols import anthropic_messages, openai_responses

REQ = ChatRequest(model="m", messages=[Message.of("user", "x")])


@st.composite
def tool_streams(draw) -> tuple[list[list[Event]], list[tuple[str, str, str]]]:
    n = draw(st.integers(1, 4))
    calls = []
    for i in range(n):
        args = json.dumps({"k": draw(st.text(max_size=12)), "i": i}, ensure_ascii=False)
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=4)))
        frags = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True) if args[a:b]]
        calls.append((f"call_{i}", f"tool_{i}", args, frags))
    # per-call queues of start + deltas, merged in a random interleaving that keeps each call's order
    queues = [[ToolInputStart(cid, name)] + [ToolInputDelta(cid, f) for f in frags]
              for cid, name, _, frags in calls]
    events: list[Event] = [Start("up", "m", 1)]
    if draw(st.booleans()):
        events += [TextStart("t1"), TextDelta("t1", "thinking out loud"), TextEnd("t1")]
    while any(queues):
        q = draw(st.sampled_from([q for q in queues if q]))
        events.append(q.pop(0))
    for cid, name, args, _ in calls:
        events += [ToolInputEnd(cid), ToolCall(cid, name, args)]
    events.append(Finish("tool_calls", Usage(3, 4)))
    cut_points = sorted(set(draw(st.lists(st.integers(1, len(events) - 1), max_size=6))))
    batches = [events[a:b] for a, b in zip([0, *cut_points], [*cut_points, len(events)], strict=True)]
    # a call's item/block comes where its first event came (it cannot wait for the calls before it)
    order = [ev.call_id for ev in events if ev.type == "tool-input-start"]
    by_id = {cid: (cid, name, args) for cid, name, args, _ in calls}
    return batches, [by_id[cid] for cid in order]


def frames(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for f in raw.decode().split("\n\n"):
        if f:
            event, data = f.split("\n")
            out.append((event[len("event: "):], json.loads(data[len("data: "):])))
    return out


@settings(max_examples=150, deadline=None)
@given(tool_streams())
def test_responses_items_are_sequential_and_sdk_rebuilds_calls(stream):
    from openai import omit
    from openai._models import construct_type
    from openai.lib.streaming.responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    batches, calls = stream
    enc = openai_responses.Encoder({"model": "m"}, REQ)
    raw = b"".join(enc.feed(b) for b in batches)
    evs = frames(raw)
    assert all(name == data["type"] for name, data in evs)
    assert [d["sequence_number"] for _, d in evs] == list(range(len(evs)))
    open_index = None
    for name, d in evs:
        if name == "response.output_item.added":
            assert open_index is None, "an item was added while another was still open"
            open_index = d["output_index"]
        elif "output_index" in d:
            assert d["output_index"] == open_index
            if name == "response.output_item.done":
                open_index = None
    state = ResponseStreamState(input_tools=[], text_format=omit)
    for _, d in evs:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=d))
    final = [e for _, e in evs][-1]["response"]
    got = [(o["call_id"], o["name"], o["arguments"]) for o in final["output"] if o["type"] == "function_call"]
    assert got == calls


@settings(max_examples=100, deadline=None)
@given(tool_streams(), st.integers(0, 3))
def test_a_stored_responses_fold_is_the_streams_terminal_object(stream, stop_early):
    """A stored Response is folded without encoding frames; it must be the very
    object the stream's terminal frame carries (same item ids), and a run cut
    short keeps what was streamed, cancelled."""
    batches, _ = stream
    rid, shell = "resp_fixed", openai_responses.ResponseShell({"model": "m"}, REQ)
    enc = openai_responses.Encoder(None, None, ids=openai_responses.stable_ids(rid), rid=rid, created=7,
                                   shell=shell)
    fold = openai_responses.ResponseFold(shell, ids=openai_responses.stable_ids(rid), rid=rid, created=7)
    cut = batches[:max(1, len(batches) - stop_early)]
    raw = b"".join(enc.feed(b) for b in cut)
    assert [fold.feed(b) for b in cut] == [b""] * len(cut)  # no frames at all
    if len(cut) == len(batches):
        assert fold.result() == frames(raw)[-1][1]["response"]
    else:
        assert fold.result() == enc.result() and fold.result()["status"] == "cancelled"


@settings(max_examples=150, deadline=None)
@given(tool_streams())
def test_anthropic_blocks_are_dense_sequential_and_sdk_rebuilds_calls(stream):
    from anthropic._models import construct_type
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    batches, calls = stream
    enc = anthropic_messages.Encoder({}, REQ)
    raw = b"".join(enc.feed(b) for b in batches)
    evs = frames(raw)
    assert all(name == data["type"] for name, data in evs)
    starts = [d["index"] for n, d in evs if n == "content_block_start"]
    assert starts == list(range(len(starts)))
    open_index = None
    for name, d in evs:
        if name == "content_block_start":
            assert open_index is None
            open_index = d["index"]
        elif name in ("content_block_delta", "content_block_stop"):
            assert d["index"] == open_index
            if name == "content_block_stop":
                open_index = None
    snapshot, bufs = None, {}  # the SDK's private accumulator: its signature may move between versions
    for name, d in evs:
        if name == "ping":
            continue
        snapshot = accumulate_event(event=construct_type(type_=RawMessageStreamEvent, value=d),
                                    current_snapshot=snapshot, json_bufs=bufs)
    got = [(b.id, b.name, b.input) for b in snapshot.content if b.type == "tool_use"]
    assert got == [(cid, name, json.loads(args)) for cid, name, args in calls]
    assert snapshot.stop_reason == "tool_use"
