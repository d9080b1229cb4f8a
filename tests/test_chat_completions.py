"""/v1/chat/completions driven by the official openai SDK against the fake upstream."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .conftest import UPSTREAM_KEY
from .upstream import DROP, HANG, Script, chat_chunk, chat_text_stream, sse, usage_wire

PIECES = ["Hel", "lo, ", "wor", "ld! ", "¿Qué tal? ", "日本語 ", "🙂"]
TEXT = "".join(PIECES)


@pytest.fixture
def client(server):
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="anything", max_retries=0, timeout=20)
    yield c
    c.close()


def test_streamed_text_equals_scripted_text_and_usage_chunk(upstream, client):
    upstream.add("hello", chat_text_stream(PIECES, usage=usage_wire(12, 7, cached=4)))
    stream = client.chat.completions.create(model="up/hello", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (12, 7, 19)
    assert last.usage.prompt_tokens_details.cached_tokens == 4
    assert all(c.model == "up/hello" for c in chunks)
    # the upstream was asked for usage and got our configured key, not the client's
    rec = upstream.last("hello")
    assert rec.body["stream"] is True and rec.body["stream_options"] == {"include_usage": True}
    assert rec.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_no_usage_chunk_unless_asked(upstream, client):
    upstream.add("hello-nousage", chat_text_stream(["a", "b"], usage=usage_wire(1, 2)))
    chunks = list(client.chat.completions.create(model="up/hello-nousage", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_usage_is_estimated_when_upstream_reports_none(upstream, client):
    upstream.add("no-usage-upstream", chat_text_stream(["x" * 40]))
    chunks = list(client.chat.completions.create(
        model="up/no-usage-upstream", messages=[{"role": "user", "content": "y" * 80}], stream=True,
        stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage.completion_tokens == 10  # 40 chars / 4
    assert usage.prompt_tokens > 0


def test_non_stream_equals_stream(upstream, client):
    upstream.add("same", chat_text_stream(PIECES, usage=usage_wire(5, 6)))
    full = client.chat.completions.create(model="up/same", messages=[{"role": "user", "content": "hi"}])
    assert full.choices[0].message.content == TEXT
    assert full.choices[0].finish_reason == "stop"
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (5, 6)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="up/same", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
    assert streamed == full.choices[0].message.content


def _tool_stream(calls: list[tuple[int, str, str, list[str]]]) -> list:
    steps = [sse(chat_chunk({"role": "assistant", "content": None}))]
    for index, call_id, name, frags in calls:
        steps.append(sse(chat_chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                                     "function": {"name": name, "arguments": ""}}]})))
        for f in frags:
            steps.append(sse(chat_chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]})))
    steps.append(sse(chat_chunk({}, "tool_calls")))
    steps.append(b"data: [DONE]\n\n")
    return steps


def _accumulate_tool_calls(chunks) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for c in chunks:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or ():
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
    return calls


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_tool_calls_stream_and_accumulate_to_valid_json(upstream, client):
    upstream.add("tools", _tool_stream([(0, "call_A", "get_weather", ['{"city":', '"Oslo"}']),
                                        (1, "call_B", "get_weather", ['{"ci', 'ty": "Lima"}'])]))
    chunks = list(client.chat.completions.create(model="up/tools", messages=[{"role": "user", "content": "w"}],
                                                 tools=TOOLS, stream=True))
    calls = _accumulate_tool_calls(chunks)
    assert [calls[i]["id"] for i in sorted(calls)] == ["call_A", "call_B"]
    assert [json.loads(calls[i]["arguments"]) for i in sorted(calls)] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = upstream.last("tools").body
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_parallel_calls_all_at_index_zero_get_dense_indexes(upstream, client):
    # Ollama's /v1 once sent index 0 for every parallel call (protocols.md §9.4)
    upstream.add("tools-idx0", _tool_stream([(0, "call_1", "get_weather", ['{"city":"A"}']),
                                             (0, "call_2", "get_weather", ['{"city":"B"}'])]))
    chunks = list(client.chat.completions.create(model="up/tools-idx0", tools=TOOLS, stream=True,
                                                 messages=[{"role": "user", "content": "w"}]))
    calls = _accumulate_tool_calls(chunks)
    assert {i: json.loads(c["arguments"]) for i, c in calls.items()} == {0: {"city": "A"}, 1: {"city": "B"}}
    full = client.chat.completions.create(model="up/tools-idx0", tools=TOOLS,
                                          messages=[{"role": "user", "content": "w"}])
    assert [t.id for t in full.choices[0].message.tool_calls] == ["call_1", "call_2"]
    assert full.choices[0].finish_reason == "tool_calls"


def test_reasoning_fields_from_both_vendor_names(upstream, client):
    upstream.add("think", [sse(chat_chunk({"role": "assistant", "content": ""})),
                           sse(chat_chunk({"reasoning_content": "deep"})),
                           sse(chat_chunk({"reasoning": "er"})),
                           sse(chat_chunk({"content": "42"})),
                           sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"])
    full = client.chat.completions.create(model="up/think", messages=[{"role": "user", "content": "?"}])
    assert full.choices[0].message.content == "42"
    assert full.choices[0].message.model_extra["reasoning_content"] == "deeper"


@pytest.mark.parametrize(("status", "exc"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError), (429, openai.RateLimitError), (500, openai.InternalServerError),
    (503, openai.InternalServerError)])
def test_upstream_http_errors_surface_as_sdk_errors(upstream, client, status, exc):
    name = f"err-{status}"
    upstream.add(name, Script([json.dumps({"error": {"message": f"boom {status}", "type": "x"}})],
                              status=status, headers={"content-type": "application/json", "retry-after": "7"}))
    with pytest.raises(exc) as info:
        list(client.chat.completions.create(model=f"up/{name}", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))
    assert f"boom {status}" in info.value.message
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


def test_midstream_inband_error_raises_after_partial_text(upstream, client):
    upstream.add("mid-err", [sse(chat_chunk({"role": "assistant", "content": ""})),
                             sse(chat_chunk({"content": "partial"})),
                             sse({"error": {"message": "The server had an error", "type": "server_error"}})])
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model="up/mid-err", stream=True,
                                                messages=[{"role": "user", "content": "x"}]):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert got == ["partial"]
    assert "server had an error" in str(info.value)


def test_truncated_upstream_becomes_in_stream_error(upstream, client):
    upstream.add("cut", [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "half"})), 0.05, DROP])
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="up/cut", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))


def test_closing_client_stream_cancels_upstream_within_1s(upstream, client):
    upstream.add("slow", [sse(chat_chunk({"role": "assistant", "content": ""})),
                          sse(chat_chunk({"content": "first"})), HANG])
    stream = client.chat.completions.create(model="up/slow", stream=True,
                                            messages=[{"role": "user", "content": "x"}])
    it = iter(stream)
    while True:
        c = next(it)
        if c.choices and c.choices[0].delta.content == "first":
            break
    rec = upstream.last("slow")
    assert not rec.done.is_set(), rec
    t0 = time.monotonic()
    stream.close()
    assert rec.wait_closed(1.0), "upstream connection still open 1 s after the client left"
    assert rec.client_closed and rec.ended - t0 < 1.0, rec


def test_keepalive_comments_during_silence(upstream, make_server):
    srv = make_server(server={"keepalive": 0.1})
    upstream.add("pause", [sse(chat_chunk({"role": "assistant", "content": ""})),
                           sse(chat_chunk({"content": "a"})), 0.5, sse(chat_chunk({"content": "b"})),
                           sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"])
    body = {"model": "up/pause", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", f"{srv.url}/v1/chat/completions", json=body, timeout=10) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache, no-transform"
        assert r.headers["x-accel-buffering"] == "no"
    assert b": keep-alive\n\n" in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b"event:" not in raw and b"\nid:" not in raw


def test_fallback_to_next_deployment_before_first_token(upstream, make_server):
    upstream.add("broken", Script(['{"error":{"message":"down"}}'], status=503,
                                  headers={"content-type": "application/json"}))
    upstream.add("healthy", chat_text_stream(["saved"]))
    srv = make_server(models={"smart": ["up/broken", "up/healthy"]})
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    out = c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content == "saved"
    assert out.model == "up/healthy"  # the model that answered; the alias is in x-sluiceway-alias
