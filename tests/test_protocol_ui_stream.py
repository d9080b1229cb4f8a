"""/api/chat (AI SDK UI message stream v1) read by the `ai` npm package's own
parser, schema and message assembler under Node, plus request conversion."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import IN_CI
from .test_protocol_matrix import REASONING, TEXT, full_stream
from .upstream import chat_chunk, chat_text_stream, sse

JS = Path(__file__).parent / "js"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to run the ai package's parser")
    if not (JS / "node_modules" / "ai").is_dir():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            _unavailable(f"npm ci failed in tests/js: {done.stderr[-2000:]}")
    return node


def run_js(node: str, spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([node, "ui_stream.mjs", json.dumps(spec)], cwd=JS, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ai_package_validates_every_chunk_and_assembles_the_message(upstream, server, node):
    upstream.add("ui-full", full_stream())
    out = run_js(node, {"url": server.url, "model": "up/ui-full", "body": {"tools": TOOLS}})
    raw = out["raw"]
    assert raw["status"] == 200 and raw["header"] == "v1"
    assert raw["invalid"] == []
    types = [c["type"] for c in raw["valid"]]
    assert types[:2] == ["start", "start-step"] and types[-2:] == ["finish-step", "finish"]
    assert raw["valid"][-1]["finishReason"] == "tool-calls"
    assert raw["valid"][-1]["messageMetadata"]["usage"]["inputTokens"] == 58
    ui = out["ui"]
    assert ui["errors"] == [] and not ui.get("thrown")
    msg = ui["message"]
    assert msg["role"] == "assistant" and msg["id"].startswith("msg_")
    assert msg["id"] != raw["valid"][0]["messageId"]  # a fresh id per answer
    parts = msg["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text", "tool-get_weather"]
    assert parts[1]["text"] == "".join(REASONING) and parts[1]["state"] == "done"
    assert parts[2]["text"] == "".join(TEXT) and parts[2]["state"] == "done"
    assert parts[3]["toolCallId"] == "call_A" and parts[3]["state"] == "input-available"
    assert parts[3]["input"] == {"city": "Oslo"}
    assert msg["metadata"]["usage"]["outputTokens"] == 40
    sent = upstream.last("ui-full").body
    assert sent["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_ai_package_sees_midstream_error_as_error_chunk(upstream, server, node):
    upstream.add("ui-mid", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "partial"})),
                            sse({"error": {"message": "upstream broke", "type": "server_error"}})])
    out = run_js(node, {"url": server.url, "model": "up/ui-mid"})
    assert out["raw"]["invalid"] == []
    chunks = out["raw"]["valid"]
    assert {"type": "error", "errorText": "upstream broke"} in chunks
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}
    assert any("upstream broke" in e for e in out["ui"]["errors"])
    assert out["ui"]["message"]["parts"][1]["text"] == "partial"


def test_ui_messages_with_steps_tools_and_files_become_canonical_messages(upstream, server):
    upstream.add("ui-conv", chat_text_stream(["ok"]))
    messages = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "be nice"}]},
        {"id": "u1", "role": "user", "parts": [
            {"type": "text", "text": "what is this?"},
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"}]},
        {"id": "a1", "role": "assistant", "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "look it up", "state": "done"},
            {"type": "text", "text": "Checking.", "state": "done"},
            {"type": "tool-get_weather", "toolCallId": "call_1", "state": "output-available",
             "input": {"city": "Oslo"}, "output": {"tempC": 4}},
            {"type": "dynamic-tool", "toolName": "lookup", "toolCallId": "call_2", "state": "output-error",
             "input": {}, "errorText": "no such thing"},
            {"type": "step-start"},
            {"type": "text", "text": "It is 4 °C.", "state": "done"},
            {"type": "source-url", "sourceId": "s1", "url": "https://example.com"}]},
        {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "thanks"}]},
    ]
    body = {"id": "chat-9", "messages": messages, "trigger": "submit-message", "model": "up/ui-conv"}
    r = httpx.post(f"{server.url}/api/chat", json=body, timeout=20)
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    sent = upstream.last("ui-conv").body["messages"]
    assert sent[0] == {"role": "system", "content": "be nice"}
    assert sent[1]["content"] == [{"type": "text", "text": "what is this?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert sent[2]["role"] == "assistant" and sent[2]["content"] == "Checking."
    assert [c["id"] for c in sent[2]["tool_calls"]] == ["call_1", "call_2"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"tempC":4}'}
    assert sent[4] == {"role": "tool", "tool_call_id": "call_2", "content": "no such thing"}
    assert sent[5] == {"role": "assistant", "content": "It is 4 °C."}
    assert sent[6] == {"role": "user", "content": "thanks"}


def test_default_model_when_body_has_none(upstream, make_server):
    upstream.add("ui-default", chat_text_stream(["hi from default"]))
    srv = make_server(default_model="up/ui-default")
    body = {"id": "c", "trigger": "submit-message",
            "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
    r = httpx.post(f"{srv.url}/api/chat", json=body, timeout=20)
    assert r.status_code == 200
    assert '"delta":"hi from default"' in r.text


@pytest.mark.parametrize(("body", "status"), [
    ({"messages": "nope"}, 400),
    ({"messages": [{"id": "u", "role": "tool", "parts": []}]}, 400),
    ({"messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "x"}]}], "trigger": "what"}, 400),
    ({"model": "no-such-model", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text",
                                                                                 "text": "x"}]}]}, 404),
])
def test_errors_before_streaming_are_json_with_status(server, body, status):
    r = httpx.post(f"{server.url}/api/chat", json=body, timeout=20)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["message"]
