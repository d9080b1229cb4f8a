"""Azure OpenAI through the ``azure`` provider: deployment URLs, api-version,
the api-key header, and Azure's stream quirks (a ``choices: []`` first chunk
with ``prompt_filter_results``, per-choice ``content_filter_results``)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from sluiceway.providers.openai_wire import ChunkAdapter
from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config
from .upstream import HANG, Script, sse

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
def srv(upstream):
    cfg = make_config(upstream, providers={
        "az": {"kind": "azure", "endpoint": upstream.url + "/", "api_key": KEY,
               "deployments": {"gpt-4o": "prod-gpt4o", "o3-mini": "reasoner"}},
        "az-entra": {"kind": "azure", "endpoint": upstream.url, "ad_token": "entra-token",
                     "api_version": "2025-01-01-preview", "deployments": ["team-dep"]}})
    s = ServerThread(create_app(cfg)).start()
    yield s
    s.stop()


@pytest.fixture
def client(srv):
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="anything", max_retries=0, timeout=20)
    yield c
    c.close()


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


@pytest.mark.parametrize(("status", "body", "exc"), [
    (400, {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                "management policy.", "type": None, "param": "prompt", "code": "content_filter",
                     "status": 400}}, openai.BadRequestError),
    (401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API "
                                               "endpoint."}}, openai.AuthenticationError),
    (403, {"error": {"code": "403", "message": "Public access is disabled."}}, openai.PermissionDeniedError),
    (404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does "
                                                             "not exist."}}, openai.NotFoundError),
    (429, {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded "
                                               "token rate limit."}}, openai.RateLimitError),
    (500, {"error": {"code": "InternalServerError", "message": "Backend returned unexpected response."}},
     openai.InternalServerError),
    (503, {"error": {"code": "ServiceUnavailable", "message": "The service is temporarily unable to process "
                                                              "your request."}}, openai.InternalServerError)])
def test_http_errors_map_to_sdk_errors(upstream, client, status, body, exc):
    dep = f"err-dep-{status}"
    upstream.add(dep, Script([json.dumps(body)], status=status,
                             headers={"content-type": "application/json", "retry-after": "12"}))
    with pytest.raises(exc) as info:
        list(client.chat.completions.create(model=f"az/{dep}", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))
    assert body["error"]["message"][:30] in info.value.message and KEY not in info.value.message
    assert info.value.status_code == {500: 502}.get(status, status)
    if status == 429:
        assert info.value.response.headers["retry-after"] == "12"


def test_server_error_mid_stream_raises_after_partial_text(upstream, client):
    upstream.add("midfail-dep", azure_stream(["partial"])[:3] + [sse({"error": {
        "message": "The server had an error processing your request.", "type": "server_error", "param": None,
        "code": None}})])
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model="az/midfail-dep", stream=True,
                                                messages=[{"role": "user", "content": "x"}]):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert got == ["partial"] and "server had an error" in str(info.value)


def test_closing_client_stream_closes_upstream_within_1s(upstream, client):
    upstream.add("slow-dep", azure_stream(["first"])[:3] + [HANG])
    stream = client.chat.completions.create(model="az/slow-dep", stream=True,
                                            messages=[{"role": "user", "content": "x"}])
    for c in stream:
        if c.choices and c.choices[0].delta.content == "first":
            break
    rec = upstream.last("slow-dep")
    assert not rec.done.is_set()
    t0 = time.monotonic()
    stream.close()
    assert rec.wait_closed(1.0), "upstream connection still open 1 s after the client left"
    assert rec.client_closed and rec.ended - t0 < 1.0


def test_models_are_the_configured_deployments(client):
    ids = {m.id for m in client.models.list()}
    assert {"az/gpt-4o", "az/o3-mini", "az-entra/team-dep"} <= ids
