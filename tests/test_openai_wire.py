"""The Chat Completions chunk state machine, without I/O: one test per vendor quirk."""

from __future__ import annotations

import pytest

from sluiceway.core import ChatRequest, Message, RateLimited, UpstreamError
from sluiceway.providers.openai_wire import ChunkAdapter, request_body


def run(chunks, *, done=True):
    a = ChunkAdapter()
    out = []
    for c in chunks:
        a.feed(c, out)
    a.end(out, saw_done=done)
    return out


def ch(delta=None, finish=None, **kw):
    return {"id": "c1", "model": "m", "created": 1, "choices": [{"index": 0, "delta": delta or {},
                                                                  "finish_reason": finish}], **kw}


def types(events):
    return [e.type for e in events]


def test_text_blocks_are_opened_and_closed_around_deltas():
    evs = run([ch({"role": "assistant", "content": ""}), ch({"content": "a"}), ch({"content": "b"}), ch({}, "stop")])
    assert types(evs) == ["start", "text-start", "text-delta", "text-delta", "text-end", "finish"]
    assert evs[-1].reason == "stop" and evs[-1].usage.estimated


def test_azure_first_chunk_with_empty_choices_and_filter_results():
    evs = run([{"id": "", "model": "", "created": 0, "choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
               ch({"content": "ok"}), ch({}, "stop")])
    assert "".join(e.delta for e in evs if e.type == "text-delta") == "ok"
    assert evs[0].type == "start" and evs[0].response_id == "c1"  # the real id, not the preamble's blank


def test_reasoning_then_text_switches_blocks():
    evs = run([ch({"reasoning_content": "th"}), ch({"reasoning": "ink"}), ch({"content": "A"}), ch({}, "stop")])
    assert types(evs) == ["start", "reasoning-start", "reasoning-delta", "reasoning-delta", "reasoning-end",
                          "text-start", "text-delta", "text-end", "finish"]


def test_usage_chunk_after_finish_is_used_and_not_estimated():
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2},
             "completion_tokens_details": {"reasoning_tokens": 1}}
    evs = run([ch({"content": "x"}), ch({}, "length"), {"id": "c1", "choices": [], "usage": usage}])
    fin = evs[-1]
    assert fin.reason == "length" and fin.raw_reason == "length"
    assert (fin.usage.input, fin.usage.output, fin.usage.cached_input, fin.usage.reasoning) == (9, 3, 2, 1)
    assert not fin.usage.estimated


def test_openrouter_second_finish_on_usage_chunk_is_ignored():
    evs = run([ch({"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": "{}"}}]}),
               ch({}, "tool_calls"), ch({}, "tool_calls", usage={"prompt_tokens": 1, "completion_tokens": 1})])
    assert types(evs).count("tool-call") == 1 and types(evs).count("finish") == 1


def test_tool_call_without_index_and_object_arguments():
    evs = run([ch({"tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": {"a": 1}}}]}),
               ch({}, "tool_calls")])
    call = next(e for e in evs if e.type == "tool-call")
    assert (call.call_id, call.name, call.arguments) == ("t1", "f", '{"a":1}')
    assert evs[-1].reason == "tool_calls"


def test_interleaved_parallel_calls_keyed_by_index():
    evs = run([
        ch({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}},
                           {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y"'}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
        ch({"tool_calls": [{"index": 1, "function": {"arguments": ":2}"}}]}),
        ch({}, "tool_calls")])
    calls = [(e.call_id, e.arguments) for e in evs if e.type == "tool-call"]
    assert calls == [("a", '{"x":1}'), ("b", '{"y":2}')]


def test_inband_error_object_raises_typed_error():
    a = ChunkAdapter()
    with pytest.raises(RateLimited):
        a.feed({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, [])
    with pytest.raises(UpstreamError):
        ChunkAdapter().feed({"error": {"message": "oops", "type": "server_error"}}, [])


def test_stream_cut_before_finish_is_a_truncation_error():
    with pytest.raises(UpstreamError, match="truncated"):
        run([ch({"content": "half"})], done=False)


def test_done_without_finish_reason_is_a_normal_stop():
    evs = run([ch({"content": "x"})], done=True)
    assert evs[-1].type == "finish" and evs[-1].reason == "stop"


def test_request_body_maps_fields_and_asks_for_usage():
    req = ChatRequest(model="m", messages=[Message.of("system", "s"), Message.of("user", "u")], max_tokens=5,
                      stop=["x"], temperature=0.5, seed=3, extra={"top_k": 4})
    body = request_body(req, stream=True)
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert (body["max_tokens"], body["stop"], body["temperature"], body["seed"], body["top_k"]) == (5, ["x"], 0.5, 3, 4)
    assert request_body(req, stream=True, max_tokens_field="max_completion_tokens")["max_completion_tokens"] == 5
