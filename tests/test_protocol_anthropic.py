"""/v1/messages and /v1/messages/count_tokens driven by the official anthropic SDK."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from .test_protocol_matrix import TEXT, full_stream
from .upstream import Script, chat_chunk, chat_text_stream, sse, usage_wire

WEATHER = {"name": "get_weather", "description": "Weather by city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(server):
    c = anthropic.Anthropic(base_url=server.url, api_key="anything", max_retries=0, timeout=20)
    yield c
    c.close()


def test_stream_text_and_final_usage(upstream, client):
    upstream.add("a-text", chat_text_stream(TEXT, usage=usage_wire(30, 9, cached=10)))
    with client.messages.stream(model="up/a-text", max_tokens=100, messages=USER,
                                system="You are terse.") as stream:
        pieces = list(stream.text_stream)
        msg = stream.get_final_message()
    assert pieces == TEXT
    assert msg.content[0].text == "".join(TEXT) and msg.stop_reason == "end_turn"
    assert msg.model == "up/a-text" and msg.id.startswith("msg_")
    # input_tokens is the uncached part; total input = input + cache reads (§4.3)
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (20, 10, 9)
    sent = upstream.last("a-text").body
    assert sent["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 100


def test_raw_stream_has_event_lines_equal_to_type_and_a_ping(upstream, server):
    upstream.add("a-raw", chat_text_stream(["a"]))
    r = httpx.post(f"{server.url}/v1/messages", json={"model": "up/a-raw", "max_tokens": 5, "messages": USER,
                                                      "stream": True}, headers={"x-api-key": "k"})
    frames = [f for f in r.text.split("\n\n") if f]
    for f in frames:
        event, data = f.split("\n")
        assert event[len("event: "):] == json.loads(data[len("data: "):])["type"]
    names = [f.split("\n")[0][7:] for f in frames]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert not r.text.endswith("[DONE]\n\n")


def test_tool_use_with_parsed_input(upstream, client):
    upstream.add("a-tool", full_stream(args=['{"ci', 'ty": "Oslo"}']))
    events = []
    with client.messages.stream(model="up/a-tool", max_tokens=100, messages=USER, tools=[WEATHER]) as stream:
        for ev in stream:
            events.append(ev)
        msg = stream.get_final_message()
    assert msg.stop_reason == "tool_use"
    blocks = [b for b in msg.content if b.type == "tool_use"]
    assert [(b.id, b.name, b.input) for b in blocks] == [("call_A", "get_weather", {"city": "Oslo"})]
    json_snapshots = [e.snapshot for e in events if e.type == "input_json"]
    assert json_snapshots[-1] == {"city": "Oslo"}
    # dense block indexes from 0; unsigned upstream reasoning shown as thinking (empty signature), first
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].signature == "" and msg.content[0].thinking
    sent = upstream.last("a-tool").body
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]


def test_tool_loop_request_converts_tool_use_and_tool_result(upstream, client):
    upstream.add("a-loop", chat_text_stream(["4 °C"]))
    client.messages.create(model="up/a-loop", max_tokens=50, tools=[WEATHER],
                           tool_choice={"type": "any", "disable_parallel_tool_use": True},
                           system=[{"type": "text", "text": "sys A"}, {"type": "text", "text": "sys B"}],
                           messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "need tool", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4C"}]},
            {"type": "text", "text": "and tomorrow?"}]},
    ])
    sent = upstream.last("a-loop").body
    assert sent["messages"][0] == {"role": "system", "content": "sys A\n\nsys B"}
    assert sent["messages"][2]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert sent["messages"][2]["content"] == "Checking."
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "4C"}
    assert sent["messages"][4] == {"role": "user", "content": "and tomorrow?"}
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False


def test_non_stream_message(upstream, client):
    upstream.add("a-full", full_stream())
    msg = client.messages.create(model="up/a-full", max_tokens=100, messages=USER, tools=[WEATHER])
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"city": "Oslo"}
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens + msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (58, 40)


def test_bearer_and_x_api_key_auth(upstream, make_server):
    srv = make_server(server={"api_keys": ["secret-1"]})
    upstream.add("a-auth", chat_text_stream(["ok"]))
    good = anthropic.Anthropic(base_url=srv.url, api_key="secret-1", max_retries=0)
    assert good.messages.create(model="up/a-auth", max_tokens=5, messages=USER).content[0].text == "ok"
    bearer = anthropic.Anthropic(base_url=srv.url, auth_token="secret-1", max_retries=0)
    assert bearer.messages.create(model="up/a-auth", max_tokens=5, messages=USER).content[0].text == "ok"
    bad = anthropic.Anthropic(base_url=srv.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model="up/a-auth", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("upstream_status", "exc", "status", "etype"), [
    (503, anthropic.InternalServerError, 529, "overloaded_error"),
    (529, anthropic.InternalServerError, 529, "overloaded_error"),
    (429, anthropic.RateLimitError, 429, "rate_limit_error"),
    (403, anthropic.PermissionDeniedError, 403, "permission_error"),
    (500, anthropic.InternalServerError, 502, "api_error"),
])
def test_upstream_errors_map_to_anthropic_errors(upstream, client, upstream_status, exc, status, etype):
    name = upstream.add(f"a-err-{upstream_status}", Script([json.dumps({"error": {"message": "boom"}})],
                                                           status=upstream_status,
                                                           headers={"content-type": "application/json"}))
    with pytest.raises(exc) as info, client.messages.stream(model=f"up/{name}", max_tokens=5,
                                                            messages=USER) as s:
        s.get_final_message()
    assert info.value.status_code == status
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == etype
    if status == 529:
        assert isinstance(info.value, anthropic.OverloadedError)


@pytest.mark.parametrize(("body", "needle"), [
    ({"model": "up/x", "messages": USER}, "max_tokens"),
    ({"model": "up/x", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"model": "up/x", "max_tokens": 5, "messages": USER, "tools": [{"type": "web_search_20250305",
                                                                    "name": "web_search"}]}, "tools[0]"),
    ({"model": "up/x", "max_tokens": 5, "messages": []}, "messages"),
])
def test_bad_requests_are_anthropic_400s(server, body, needle):
    r = httpx.post(f"{server.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]


def test_sdk_raises_bad_request(client):
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="up/x", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "mystery"}]}])
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "not_found_error"


def test_midstream_error_raises_after_partial_text(upstream, client):
    upstream.add("a-mid", [sse(chat_chunk({"role": "assistant", "content": ""})),
                           sse(chat_chunk({"content": "partial"})),
                           sse({"error": {"message": "overloaded now", "type": "overloaded_error"}})])
    got = []
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(
            model="up/a-mid", max_tokens=5, messages=USER) as s:
        for text in s.text_stream:
            got.append(text)
    assert got == ["partial"]
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "overloaded now"}


def test_count_tokens_estimate(client):
    short = client.messages.count_tokens(model="up/x", messages=USER)
    long = client.messages.count_tokens(model="up/x", system="s" * 400, messages=USER, tools=[WEATHER])
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens >= 100  # ~4 characters per token
