"""Azure OpenAI through the ``azure`` provider: deployment URLs, api-version,
the api-key header, and Azure's stream quirks (a ``choices: []`` first chunk
with ``prompt_filter_results``, per-choice ``content_filter_results``)."""

from __future__ import annotations

import json

import pytest

from sluiceway.providers.openai_wire import ChunkAdapter

from .providers.gateway import sdk_client
from .upstream import sse

KEY = "azure-key-secret-do-not-leak"
FILTERS = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
           "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}

# Azure's first chunk: no choices, empty id/model, the prompt's filter verdicts
PROMPT_FILTER_CHUNK = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                       "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}]}


def azure_chunk(delta: dict, finish: str | None = None, *, filters: dict | None = None) -> dict:
    return {"choices": [{"content_filter_results": FILTERS if filters is None else filters, "delta": delta,
                         "finish_reason": finish, "index": 0, "logprobs": None}],
            "created": 1733000000, "id": "chatcmpl-AZ1", "model": "gpt-4o-2024-08-06",
            "object": "chat.completion.chunk", "system_fingerprint": "fp_04751d0b65"}


def azure_stream(pieces: list[str], *, finish: str = "stop", usage: dict | None = None) -> list:
    steps = [sse(PROMPT_FILTER_CHUNK),
             sse(azure_chunk({"content": "", "refusal": None, "role": "assistant"}, filters={}))]
    steps += [sse(azure_chunk({"content": p})) for p in pieces]
    steps.append(sse(azure_chunk({}, finish, filters={})))
    if usage is not None:
        steps.append(sse({"choices": [], "created": 1733000000, "id": "chatcmpl-AZ1", "model": "gpt-4o-2024-08-06",
                          "object": "chat.completion.chunk", "usage": usage}))
    steps.append(b"data: [DONE]\n\n")
    return steps


def test_chunk_adapter_skips_the_prompt_filter_chunk():
    a = ChunkAdapter()
    out: list = []
    a.feed(PROMPT_FILTER_CHUNK, out)
    assert out == []  # nothing to say yet: the stream starts with the first chunk that has an id
    a.feed(azure_chunk({"content": "", "role": "assistant"}), out)
    a.feed(azure_chunk({"content": "Hi"}), out)
    a.feed(azure_chunk({}, "stop", filters={}), out)
    a.end(out, saw_done=True)
    assert [e.type for e in out] == ["start", "text-start", "text-delta", "text-end", "finish"]
    assert out[-1].reason == "stop"


@pytest.fixture(scope="module")
def client(upstream):
    with sdk_client(upstream, {
        "az": {"kind": "azure", "endpoint": upstream.url + "/", "api_key": KEY,
               "deployments": {"gpt-4o": "prod-gpt4o", "o3-mini": "reasoner"}},
        "az-entra": {"kind": "azure", "endpoint": upstream.url, "ad_token": "entra-token",
                     "api_version": "2025-01-01-preview", "deployments": ["team-dep"]}}) as c:
        yield c


def test_stream_through_deployment_url_with_api_key(upstream, client):
    pieces = ["Hel", "lo ", "from ", "Azure 🙂"]
    upstream.add("prod-gpt4o", azure_stream(pieces, usage={"prompt_tokens": 11, "completion_tokens": 6,
                                                           "total_tokens": 17}))
    chunks = list(client.chat.completions.create(model="az/gpt-4o", stream=True, max_tokens=50,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(pieces)
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 6)
    rec = upstream.last("prod-gpt4o")
    assert rec.path == "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    assert rec.headers["api-key"] == KEY and "Authorization" not in rec.headers
    assert rec.body["max_completion_tokens"] == 50 and "max_tokens" not in rec.body
    assert rec.body["stream_options"] == {"include_usage": True}


def test_entra_token_and_unmapped_model_is_its_own_deployment(upstream, client):
    upstream.add("team-dep", azure_stream(["ok"]))
    full = client.chat.completions.create(model="az-entra/team-dep", messages=[{"role": "user", "content": "x"}])
    assert full.choices[0].message.content == "ok"
    rec = upstream.last("team-dep")
    assert rec.path == "/openai/deployments/team-dep/chat/completions?api-version=2025-01-01-preview"
    assert rec.headers["Authorization"] == "Bearer entra-token" and "api-key" not in rec.headers


def test_content_filter_stop_and_tool_calls(upstream, client):
    upstream.add("filtered-dep", azure_stream(["I can"], finish="content_filter"))
    full = client.chat.completions.create(model="az/filtered-dep", messages=[{"role": "user", "content": "x"}])
    assert full.choices[0].finish_reason == "content_filter" and full.choices[0].message.content == "I can"

    upstream.add("tool-dep", [sse(PROMPT_FILTER_CHUNK),
                              sse(azure_chunk({"role": "assistant", "content": None, "tool_calls": [
                                  {"index": 0, "id": "call_az", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}, filters={})),
                              sse(azure_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]},
                                              filters={})),
                              sse(azure_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"Oslo"}'}}]},
                                              filters={})),
                              sse(azure_chunk({}, "tool_calls", filters={})), b"data: [DONE]\n\n"])
    full = client.chat.completions.create(model="az/tool-dep", messages=[{"role": "user", "content": "w"}],
                                          tools=[{"type": "function", "function": {"name": "get_weather"}}])
    call = full.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_az", "get_weather", {"city": "Oslo"})
    assert full.choices[0].finish_reason == "tool_calls"


def test_models_are_the_configured_deployments(client):
    ids = {m.id for m in client.models.list()}
    assert {"az/gpt-4o", "az/o3-mini", "az-entra/team-dep"} <= ids
