"""Ollama native adapter: byte-accurate NDJSON from the fake upstream (lines
split mid-line and mid-character, several lines per write), read through
sluiceway's /v1/chat/completions with the openai SDK, plus pure tests of the
line framing, the chunk state machine and the request conversion."""

from __future__ import annotations

import json

import pytest

from sluiceway.core import BadRequest, ChatRequest, ImagePart, Message, TextPart, ToolCallPart
from sluiceway.providers.frames import NDJSONLines
from sluiceway.providers.ollama import ChunkAdapter, OllamaProvider, OllamaSettings, request_body

from .providers.gateway import sdk_client, user
from .providers.pure import feed_all
from .upstream import Script

NDJSON = {"content-type": "application/x-ndjson"}
KEY = "ollama-cloud-secret-do-not-leak"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def line(model: str, content: str = "", thinking: str | None = None, tool_calls: list | None = None,
         done: bool = False, **extra) -> bytes:
    msg: dict = {"role": "assistant", "content": content}
    if thinking is not None:
        msg["thinking"] = thinking
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    obj = {"model": model, "created_at": "2025-01-01T00:00:00.000000Z", "message": msg, "done": done, **extra}
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def done(model: str, reason: str = "stop", prompt: int = 26, output: int = 9) -> bytes:
    return line(model, done=True, done_reason=reason, total_duration=182242375, load_duration=1000,
                prompt_eval_count=prompt, prompt_eval_duration=100, eval_count=output, eval_duration=200)


@pytest.fixture(scope="module")
def client(upstream):
    with sdk_client(upstream, {"oll": {"kind": "ollama", "base_url": upstream.url, "api_key": KEY,
                                       "options": {"num_ctx": 8192}, "keep_alive": "5m"}}) as c:
        yield c


# ------------------------------------------------------------- over HTTP

def test_ndjson_split_mid_line_and_mid_utf8_with_thinking_and_usage(upstream, client):
    m = "oll-text"
    body = (line(m, thinking="Let me ") + line(m, thinking="think.") + line(m, "Grüß ")
            + line(m, "日本語 🙂") + line(m, "!") + done(m, prompt=26, output=9))
    cut1 = body.index(b"think.") + 3  # mid-line
    cut2 = body.index("本".encode()) + 2  # inside a 3-byte character
    cut3 = body.index("🙂".encode()) + 1  # inside a 4-byte character
    upstream.add(m, [body[:cut1], 0.02, body[cut1:cut2], 0.02, body[cut2:cut3], 0.02, body[cut3:]], headers=NDJSON)
    chunks = list(client.chat.completions.create(
        model=f"oll/{m}", messages=[{"role": "system", "content": "sys"}, *user()], stream=True,
        stream_options={"include_usage": True}, max_tokens=64, temperature=0.3, top_p=0.8, seed=3, stop=["\n\n"]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    assert text == "Grüß 日本語 🙂!"
    assert reasoning == "Let me think."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (26, 9)
    rec = upstream.last(m)
    assert rec.path == "/api/chat" and KEY not in rec.path
    assert rec.headers["Authorization"] == f"Bearer {KEY}"
    assert rec.body["stream"] is True and rec.body["keep_alive"] == "5m"
    assert rec.body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert rec.body["options"] == {"num_ctx": 8192, "num_predict": 64, "temperature": 0.3, "top_p": 0.8,
                                   "seed": 3, "stop": ["\n\n"]}


def test_whole_tool_calls_become_streamed_calls_and_results_go_back(upstream, client):
    m = "oll-tool"
    upstream.add(m, [line(m, thinking="Need a tool")
                     + line(m, tool_calls=[{"function": {"index": 0, "name": "get_weather",
                                                         "arguments": {"city": "Oslo"}}},
                                           {"id": "call_x", "function": {"index": 1, "name": "get_weather",
                                                                         "arguments": {"city": "Lima"}}}])
                     + done(m, "stop", 40, 20)], headers=NDJSON)
    full = client.chat.completions.create(model=f"oll/{m}", messages=user("weather?"), tools=TOOLS)
    msg = full.choices[0].message
    assert full.choices[0].finish_reason == "tool_calls"  # done_reason stays "stop" upstream
    assert msg.model_extra["reasoning_content"] == "Need a tool"
    assert [json.loads(c.function.arguments) for c in msg.tool_calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert msg.tool_calls[1].id == "call_x" and msg.tool_calls[0].id and msg.tool_calls[0].id != "call_x"
    assert upstream.last(m).body["tools"] == TOOLS

    m2 = "oll-tool2"
    upstream.add(m2, [line(m2, "Sunny.") + done(m2)], headers=NDJSON)
    history = [*user("weather?"), {"role": "assistant", "content": None,
                                   "tool_calls": [c.model_dump(exclude_none=True) for c in msg.tool_calls]},
               {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "21C"},
               {"role": "tool", "tool_call_id": "call_x", "content": "25C"}]
    assert client.chat.completions.create(model=f"oll/{m2}", messages=history,
                                          tools=TOOLS).choices[0].message.content == "Sunny."
    sent = upstream.last(m2).body["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert sent[2] == {"role": "tool", "content": "21C", "tool_name": "get_weather",
                       "tool_call_id": msg.tool_calls[0].id}
    assert sent[3]["tool_name"] == "get_weather"


def test_done_reason_length(upstream, client):
    upstream.add("oll-len", [line("oll-len", "abc") + done("oll-len", "length", 3, 3)], headers=NDJSON)
    assert client.chat.completions.create(model="oll/oll-len", messages=user()).choices[0].finish_reason == "length"


async def test_list_models_from_api_tags(upstream):
    upstream.routes["/api/tags"] = Script([json.dumps({"models": [
        {"name": "qwen3:8b", "model": "qwen3:8b", "size": 1, "details": {"family": "qwen3"}},
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2}]})],
        headers={"content-type": "application/json"})
    p = OllamaProvider("oll", OllamaSettings(base_url=upstream.url))
    try:
        assert [m.id for m in await p.list_models()] == ["qwen3:8b", "llama3.2:latest"]
    finally:
        await p.aclose()


# ------------------------------------------------------ pure state machine

def test_fixture_ndjson_lines_reassemble_split_lines_and_characters():
    lines = NDJSONLines()
    data = '{"a":"日本"}\n{"b":1}\n{"c":'.encode()
    assert lines.feed(data[:5]) == []
    assert lines.feed(data[5:]) == ['{"a":"日本"}'.encode(), b'{"b":1}']
    assert lines.feed(b"2}\n\n") == [b'{"c":2}']
    assert lines.feed(b'{"d":3}') == [] and lines.close() == [b'{"d":3}']


def _run(objs: list[dict]) -> list:
    return feed_all(ChunkAdapter(), objs)


def test_fixture_string_arguments_pass_through_and_missing_id_is_made_up():
    out = _run([{"model": "m", "message": {"content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": '{"x":1}'}}]}, "done": False},
        {"model": "m", "message": {"content": ""}, "done": True, "done_reason": "stop"}])
    call = next(e for e in out if e.type == "tool-call")
    assert call.arguments == '{"x":1}' and call.call_id.startswith("call_")
    assert [e.type for e in out if e.type.startswith("tool-input")] == [
        "tool-input-start", "tool-input-delta", "tool-input-end"]
    assert out[-1].reason == "tool_calls"


def test_fixture_done_without_counts_estimates_usage_and_load_is_other():
    out = _run([{"model": "m", "message": {"content": "x" * 40}, "done": False},
                {"model": "m", "message": {"content": ""}, "done": True, "done_reason": "load"}])
    assert out[-1].reason == "other" and out[-1].usage.estimated and out[-1].usage.output == 10


def test_request_conversion_images_format_and_think():
    req = ChatRequest(model="m", messages=[
        Message("user", [TextPart("look"), ImagePart("data:image/png;base64,AAAA")]),
        Message("assistant", [], tool_calls=[ToolCallPart("c1", "f", '{"a": [1]}')])],
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
        reasoning_effort="high")
    body = request_body(req)
    assert body["messages"][0] == {"role": "user", "content": "look", "images": ["AAAA"]}
    assert body["messages"][1]["tool_calls"] == [{"id": "c1", "function": {"name": "f", "arguments": {"a": [1]}}}]
    assert body["format"] == {"type": "object"} and body["think"] == "high" and "options" not in body
    with pytest.raises(BadRequest):
        request_body(ChatRequest(model="m", messages=[Message("user", [ImagePart("https://x/y.png")])]))
