"""One upstream failure reads the same on every path: the same status and code on /v1, in session chat's
answer, in its stored message and in the stream's error event; and no library internals in the message."""

from __future__ import annotations

import httpx

from .test_sessions_chat import read_sse
from .upstream import DROP, Script, chat_chunk, sse

ASK = [{"role": "user", "content": "x"}]


def test_an_upstream_500_is_502_upstream_error_everywhere(server, upstream):
    upstream.add("ec-500", Script([b'{"error": {"message": "boom"}}'], status=500,
                                  headers={"content-type": "application/json"}))
    v1 = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "up/ec-500", "messages": ASK}, timeout=10)
    chat = httpx.post(f"{server.url}/chat", json={"model": "up/ec-500", "message": "x"}, timeout=10)
    msgs = httpx.post(f"{server.url}/v1/messages", json={"model": "up/ec-500", "max_tokens": 5, "messages": ASK},
                      timeout=10)
    assert (v1.status_code, chat.status_code, msgs.status_code) == (502, 502, 502)
    assert v1.json()["error"]["code"] == chat.json()["error"]["code"] == "upstream_error"
    stored = chat.json()["message"]["error"]
    assert (stored["status"], stored["code"]) == (502, "upstream_error")


def test_a_truncated_upstream_says_so_without_library_internals(server, upstream):
    upstream.add("ec-drop", [sse(chat_chunk({"role": "assistant", "content": "half"})), DROP])
    with httpx.stream("POST", f"{server.url}/chat/stream", json={"model": "up/ec-drop", "message": "x"},
                      timeout=10) as resp:
        _, events = read_sse(resp)
    err = events[-1][1]
    assert err["type"] == "error" and err["code"] == "upstream_unavailable"
    v1 = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "up/ec-drop", "messages": ASK}, timeout=10)
    for message in (err["message"], v1.json()["error"]["message"]):
        assert "broke before the answer was complete" in message
        assert "<" not in message and "TransferEncoding" not in message and "payload" not in message
