"""One scripted upstream stream read through all five client protocols, each
with its own real client: the same text, reasoning, tool calls and usage come
out. And closing the stream in any protocol cancels the upstream within 1 s.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from .upstream import HANG, chat_chunk, sse, usage_wire

PROTOCOLS = ["chat", "responses", "messages", "ui", "plain"]
REASONING = ["Need ", "weather ", "for Oslo."]
TEXT = ["Hel", "lo, ", "世界 ", "🙂"]
ARGS = ['{"city":', ' "Oslo"}']


def full_stream(*, call_id: str = "call_A", name: str = "get_weather", args: list[str] | None = None,
                usage: dict | None = None) -> list[Any]:
    """Chat Completions wire: reasoning, text, one streamed tool call, usage."""
    steps: list[Any] = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    steps += [sse(chat_chunk({"reasoning_content": r})) for r in REASONING]
    steps += [sse(chat_chunk({"content": t})) for t in TEXT]
    steps.append(sse(chat_chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]})))
    steps += [sse(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})) for a in args or ARGS]
    steps.append(sse(chat_chunk({}, "tool_calls")))
    steps.append(sse(chat_chunk(usage=usage or usage_wire(58, 40, cached=8, reasoning=22), choices=False)))
    steps.append(b"data: [DONE]\n\n")
    return steps


TOOLS_CHAT = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
USER = "Weather in Oslo?"


def sse_data(raw: bytes) -> list[str]:
    """The data of each event (no event: lines in these protocols)."""
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = [ln[6:] for ln in frame.split("\n") if ln.startswith("data: ")]
        if lines:
            out.append("\n".join(lines))
    return out


# ------------------------------------------------------------------ readers

def read_chat(url: str, model: str) -> dict[str, Any]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=20) as c:
        text, reasoning, calls, usage = "", "", {}, None
        for ch in c.chat.completions.create(model=model, messages=[{"role": "user", "content": USER}],
                                            tools=TOOLS_CHAT, stream=True, stream_options={"include_usage": True}):
            if ch.usage:
                usage = (ch.usage.prompt_tokens, ch.usage.completion_tokens)
            for choice in ch.choices:
                d = choice.delta
                text += d.content or ""
                reasoning += (d.model_extra or {}).get("reasoning_content") or ""
                for tc in d.tool_calls or ():
                    slot = calls.setdefault(tc.index, {"id": tc.id, "name": "", "args": ""})
                    slot["name"] += (tc.function.name or "") if tc.function else ""
                    slot["args"] += (tc.function.arguments or "") if tc.function else ""
        tools = [(s["id"], s["name"], json.loads(s["args"])) for _, s in sorted(calls.items())]
        return {"text": text, "reasoning": reasoning, "tools": tools, "usage": usage}


def read_responses(url: str, model: str) -> dict[str, Any]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=20) as c:
        final = None
        for ev in c.responses.create(model=model, input=USER, stream=True, tools=[
                {"type": "function", "name": "get_weather", "parameters": TOOLS_CHAT[0]["function"]["parameters"]}]):
            if ev.type == "response.completed":
                final = ev.response
        assert final is not None
        reasoning = "".join(s.text for o in final.output if o.type == "reasoning" for s in o.summary)
        tools = [(o.call_id, o.name, json.loads(o.arguments)) for o in final.output if o.type == "function_call"]
        return {"text": final.output_text, "reasoning": reasoning, "tools": tools,
                "usage": (final.usage.input_tokens, final.usage.output_tokens)}


def read_messages(url: str, model: str) -> dict[str, Any]:
    with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=20) as c, c.messages.stream(
            model=model, max_tokens=256, messages=[{"role": "user", "content": USER}],
            tools=[{"name": "get_weather", "input_schema": TOOLS_CHAT[0]["function"]["parameters"]}]) as s:
        msg = s.get_final_message()
    u = msg.usage
    return {"text": "".join(b.text for b in msg.content if b.type == "text"),
            "reasoning": "".join(b.thinking for b in msg.content if b.type == "thinking"),
            "tools": [(b.id, b.name, b.input) for b in msg.content if b.type == "tool_use"],
            "usage": (u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
                      u.output_tokens)}


def read_ui(url: str, model: str) -> dict[str, Any]:
    body = {"id": "chat-1", "trigger": "submit-message", "model": model, "tools": TOOLS_CHAT,
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": USER}]}]}
    r = httpx.post(f"{url}/api/chat", json=body, timeout=20)
    assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
    data = sse_data(r.content)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    usage = chunks[-1]["messageMetadata"]["usage"]
    return {"text": "".join(c["delta"] for c in chunks if c["type"] == "text-delta"),
            "reasoning": "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta"),
            "tools": [(c["toolCallId"], c["toolName"], c["input"]) for c in chunks
                      if c["type"] == "tool-input-available"],
            "usage": (usage["inputTokens"], usage["outputTokens"])}


def read_plain(url: str, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": USER}], "tools": TOOLS_CHAT}
    r = httpx.post(f"{url}/v1/stream?format=json", json=body, timeout=20)
    events = [json.loads(d) for d in sse_data(r.content)]
    finish = events[-1]
    assert finish["type"] == "finish"
    return {"text": "".join(e["delta"] for e in events if e["type"] == "text-delta"),
            "reasoning": "".join(e["delta"] for e in events if e["type"] == "reasoning-delta"),
            "tools": [(e["call_id"], e["name"], json.loads(e["arguments"])) for e in events
                      if e["type"] == "tool-call"],
            "usage": (finish["usage"]["input"], finish["usage"]["output"])}


READERS = {"chat": read_chat, "responses": read_responses, "messages": read_messages, "ui": read_ui,
           "plain": read_plain}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_same_stream_reads_the_same_in_every_protocol(upstream, server, proto):
    name = upstream.add(f"xp-{proto}", full_stream())
    got = READERS[proto](server.url, f"up/{name}")
    assert got["text"] == "".join(TEXT)
    # every protocol shows the reasoning (Messages as thinking with an empty signature: it was unsigned)
    assert got["reasoning"] == "".join(REASONING)
    assert got["tools"] == [("call_A", "get_weather", {"city": "Oslo"})]
    assert got["usage"] == (58, 40)
    sent = upstream.last(name).body
    assert sent["messages"][-1] == {"role": "user", "content": USER}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


# ------------------------------------------------------------- cancellation

def open_stream(url: str, proto: str, model: str) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    msgs = [{"role": "user", "content": "x"}]
    if proto == "chat":
        return "/v1/chat/completions", "", {"model": model, "messages": msgs, "stream": True}, {}
    if proto == "responses":
        return "/v1/responses", "", {"model": model, "input": "x", "stream": True}, {}
    if proto == "messages":
        return "/v1/messages", "", {"model": model, "max_tokens": 10, "messages": msgs, "stream": True}, \
            {"anthropic-version": "2023-06-01"}
    if proto == "ui":
        return "/api/chat", "", {"model": model, "id": "c", "messages": [
            {"id": "u", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}, {}
    return "/v1/stream", "format=text", {"model": model, "messages": msgs}, {}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_closing_the_stream_cancels_upstream(upstream, server, make_server, proto):
    if proto == "ui":  # /api/chat answers are resumable runs: leaving cancels them under runs.disconnect=cancel
        server = make_server(runs={"disconnect": "cancel"})
    name = upstream.add(f"xp-hang-{proto}", [sse(chat_chunk({"role": "assistant", "content": ""})),
                                             sse(chat_chunk({"content": "first"})), HANG])
    path, query, body, headers = open_stream(server.url, proto, f"up/{name}")
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", f"{server.url}{path}{'?' + query if query else ''}", json=body, headers=headers) as r:
        assert r.status_code == 200
        seen = b""
        for chunk in r.iter_raw():
            seen += chunk
            if b"first" in seen:
                break
        rec = upstream.last(name)
        assert not rec.done.is_set(), "upstream ended before the client left"
    # leaving the with-block closed the response and the connection; the upstream
    # hangs forever, so only the client leaving can close it (how fast: bench/)
    assert rec.wait_closed(10), f"{proto}: upstream still open after the client left"
    assert rec.client_closed
