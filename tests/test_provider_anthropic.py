"""The native Anthropic adapter: the pure wire state machine fed recorded event
sequences, the request conversion, and the whole path over real HTTP (fake
Anthropic upstream → sluiceway → openai SDK)."""

from __future__ import annotations

import json

import openai
import pytest

from sluiceway.core import (
    BadRequest,
    ChatRequest,
    Finish,
    ImagePart,
    Message,
    RateLimited,
    ReasoningEnd,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCall,
    ToolCallPart,
    UpstreamError,
    UpstreamUnavailable,
)
from sluiceway.providers.anthropic_wire import EventAdapter, request_body

from .providers.gateway import sdk_client
from .providers.pure import feed_all, types
from .upstream import sse

KEY = "sk-ant-secret-do-not-leak"


# ------------------------------------------------------------ wire fixtures

def ev(obj: dict) -> bytes:
    """One Anthropic SSE event: the ``event:`` line always equals the JSON type."""
    return sse(obj, obj["type"])


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def message_start(input_tokens=20, cache_creation=0, cache_read=0, model="claude-x", id="msg_1") -> dict:
    return {"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_creation,
                  "cache_read_input_tokens": cache_read, "output_tokens": 1, "service_tier": "standard"}}}


def block_start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, d: dict) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": d}


def block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int, **usage) -> dict:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens, **usage}}


MESSAGE_STOP = {"type": "message_stop"}


def text_stream(pieces: list[str], *, stop="end_turn", input_tokens=20, cache_creation=0, cache_read=0,
                output_tokens=9) -> list[dict]:
    return [message_start(input_tokens, cache_creation, cache_read),
            block_start(0, {"type": "text", "text": ""}),
            *[delta(0, {"type": "text_delta", "text": p}) for p in pieces],
            block_stop(0), message_delta(stop, output_tokens), MESSAGE_STOP]


# the §4.2 reference stream: signed thinking, then a tool call split across deltas
THINKING_TOOL_STREAM = [
    message_start(),
    block_start(0, {"type": "thinking", "thinking": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "User wants "}),
    delta(0, {"type": "thinking_delta", "thinking": "Oslo weather."}),
    delta(0, {"type": "signature_delta", "signature": "EqQBsig"}),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    {"type": "ping"},
    delta(1, {"type": "input_json_delta", "partial_json": ""}),
    delta(1, {"type": "input_json_delta", "partial_json": '{"city": "Os'}),
    delta(1, {"type": "input_json_delta", "partial_json": 'lo"}'}),
    block_stop(1),
    message_delta("tool_use", 61),
    MESSAGE_STOP,
]


def steps_of(events: list[dict]) -> list[bytes]:
    return [PING if e["type"] == "ping" else ev(e) for e in events]


def run(events: list[dict], *, end: bool = True) -> list:
    return feed_all(EventAdapter(), events, end=end)


# ----------------------------------------------------------- state machine

def test_text_with_pings_and_cache_usage_sums_input_per_8_5():
    events = text_stream(["Hel", "lo"], input_tokens=20, cache_creation=5, cache_read=100, output_tokens=9)
    events.insert(2, {"type": "ping"})
    out = run(events)
    assert types(out) == ["start", "text-start", "text-delta", "text-delta", "text-end", "finish"]
    assert out[0].response_id == "msg_1" and out[0].model == "claude-x"
    fin = out[-1]
    assert fin.reason == "stop" and fin.raw_reason == "end_turn"
    assert (fin.usage.input, fin.usage.cached_input, fin.usage.output) == (125, 100, 9)
    assert not fin.usage.estimated


def test_signed_thinking_then_tool_call_with_empty_first_json_fragment():
    out = run(THINKING_TOOL_STREAM)
    assert types(out) == ["start", "reasoning-start", "reasoning-delta", "reasoning-delta", "reasoning-end",
                          "tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-end",
                          "tool-call", "finish"]
    end = next(e for e in out if isinstance(e, ReasoningEnd))
    assert end.signature == "EqQBsig"
    call = next(e for e in out if isinstance(e, ToolCall))
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("toolu_1", "get_weather", {"city": "Oslo"})
    assert out[-1].reason == "tool_calls" and out[-1].usage.output == 61


def test_omitted_thinking_display_still_yields_signed_reasoning_block():
    out = run([message_start(), block_start(0, {"type": "thinking", "thinking": ""}),
               delta(0, {"type": "signature_delta", "signature": "sigonly"}), block_stop(0),
               block_start(1, {"type": "text", "text": ""}), delta(1, {"type": "text_delta", "text": "hi"}),
               block_stop(1), message_delta("end_turn", 3), MESSAGE_STOP])
    assert types(out)[:3] == ["start", "reasoning-start", "reasoning-end"]
    assert out[2].signature == "sigonly"


def test_redacted_thinking_arrives_whole_in_block_start():
    out = run([message_start(), block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgB"}), block_stop(0),
               *text_stream(["ok"])[1:]])
    red = [e for e in out if isinstance(e, ReasoningEnd)]
    assert len(red) == 1 and red[0].redacted == "EmwKAhgB"


def test_tool_use_without_input_deltas_is_empty_object():
    out = run([message_start(), block_start(0, {"type": "tool_use", "id": "toolu_9", "name": "now", "input": {}}),
               block_stop(0), message_delta("tool_use", 5), MESSAGE_STOP])
    call = next(e for e in out if isinstance(e, ToolCall))
    assert call.arguments == "{}"


def test_parallel_tool_use_blocks_stay_separate_calls():
    events = [message_start()]
    for i, city in enumerate(["Oslo", "Lima"]):
        events += [block_start(i, {"type": "tool_use", "id": f"toolu_{i}", "name": "get_weather", "input": {}}),
                   delta(i, {"type": "input_json_delta", "partial_json": json.dumps({"city": city})}),
                   block_stop(i)]
    out = run(events + [message_delta("tool_use", 20), MESSAGE_STOP])
    calls = [e for e in out if isinstance(e, ToolCall)]
    assert [(c.call_id, json.loads(c.arguments)["city"]) for c in calls] == [("toolu_0", "Oslo"), ("toolu_1", "Lima")]


def test_server_tool_blocks_and_unknown_events_are_ignored():
    out = run([message_start(),
               block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
               delta(0, {"type": "input_json_delta", "partial_json": '{"query":"x"}'}), block_stop(0),
               {"type": "some_future_event", "x": 1},
               block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
               block_stop(1),
               block_start(2, {"type": "text", "text": ""}),
               delta(2, {"type": "citations_delta", "citation": {"type": "web_search_result_location"}}),
               delta(2, {"type": "text_delta", "text": "found"}), block_stop(2),
               message_delta("end_turn", 10), MESSAGE_STOP])
    assert types(out) == ["start", "text-start", "text-delta", "text-end", "finish"]


def test_two_text_blocks_are_two_canonical_blocks():
    out = run([message_start(), block_start(0, {"type": "text", "text": ""}),
               delta(0, {"type": "text_delta", "text": "a"}), block_stop(0),
               block_start(1, {"type": "text", "text": ""}), delta(1, {"type": "text_delta", "text": "b"}),
               block_stop(1), message_delta("end_turn", 2), MESSAGE_STOP])
    assert types(out).count("text-start") == 2 and types(out).count("text-end") == 2


@pytest.mark.parametrize(("raw", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("something_new", "other")])
def test_stop_reason_mapping(raw, reason):
    fin = run(text_stream(["x"], stop=raw))[-1]
    assert isinstance(fin, Finish) and fin.reason == reason and fin.raw_reason == raw


def test_output_tokens_are_the_last_cumulative_message_delta():
    events = text_stream(["x"], output_tokens=3)
    events.insert(-1, message_delta("end_turn", 17, input_tokens=20))
    assert run(events)[-1].usage.output == 17


def test_overloaded_error_event_is_retryable_unavailable():
    with pytest.raises(UpstreamUnavailable) as info:
        run([message_start(), {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    assert info.value.retryable and "Overloaded" in info.value.message


@pytest.mark.parametrize(("etype", "cls"), [("rate_limit_error", RateLimited), ("api_error", UpstreamError),
                                            ("invalid_request_error", BadRequest)])
def test_error_event_types_map_to_typed_errors(etype, cls):
    with pytest.raises(cls):
        run([{"type": "error", "error": {"type": etype, "message": "m"}}])


# ------------------------------------------------------------- request side

def test_request_conversion_system_roles_tools_images_and_signed_thinking():
    req = ChatRequest(model="claude-x", messages=[
        Message.of("system", "Be brief."),
        Message("user", [TextPart("look"), ImagePart("data:image/png;base64,iVBORw0KGgo="),
                         ImagePart("https://example.com/cat.jpg")]),
        Message.of("user", "and answer"),
        Message("assistant", [TextPart(""), ReasoningPart("hmm", signature="sig1"), ReasoningPart("unsigned"),
                              TextPart("Let me check."), ReasoningPart("", redacted="REDACTED")],
                tool_calls=[ToolCallPart("toolu_1", "get_weather", '{"city":"Oslo"}')]),
        Message("tool", [TextPart("12C")], tool_call_id="toolu_1"),
        Message("tool", [TextPart("boom")], tool_call_id="toolu_2", is_error=True),
        Message.of("user", "thanks"),
    ], tools=[Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice="required", stop=["END"], temperature=0.2)
    body = request_body(req, default_max_tokens=1000)
    assert body["system"] == "Be brief." and body["max_tokens"] == 1000 and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    user = body["messages"][0]["content"]
    assert user[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                   "data": "iVBORw0KGgo="}}
    assert user[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert user[3] == {"type": "text", "text": "and answer"}
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "REDACTED"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
        {"type": "text", "text": "thanks"}]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather",
                              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    assert body["tool_choice"] == {"type": "any"} and body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.2


def test_reasoning_effort_becomes_thinking_budget_and_drops_temperature():
    req = ChatRequest(model="m", messages=[Message.of("user", "x")], reasoning_effort="low", max_tokens=500,
                      temperature=0.5)
    body = request_body(req)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2548 > body["thinking"]["budget_tokens"]
    assert "temperature" not in body
    with pytest.raises(BadRequest):
        request_body(ChatRequest(model="m", messages=[Message.of("user", "x")], reasoning_effort="extreme"))


def test_parallel_tool_calls_false_and_specific_tool_choice():
    req = ChatRequest(model="m", messages=[Message.of("user", "x")], tools=[Tool("t")],
                      tool_choice={"name": "t"}, parallel_tool_calls=False)
    assert request_body(req)["tool_choice"] == {"type": "tool", "name": "t", "disable_parallel_tool_use": True}


# ------------------------------------------------------------ over real HTTP

@pytest.fixture(scope="module")
def client(upstream):
    with sdk_client(upstream, {"anth": {"kind": "anthropic", "base_url": upstream.url, "api_key": KEY,
                                        "max_tokens": 777}}) as c:
        yield c


def test_stream_text_usage_and_what_was_sent_upstream(upstream, client):
    pieces = ["Hel", "lo, ", "日本", "語 🙂"]
    events = text_stream(pieces, input_tokens=20, cache_creation=5, cache_read=100, output_tokens=9)
    events.insert(2, {"type": "ping"})
    upstream.add("anth-text", steps_of(events))
    chunks = list(client.chat.completions.create(
        model="anth/anth-text", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                  {"role": "user", "content": "there"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(pieces)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    u = chunks[-1].usage
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == (125, 9, 100)
    rec = upstream.last("anth-text")
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == KEY and rec.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in rec.headers
    assert rec.body["system"] == "sys" and rec.body["max_tokens"] == 777 and rec.body["stream"] is True
    assert rec.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                                 {"type": "text", "text": "there"}]}]


def test_non_stream_reasoning_and_tool_call(upstream, client):
    upstream.add("anth-think", steps_of(THINKING_TOOL_STREAM))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    full = client.chat.completions.create(model="anth/anth-think", tools=tools, reasoning_effort="medium",
                                          messages=[{"role": "user", "content": "weather in Oslo?"}])
    msg = full.choices[0].message
    assert msg.model_extra["reasoning_content"] == "User wants Oslo weather."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == [
        ("toolu_1", "get_weather", {"city": "Oslo"})]
    assert full.choices[0].finish_reason == "tool_calls"
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (20, 61)
    sent = upstream.last("anth-think").body
    assert sent["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}


def test_tool_result_turn_and_images_are_converted(upstream, client):
    upstream.add("anth-turn", steps_of(text_stream(["done"])))
    client.chat.completions.create(model="anth/anth-turn", messages=[
        {"role": "user", "content": [{"type": "text", "text": "see"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_7", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "toolu_7", "content": "42"}])
    msgs = upstream.last("anth-turn").body["messages"]
    assert msgs[0]["content"][1]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}
    assert msgs[0]["content"][2]["source"] == {"type": "url", "url": "https://example.com/a.png"}
    assert msgs[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_7", "name": "f",
                                                         "input": {"a": 1}}]}
    assert msgs[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_7",
                                                    "content": "42"}]}


def test_overloaded_before_first_token_is_a_503(upstream, client):
    upstream.add("anth-overloaded-early", [ev(message_start()), PING,
                                           sse({"type": "error", "error": {"type": "overloaded_error",
                                                                           "message": "Overloaded"}}, "error")])
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="anth/anth-overloaded-early", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "Overloaded" in info.value.message


def test_crlf_framing_is_parsed(upstream, client):
    steps = [s.replace(b"\n", b"\r\n") for s in steps_of(text_stream(["cr", "lf"]))]
    upstream.add("anth-crlf", steps)
    full = client.chat.completions.create(model="anth/anth-crlf", messages=[{"role": "user", "content": "x"}])
    assert full.choices[0].message.content == "crlf"


async def test_list_models_uses_v1_models_with_api_key(upstream):
    from sluiceway.providers.anthropic import AnthropicProvider, AnthropicSettings

    p = AnthropicProvider("anth", AnthropicSettings(base_url=upstream.url, api_key=KEY))
    try:
        models = await p.list_models()
    finally:
        await p.aclose()
    assert models and all(m.id for m in models)
    rec = [r for r in upstream.records if r.path.startswith("/v1/models")][-1]
    assert rec.headers["x-api-key"] == KEY and rec.headers["anthropic-version"] == "2023-06-01"
