"""Gemini native adapter: byte-accurate Gemini SSE (CRLF framing) from the fake
upstream, read through sluiceway's /v1/chat/completions with the openai SDK,
plus pure tests of the chunk state machine and the request conversion."""

from __future__ import annotations

import json
import re

import openai
import pytest

from sluiceway.core import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
)
from sluiceway.providers.gemini import GeminiProvider, GeminiSettings
from sluiceway.providers.gemini_wire import SIG_SEP, ChunkAdapter, request_body, split_call_id

from .providers.gateway import sdk_client, user
from .providers.pure import feed_all
from .upstream import Script

KEY = "AIza-gemini-secret-do-not-leak"
SIG = "CiQB+jz1r/X3Nlq1Y2hhbmdlZA=="  # standard base64, as Gemini sends it
SIG_URLSAFE = "CiQB-jz1r_X3Nlq1Y2hhbmdlZA"  # the same bytes, as it rides in a call id


def frame(obj: dict) -> bytes:
    """One Gemini SSE event, exactly as Google sends it: CRLF line ends."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\r\n\r\n"


def chunk(parts: list[dict] | None = None, finish: str | None = None, usage: dict | None = None,
          rid: str = "resp-1") -> dict:
    c: dict = {"responseId": rid, "modelVersion": "gemini-2.5-flash"}
    if parts is not None or finish:
        cand: dict = {"content": {"role": "model", "parts": parts or []}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        c["candidates"] = [cand]
    if usage is not None:
        c["usageMetadata"] = usage
    return c


def usage(prompt: int, cand: int = 0, thoughts: int = 0, cached: int = 0) -> dict:
    u = {"promptTokenCount": prompt, "totalTokenCount": prompt + cand + thoughts}
    if cand:
        u["candidatesTokenCount"] = cand
    if thoughts:
        u["thoughtsTokenCount"] = thoughts
    if cached:
        u["cachedContentTokenCount"] = cached
    return u


@pytest.fixture(scope="module")
def client(upstream):
    with sdk_client(upstream, {"gem": {"kind": "gemini", "base_url": upstream.url, "api_key": KEY}}) as c:
        yield c


# ------------------------------------------------------------- over HTTP

def test_crlf_text_stream_split_mid_frame_and_mid_utf8(upstream, client):
    body = (frame(chunk([{"text": "Hola, "}], usage=usage(12)))
            + frame(chunk([{"text": "日本語 🙂"}], usage=usage(12, 4)))
            + frame(chunk([{"text": "!"}], "STOP", usage(12, 7, thoughts=3, cached=5))))
    cut1 = body.index(b"\r\n\r\n") + 1  # between CR and LF
    cut2 = body.index("本".encode()) + 1  # inside a 3-byte character
    upstream.add("gem-crlf", [body[:cut1], 0.02, body[cut1:cut2], 0.02, body[cut2:]],
                 headers={"content-type": "text/event-stream"})
    chunks = list(client.chat.completions.create(
        model="gem/gem-crlf", messages=[{"role": "system", "content": "Be brief."}, *user("hi")],
        stream=True, stream_options={"include_usage": True}, temperature=0.2, top_p=0.9, max_tokens=50,
        stop=["END"], seed=7))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hola, 日本語 🙂!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    u = chunks[-1].usage
    assert (u.prompt_tokens, u.completion_tokens) == (12, 10)  # output = candidates + thoughts
    assert u.completion_tokens_details.reasoning_tokens == 3
    assert u.prompt_tokens_details.cached_tokens == 5

    rec = upstream.last("gem-crlf")
    assert rec.path == "/v1beta/models/gem-crlf:streamGenerateContent?alt=sse"
    assert rec.headers["x-goog-api-key"] == KEY
    assert KEY not in rec.path and "key=" not in rec.path
    assert rec.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert rec.body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert rec.body["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 50,
                                            "stopSequences": ["END"], "seed": 7}


def test_thoughts_then_function_call_keeps_signature_and_echoes_it(upstream, client):
    upstream.add("gem-tool", [
        frame(chunk([{"text": "Checking the ", "thought": True}], usage=usage(29))),
        frame(chunk([{"text": "forecast", "thought": True}], usage=usage(29))),
        frame(chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": SIG}],
                    usage=usage(29))),
        frame(chunk([{"text": ""}], "STOP", usage(29, 15, thoughts=80))),
    ])
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}]
    full = client.chat.completions.create(model="gem/gem-tool", messages=user("weather?"), tools=tools,
                                          tool_choice="required")
    msg = full.choices[0].message
    assert full.choices[0].finish_reason == "tool_calls"  # Gemini says STOP; the functionCall decides
    assert msg.model_extra["reasoning_content"] == "Checking the forecast"
    [call] = msg.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    assert split_call_id(call.id)[1] == SIG_URLSAFE
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call.id)  # a valid tool id for Anthropic clients too
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (29, 95)
    sent = upstream.last("gem-tool").body
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather",
        "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    # next turn: the call comes back with its id, the result as a functionResponse
    upstream.add("gem-tool2", [frame(chunk([{"text": "Sunny in Oslo."}], "STOP", usage(40, 4)))])
    history = [*user("weather?"),
               {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
               {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    out = client.chat.completions.create(model="gem/gem-tool2", messages=history, tools=tools)
    assert out.choices[0].message.content == "Sunny in Oslo."
    contents = upstream.last("gem-tool2").body["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": SIG_URLSAFE}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}


def test_parallel_function_calls_stream_with_dense_indexes(upstream, client):
    upstream.add("gem-par", [frame(chunk([
        {"functionCall": {"name": "get_weather", "args": {"city": "A"}}, "thoughtSignature": SIG},
        {"functionCall": {"name": "get_weather", "args": {"city": "B"}}}], "STOP", usage(10, 8)))])
    chunks = list(client.chat.completions.create(model="gem/gem-par", messages=user(), stream=True))
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or ()) if c.choices else ():
            slot = calls.setdefault(tc.index, {"id": None, "args": ""})
            slot["id"] = tc.id or slot["id"]
            slot["args"] += tc.function.arguments or ""
    assert {i: json.loads(c["args"]) for i, c in calls.items()} == {0: {"city": "A"}, 1: {"city": "B"}}
    assert calls[0]["id"] != calls[1]["id"]
    assert SIG_SEP in calls[0]["id"] and SIG_SEP not in calls[1]["id"]  # only the first call is signed
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST"])
def test_safety_family_finishes_as_content_filter(upstream, client, reason):
    name = f"gem-safety-{reason.lower()}"
    upstream.add(name, [frame(chunk([{"text": "I can"}], usage=usage(5))),
                        frame(chunk([], reason, usage(5, 2)))])
    full = client.chat.completions.create(model=f"gem/{name}", messages=user())
    assert full.choices[0].finish_reason == "content_filter"
    assert full.choices[0].message.content == "I can"


def test_max_tokens_finishes_as_length(upstream, client):
    upstream.add("gem-len", [frame(chunk([{"text": "abc"}], "MAX_TOKENS", usage(3, 3)))])
    full = client.chat.completions.create(model="gem/gem-len", messages=user())
    assert full.choices[0].finish_reason == "length"


KEY_INVALID = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]


def _gerr(code: int, status: str, message: str, details: list | None = None) -> str:
    err: dict = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json.dumps({"error": err})


def test_invalid_key_400_is_an_authentication_error(upstream, client):
    # Gemini says "bad key" with a 400 whose ErrorInfo reason is API_KEY_INVALID
    message = "API key not valid. Please pass a valid API key."
    upstream.add("gem-badkey", Script([_gerr(400, "INVALID_ARGUMENT", message, KEY_INVALID)], status=400,
                                      headers={"content-type": "application/json"}))
    with pytest.raises(openai.AuthenticationError) as info:
        list(client.chat.completions.create(model="gem/gem-badkey", messages=user(), stream=True))
    assert message in info.value.message and KEY not in info.value.message


def test_rate_limit_retry_delay_comes_from_retry_info(upstream, client):
    details = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
               {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]
    upstream.add("gem-quota", Script([_gerr(429, "RESOURCE_EXHAUSTED", "Quota exceeded", details)], status=429,
                                     headers={"content-type": "application/json"}))
    with pytest.raises(openai.RateLimitError) as info:
        list(client.chat.completions.create(model="gem/gem-quota", messages=user(), stream=True))
    assert info.value.response.headers["retry-after"] == "37"


async def test_list_models_uses_gemini_shape_and_header_key(upstream):
    upstream.routes["/v1beta/models"] = Script([json.dumps({"models": [
        {"name": "models/gemini-2.5-flash", "inputTokenLimit": 1048576,
         "supportedGenerationMethods": ["generateContent", "countTokens"]},
        {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]}]})],
        headers={"content-type": "application/json"})
    p = GeminiProvider("gem", GeminiSettings(base_url=upstream.url, api_key=KEY))
    try:
        models = await p.list_models()
    finally:
        await p.aclose()
    assert [(m.id, m.context_length) for m in models] == [("gemini-2.5-flash", 1048576)]
    rec = [r for r in upstream.records if r.path.startswith("/v1beta/models?")][-1]
    assert rec.headers["x-goog-api-key"] == KEY and KEY not in rec.path


# ------------------------------------------------------ pure state machine

def run(chunks: list[dict]) -> list:
    return feed_all(ChunkAdapter(None, "m"), chunks)


def test_fixture_usage_last_one_wins_and_thoughts_count_as_output():
    out = run([chunk([{"text": "a"}], usage=usage(10, 1)), chunk([{"text": "b"}], "STOP", usage(10, 2, thoughts=5))])
    fin = out[-1]
    assert (fin.type, fin.reason, fin.usage.input, fin.usage.output, fin.usage.reasoning) == (
        "finish", "stop", 10, 7, 5)
    assert not fin.usage.estimated


def test_fixture_signature_on_thought_part_closes_reasoning_with_it():
    out = run([chunk([{"text": "hmm", "thought": True, "thoughtSignature": SIG}]), chunk([{"text": "ok"}], "STOP")])
    assert [e.type for e in out] == ["start", "reasoning-start", "reasoning-delta", "reasoning-end",
                                     "text-start", "text-delta", "text-end", "finish"]
    assert out[3].signature == SIG


def test_fixture_signature_on_empty_text_part_becomes_signed_reasoning_block():
    out = run([chunk([{"text": "answer"}]), chunk([{"text": "", "thoughtSignature": SIG}], "STOP")])
    ends = [e for e in out if e.type == "reasoning-end"]
    assert [e.signature for e in ends] == [SIG]
    assert "".join(e.delta for e in out if e.type == "text-delta") == "answer"


def test_fixture_prompt_blocked_without_candidates_is_content_filter():
    out = run([{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage(4)}])
    assert out[-1].reason == "content_filter" and out[-1].raw_reason == "SAFETY"


def test_fixture_malformed_function_call_finishes_as_error_and_unknown_as_other():
    assert run([chunk([], "MALFORMED_FUNCTION_CALL")])[-1].reason == "error"
    assert run([chunk([], "LANGUAGE")])[-1].reason == "other"


def test_fixture_function_call_with_upstream_id_keeps_it():
    out = run([chunk([{"functionCall": {"id": "fc-9", "name": "f", "args": {}}}], "STOP")])
    call = next(e for e in out if e.type == "tool-call")
    assert (call.call_id, call.arguments) == ("fc-9", "{}")
    assert out[-1].reason == "tool_calls"


def test_request_conversion_images_reasoning_json_and_merged_tool_results():
    req = ChatRequest(model="m", messages=[
        Message("user", [TextPart("what is this"), ImagePart("data:image/png;base64,iVBORw0KGgo=")]),
        Message("assistant", [ReasoningPart("thinking…", signature="s1"), TextPart("calling")],
                tool_calls=[ToolCallPart(f"call_1{SIG_SEP}{SIG}", "f", '{"a":1}'),
                            ToolCallPart("fc-2", "g", "{}")]),
        Message("tool", [TextPart("plain result")], tool_call_id=f"call_1{SIG_SEP}{SIG}"),
        Message("tool", [TextPart("boom")], tool_call_id="fc-2", is_error=True),
    ], tools=[Tool("f")], tool_choice={"name": "f"}, response_format={"type": "json_object"})
    body = request_body(req)
    assert body["contents"][0]["parts"] == [{"text": "what is this"},
                                            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]
    assert body["contents"][1] == {"role": "model", "parts": [
        {"text": "thinking…", "thought": True, "thoughtSignature": "s1"}, {"text": "calling"},
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": SIG},
        {"functionCall": {"name": "g", "args": {}, "id": "fc-2"}}]}
    assert body["contents"][2] == {"role": "user", "parts": [  # parallel results: one user turn
        {"functionResponse": {"name": "f", "response": {"result": "plain result"}}},
        {"functionResponse": {"name": "g", "response": {"error": "boom"}, "id": "fc-2"}}]}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
