"""Reasoning survives the crossing between vendors: Gemini thinking read through Anthropic Messages arrives
as a thinking block before the text, and an upstream that reports no reasoning split gets an estimate
(marked), not a false 0."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from .upstream import Script, sse

KEY = "g" * 12


def _gemini(parts_per_chunk: list[list[dict]], usage: dict) -> list[bytes]:
    chunks = [sse({"responseId": "r1", "modelVersion": "gemini-2.5-flash",
                   "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 12}}) for parts in parts_per_chunk]
    last = orjson.loads(chunks[-1][6:])
    last["candidates"][0]["finishReason"] = "STOP"
    last["usageMetadata"] = usage
    return [*chunks[:-1], sse(last)]


@pytest.fixture
def gemini_server(upstream, make_server):
    return make_server(providers={"g": {"kind": "gemini", "base_url": upstream.url, "api_key": KEY}})


@pytest.mark.parametrize("late_signature", [False, True])
def test_gemini_thinking_through_messages_is_a_thinking_block_before_the_text(upstream, gemini_server,
                                                                              late_signature):
    text_part = {"text": "It is 4."}
    if late_signature:  # Gemini may attach the thought signature to a later, non-thought part
        text_part["thoughtSignature"] = "c2lnbmF0dXJl"
    name = f"g-think-{late_signature}"
    upstream.add(name, Script(_gemini([[{"text": "Let me ", "thought": True}], [{"text": "think.", "thought": True}],
                                       [text_part]],
                                      {"promptTokenCount": 12, "candidatesTokenCount": 7, "thoughtsTokenCount": 3,
                                       "totalTokenCount": 22})))
    c = anthropic.Anthropic(base_url=gemini_server.url, api_key="x", max_retries=0)
    with c.messages.stream(model=f"g/{name}", max_tokens=50, messages=[{"role": "user", "content": "2+2?"}]) as s:
        kinds = [e.content_block.type for e in s if e.type == "content_block_start"]
        final = s.get_final_message()
    assert kinds == ["thinking", "text"]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think." and final.content[1].text == "It is 4."
    whole = c.messages.create(model=f"g/{name}", max_tokens=50, messages=[{"role": "user", "content": "2+2?"}])
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in whole.content] == [
        ("thinking", "Let me think."), ("text", "It is 4.")]


def test_thinking_without_a_reported_split_gets_an_estimate_not_zero(upstream, make_server):
    srv = make_server(providers={"a": {"kind": "anthropic", "base_url": upstream.url, "api_key": KEY}})
    frames = [
        sse({"type": "message_start", "message": {"id": "m1", "type": "message", "role": "assistant", "model": "c",
                                                  "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}},
            "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            "content_block_start"),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "thinking_delta", "thinking": "I should add two and two carefully here."}},
            "content_block_delta"),
        sse({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
            "content_block_delta"),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            "content_block_start"),
        sse({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "4"}},
            "content_block_delta"),
        sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}},
            "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    upstream.add("a-think", Script(frames))
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    out = c.chat.completions.create(model="a/a-think", messages=[{"role": "user", "content": "2+2?"}])
    details = out.usage.completion_tokens_details
    assert 0 < details.reasoning_tokens <= out.usage.completion_tokens == 20
