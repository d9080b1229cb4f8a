"""Seed 001's chat page works against sluiceway unchanged: its streaming
reader (fetch + ReadableStream, every ``data:`` line JSON-parsed and
``data.content`` appended) gets exactly ``data: {"content": "..."}`` frames
from ``/chat/stream?format=content``, and its non-streaming path finds
``content`` and ``raw_response`` in ``/chat``. The page's own snippet runs in
headless Chromium."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from .conftest import IN_CI
from .upstream import DROP, chat_chunk, chat_text_stream, sse

ANSWER = ["我来", "帮你", "分析…", ' "quoted"\nnext line']


@pytest.fixture
def srv(upstream, make_server):
    upstream.add("seed1", chat_text_stream(ANSWER))
    upstream.add("seed1-cut", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "半"})),
                               DROP])
    return make_server()


def frames(raw: str) -> list[dict]:
    out = []
    for line in raw.split("\n"):
        if not line or line.startswith(":"):  # blank separators, keep-alive comments
            continue
        assert line.startswith("data: "), f"a line the seed page would choke on: {line!r}"
        out.append(json.loads(line[6:]))
    return out


def test_content_format_sends_only_content_frames(srv):
    body = {"message": "hi", "model": "up/seed1"}
    with httpx.stream("POST", f"{srv.url}/chat/stream?format=content", json=body, timeout=20) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        session = r.headers["x-session-id"]
        raw = "".join(r.iter_text())
    got = frames(raw)
    assert got and all(list(f) == ["content"] for f in got)
    assert "".join(f["content"] for f in got) == "".join(ANSWER)
    # still a stored chat like any other
    msgs = httpx.get(f"{srv.url}/sessions/{session}/messages").json()
    assert [m["text"] for m in msgs["data"] if m["role"] == "assistant"] == ["".join(ANSWER)]


def test_content_format_error_appends_nothing(srv):
    r = httpx.post(f"{srv.url}/chat/stream?format=content", json={"message": "hi", "model": "up/seed1-cut"}, timeout=20)
    got = frames(r.text)
    assert got[0] == {"content": "半"} and got[-1]["content"] == "" and got[-1]["error"]


def test_unknown_format_is_a_400_before_anything_is_stored(srv):
    before = httpx.get(f"{srv.url}/sessions").json()["data"]
    r = httpx.post(f"{srv.url}/chat/stream?format=tokens", json={"message": "hi", "model": "up/seed1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "format"
    assert httpx.get(f"{srv.url}/sessions").json()["data"] == before


def test_chat_has_content_and_raw_response(srv):
    r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/seed1"}, timeout=20)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["content"] == "".join(ANSWER) == data["message"]["text"]
    raw = data["raw_response"]  # the upstream's reply as received
    assert raw["status"] == 200 and "chat.completion.chunk" in raw["body"] and raw["body"].endswith("[DONE]\n\n")
    assert json.dumps("我来")[1:-1] in raw["body"]  # the upstream's own (ASCII-escaped) JSON, untouched


SEED_PAGE = """async (url) => {
    // seed 001's App.tsx handleSendStream, as written there (React state replaced by a list)
    const shown = [];
    const response = await fetch(url, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({message: '你好', model: 'up/seed1'})
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let assistantMessage = {id: Date.now(), role: 'assistant', content: ''};
    while (true) {
        const {done, value} = await reader.read();
        if (done) break;
        const chunk = decoder.decode(value);
        const lines = chunk.split('\\n');
        for (const line of lines) {
            if (line.startsWith('data: ')) {
                const data = JSON.parse(line.slice(6));
                assistantMessage.content += data.content;
                shown.push(assistantMessage.content);
            }
        }
    }
    return {final: assistantMessage.content, shown};
}"""


@pytest.mark.timeout(60)
def test_seed_page_snippet_in_chromium(srv):
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        if IN_CI:
            raise RuntimeError(f"{chromium} is required in CI")
        pytest.skip("chromium is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"{srv.url}/healthz")  # same origin as the API, as the seed's page is with its backend
            result = page.evaluate(SEED_PAGE, f"{srv.url}/chat/stream?format=content")
            plain = page.evaluate(SEED_PAGE, f"{srv.url}/chat/stream")  # the default format, for contrast
        finally:
            browser.close()
    assert result["final"] == "".join(ANSWER) and "undefined" not in result["final"]
    assert result["shown"][-1] == result["final"] and len(result["shown"]) >= 2  # it grew as it streamed
    assert "undefined" in plain["final"]  # why the format exists: canonical events have no .content
