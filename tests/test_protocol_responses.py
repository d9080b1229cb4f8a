"""/v1/responses driven by the official openai SDK (Responses API) against the fake upstream."""

from __future__ import annotations

import json

import openai
import pytest

from .test_protocol_matrix import ARGS, REASONING, TEXT, full_stream
from .upstream import Script, chat_chunk, chat_text_stream, sse, usage_wire

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather by city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture
def client(server):
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="anything", max_retries=0, timeout=20)
    yield c
    c.close()


def test_create_stream_events_are_ordered_and_numbered(upstream, client):
    upstream.add("r-full", full_stream())
    events = list(client.responses.create(model="up/r-full", input="Weather?", tools=TOOLS, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    # items in output_index order, each one finished before the next is added
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == [0, 1, 2]
    kinds = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert kinds == ["reasoning", "message", "function_call"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "".join(TEXT)
    assert "".join(e.delta for e in events
                   if e.type == "response.reasoning_summary_text.delta") == "".join(REASONING)
    fc_added = next(e.item for e in events if e.type == "response.output_item.added"
                    and e.item.type == "function_call")
    arg_deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert [e.delta for e in arg_deltas] == ARGS
    assert {e.item_id for e in arg_deltas} == {fc_added.id} and fc_added.id.startswith("fc_")
    assert fc_added.call_id == "call_A" and fc_added.arguments == ""
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == "".join(TEXT)
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (58, 40, 98)
    assert final.usage.input_tokens_details.cached_tokens == 8
    assert final.usage.output_tokens_details.reasoning_tokens == 22
    assert final.id == events[0].response.id and final.id.startswith("resp_")


def test_stream_helper_final_response_and_argument_snapshots(upstream, client):
    upstream.add("r-helper", full_stream(args=['{"ci', 'ty": "Lima"}']))
    with client.responses.stream(model="up/r-helper", input="Weather?", tools=TOOLS) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert snapshots == ['{"ci', '{"city": "Lima"}']
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [("call_A", "get_weather",
                                                                             {"city": "Lima"})]
    assert final.output_text == "".join(TEXT)
    assert final.usage.output_tokens == 40
    sent = upstream.last("r-helper").body
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather by city", "parameters": TOOLS[0]["parameters"]}}]


def test_non_stream_response_object(upstream, client):
    upstream.add("r-plain", chat_text_stream(["Hello", " there"], usage=usage_wire(7, 3)))
    resp = client.responses.create(model="up/r-plain", input="hi", instructions="Be brief.")
    assert resp.status == "completed" and resp.output_text == "Hello there"
    assert resp.instructions == "Be brief."
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (7, 3)
    sent = upstream.last("r-plain").body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def test_length_finish_is_response_incomplete(upstream, client):
    upstream.add("r-len", chat_text_stream(["cut"], finish="length"))
    events = list(client.responses.create(model="up/r-len", input="hi", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert upstream.last("r-len").body["max_tokens"] == 16
    resp = client.responses.create(model="up/r-len", input="hi")
    assert resp.status == "incomplete" and resp.output_text == "cut"


def test_midstream_failure_is_error_then_response_failed(upstream, client):
    upstream.add("r-fail", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "partial"})),
                            sse({"error": {"message": "The server had an error", "type": "server_error"}})])
    # openai-python raises only on a top-level "error" key, so the terminal status is the signal (§3.6)
    events = list(client.responses.create(model="up/r-fail", input="hi", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2].message == "The server had an error"
    failed = events[-1].response
    assert failed.status == "failed" and "server had an error" in failed.error.message
    assert failed.output[0].content[0].text == "partial"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_input_items_become_canonical_messages(upstream, client):
    upstream.add("r-items", chat_text_stream(["ok"]))
    client.responses.create(model="up/r-items", instructions="sys", tools=TOOLS, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thought"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_9", "output": '{"tempC":4}'},
        {"role": "developer", "content": "answer briefly"},
    ])
    msgs = upstream.last("r-items").body["messages"]
    assert msgs[0] == {"role": "system", "content": "sys"}
    assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert msgs[2]["role"] == "assistant" and msgs[2]["content"] == "Let me check."
    assert msgs[2]["tool_calls"] == [{"id": "call_9", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_9", "content": '{"tempC":4}'}
    assert msgs[4] == {"role": "system", "content": "answer briefly"}


def test_unknown_previous_response_id_is_a_404_in_openais_shape(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="up/x", input="hi", previous_response_id="resp_123")
    assert info.value.body["param"] == "previous_response_id"
    assert info.value.body["code"] == "previous_response_not_found"
    assert info.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "hi", "temperature": 7}, "temperature"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
])
def test_bad_input_is_openai_400(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="up/x", **kwargs)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"


def test_upstream_errors_before_streaming_keep_their_status(upstream, client):
    upstream.add("r-429", Script([json.dumps({"error": {"message": "slow down"}})], status=429,
                                 headers={"content-type": "application/json", "retry-after": "3"}))
    with pytest.raises(openai.RateLimitError) as info:
        list(client.responses.create(model="up/r-429", input="hi", stream=True))
    assert "slow down" in info.value.message
    assert info.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
