"""POST /v1/stream?format=text|json: plain SSE for simple clients."""

from __future__ import annotations

import json

import httpx
import pytest

from .upstream import chat_chunk, chat_text_stream, sse, usage_wire

MSGS = [{"role": "user", "content": "x"}]


def parse_sse(raw: str) -> list[tuple[str, str]]:
    """(event name, data) per dispatched event, following WHATWG §9.2 (LF line ends)."""
    out, data, event = [], [], ""
    for line in raw.split("\n"):
        if line == "":
            if data:
                out.append((event or "message", "\n".join(data)))
            data, event = [], ""
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    return out


def test_text_format_keeps_newlines_and_ends_with_finish_event(upstream, server):
    pieces = ["line one\nline two", "\n\n", "para two ", "日本語 🙂", "\n"]
    upstream.add("p-text", chat_text_stream(pieces, usage=usage_wire(4, 6)))
    r = httpx.post(f"{server.url}/v1/stream?format=text", json={"model": "up/p-text", "messages": MSGS})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert "".join(d for e, d in events if e == "message") == "".join(pieces)
    name, data = events[-1]
    assert name == "finish"
    assert json.loads(data)["reason"] == "stop" and json.loads(data)["usage"]["output"] == 6
    assert "\r" not in r.text


def test_json_format_sends_every_canonical_event(upstream, server):
    upstream.add("p-json", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"reasoning_content": "hm"})), sse(chat_chunk({"content": "ok"})),
                            sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"])
    r = httpx.post(f"{server.url}/v1/stream?format=json", json={"model": "up/p-json", "messages": MSGS})
    events = [json.loads(d) for _, d in parse_sse(r.text)]
    assert [e["type"] for e in events] == ["start", "reasoning-start", "reasoning-delta", "reasoning-end",
                                          "text-start", "text-delta", "text-end", "finish"]
    assert events[-1]["usage"]["estimated"] is True
    assert events[5] == {"type": "text-delta", "block_id": events[4]["block_id"], "delta": "ok"}


def test_midstream_error_is_a_named_error_event(upstream, server):
    upstream.add("p-err", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "a"})),
                           sse({"error": {"message": "went wrong", "type": "server_error"}})])
    r = httpx.post(f"{server.url}/v1/stream?format=text", json={"model": "up/p-err", "messages": MSGS})
    events = parse_sse(r.text)
    assert events[0] == ("message", "a")
    assert events[-1][0] == "error" and json.loads(events[-1][1])["message"] == "went wrong"


@pytest.mark.parametrize(("url", "body", "status", "param"), [
    ("/v1/stream?format=xml", {"model": "up/x", "messages": MSGS}, 400, "format"),
    ("/v1/stream?format=text", {"model": "up/x", "messages": []}, 400, "messages"),
    ("/v1/stream", {"model": "nope", "messages": MSGS}, 404, "model"),
])
def test_errors_before_streaming_use_the_openai_error_shape(server, url, body, status, param):
    r = httpx.post(f"{server.url}{url}", json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"]
