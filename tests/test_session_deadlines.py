"""Session chat honours the per-request deadline headers, as /v1 does."""

from __future__ import annotations

import httpx

from .test_sessions_chat import messages, read_sse, wait_for
from .upstream import HANG, chat_chunk, sse


def test_idle_timeout_header_ends_a_silent_session_answer(server, upstream):
    upstream.add("sd-hang", [sse(chat_chunk({"role": "assistant", "content": "half "})), HANG])
    with httpx.stream("POST", f"{server.url}/chat/stream", json={"message": "x", "model": "up/sd-hang"},
                      headers={"x-sluiceway-idle-timeout": "1"}, timeout=30) as resp:
        run, events = read_sse(resp)
    assert (events[-1][1]["type"], events[-1][1]["code"]) == ("error", "timeout"), events[-1]
    assert upstream.last("sd-hang").wait_closed(5)  # the silent upstream was let go
    stored = wait_for(lambda: [m for m in messages(server, run["session_id"]) if m["role"] == "assistant"
                               and m["status"] != "streaming"])
    assert stored[0]["text"] == "half "


def test_a_bad_deadline_header_is_a_400_before_anything_is_written(server):
    r = httpx.post(f"{server.url}/chat", json={"message": "x", "model": "up/whatever"},
                   headers={"x-sluiceway-total-timeout": "soon"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-sluiceway-total-timeout"
