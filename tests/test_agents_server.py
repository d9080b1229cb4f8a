"""Agents through the HTTP server on real sockets: the seed's
``/api/web/chat/stream`` event table (MiniOpenCode), an MCP server over
streamable HTTP started by the test, ``/v1/models``, and a client that
leaves mid-tool."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from .agent_helpers import PY, TOOLS_SERVER, answer, chain, tool_step
from .conftest import ServerThread
from .mcp_servers import py_tools
from .upstream import FakeUpstream, chat_chunk, free_port, sse

KEY = "sk-agents-test"


@pytest.fixture(scope="module")
def mcp_http() -> Iterator[str]:
    """The test MCP server over streamable HTTP, in its own process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, TOOLS_SERVER, "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise RuntimeError("the MCP test server exited") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def agent_server(make_server: Any, agents: dict[str, Any], **kw: Any) -> ServerThread:
    return make_server(agents=agents, server={"api_keys": [KEY], "keepalive": 15}, **kw)


def seed_stream(srv: ServerThread, body: dict[str, Any], key: str = KEY) -> tuple[int, list[Any]]:
    """POST the seed's request and parse its frames (``[DONE]`` kept as the string)."""
    frames: list[Any] = []
    with httpx.stream("POST", f"{srv.url}/api/web/chat/stream", headers={"X-API-Key": key}, json=body,
                      timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [r.json()]
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                frames.append(data if data == "[DONE]" else orjson.loads(data))
    return 200, frames


def test_seed_event_table_is_exact(upstream: FakeUpstream, make_server: Any, mcp_http: str) -> None:
    step1 = [sse(chat_chunk({"role": "assistant", "content": None})),
             sse(chat_chunk({"reasoning_content": "用户想知道深圳的天气"})),
             sse(chat_chunk({"reasoning_content": ",需要先获取城市信息"})),
             sse(chat_chunk({"content": "我来帮你查询"})), sse(chat_chunk({"content": "深圳的天气"})),
             sse(chat_chunk({"content": "。"})),
             *tool_step([("call_abc123", "get_current_city", {})], usage=(100, 50))[1:]]
    step2 = tool_step([("call_def456", "get_weather", '{"city": "深圳"}')], usage=(120, 40))
    upstream.add("seed-agent", chain(step1, step2, answer("深圳今天天气晴,气温25°C", usage=(150, 60))))
    srv = agent_server(make_server, {"default": {"model": "up/seed-agent", "system": "You are MiniOpenCode.",
                                                 "tools": [f"{PY}:get_current_city", "web.get_weather"]}},
                       mcp_servers={"web": {"url": mcp_http}})
    status, frames = seed_stream(srv, {"messages": [{"role": "user", "content": "深圳天气怎么样"}], "useTools": True})
    assert status == 200
    assert frames == [
        {"type": "start"},
        {"type": "reasoning-start", "id": "0"},
        {"type": "reasoning-delta", "id": "0", "text": "用户想知道深圳的天气"},
        {"type": "reasoning-delta", "id": "0", "text": ",需要先获取城市信息"},
        {"type": "reasoning-end", "id": "0"},
        {"type": "text-start", "id": "1"},
        {"type": "text-delta", "id": "1", "textDelta": "我来帮你查询"},
        {"type": "text-delta", "id": "1", "textDelta": "深圳的天气"},
        {"type": "text-delta", "id": "1", "textDelta": "。"},
        {"type": "text-end", "id": "1"},
        {"type": "tool-input-start", "id": "call_abc123", "toolName": "get_current_city", "dynamic": False},
        {"type": "tool-input-delta", "id": "call_abc123", "delta": "{}"},
        {"type": "tool-input-end", "id": "call_abc123"},
        {"type": "tool-call", "toolCallId": "call_abc123", "toolName": "get_current_city", "input": {}},
        {"type": "tool-result", "toolCallId": "call_abc123", "toolName": "get_current_city",
         "output": {"city": "深圳"}},
        {"type": "finish-step", "finishReason": "tool-calls"},
        {"type": "tool-input-start", "id": "call_def456", "toolName": "get_weather", "dynamic": True},
        {"type": "tool-input-delta", "id": "call_def456", "delta": '{"city": "深圳"}'},
        {"type": "tool-input-end", "id": "call_def456"},
        {"type": "tool-call", "toolCallId": "call_def456", "toolName": "get_weather", "input": {"city": "深圳"}},
        {"type": "tool-result", "toolCallId": "call_def456", "toolName": "get_weather",
         "output": {"city": "深圳", "weather": "晴", "temp": 25}},
        {"type": "finish-step", "finishReason": "tool-calls"},
        {"type": "text-start", "id": "2"},
        {"type": "text-delta", "id": "2", "textDelta": "深圳今天天气晴,气温25°C"},
        {"type": "text-end", "id": "2"},
        {"type": "finish", "finishReason": "stop",
         "totalUsage": {"inputTokens": 370, "outputTokens": 150, "totalTokens": 520}},
        "[DONE]",
    ]
    first, _, third = upstream.for_model("seed-agent")
    assert first.body["messages"][0] == {"role": "system", "content": "You are MiniOpenCode."}
    assert {t["function"]["name"] for t in first.body["tools"]} == {"get_current_city", "get_weather"}
    tool_msgs = [m for m in third.body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_abc123", "call_def456"]


def test_seed_without_tools_key_and_errors(upstream: FakeUpstream, make_server: Any) -> None:
    upstream.add("seed-plain", answer("你好"))
    srv = agent_server(make_server, {"default": {"model": "up/seed-plain", "system": "Be kind.",
                                                 "tools": ["builtin.*"]}})
    body = {"messages": [{"role": "user", "content": "hi"}], "system": "Answer in Chinese."}
    status, frames = seed_stream(srv, body)
    assert status == 200 and frames[-2]["type"] == "finish" and frames[-1] == "[DONE]"
    assert "".join(f["textDelta"] for f in frames if isinstance(f, dict) and f["type"] == "text-delta") == "你好"
    sent = upstream.last("seed-plain").body
    assert "tools" not in sent  # useTools false: the agent's model without server tools
    assert [m["content"] for m in sent["messages"] if m["role"] == "system"] == ["Be kind.", "Answer in Chinese."]
    assert seed_stream(srv, body, key="wrong")[0] == 401
    status, err = seed_stream(srv, {"messages": []})
    assert status == 400 and "messages" in err[0]["error"]["message"]
    status, err = seed_stream(srv, {"messages": [{"role": "robot", "content": "x"}]})
    assert status == 400


def test_models_lists_agents(upstream: FakeUpstream, make_server: Any) -> None:
    srv = agent_server(make_server, {"helper": {"model": "up/x"}, "coder": {"model": "up/y"}})
    r = httpx.get(f"{srv.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    ids = {m["id"] for m in r.json()["data"]}
    assert {"agent/helper", "agent/coder"} <= ids
    r = httpx.post(f"{srv.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "agent/nobody", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_client_leaving_mid_tool_cancels_it(upstream: FakeUpstream, make_server: Any) -> None:
    upstream.add("seed-cancel", chain(tool_step([("c1", "hang", {"tag": "http-cancel"})]), answer("never")))
    srv = agent_server(make_server, {"default": {"model": "up/seed-cancel", "tools": [f"{PY}:hang"]}})
    with httpx.stream("POST", f"{srv.url}/api/web/chat/stream", headers={"X-API-Key": KEY}, timeout=30,
                      json={"messages": [{"role": "user", "content": "x"}], "useTools": True}) as r:
        for line in r.iter_lines():
            if '"tool-call"' in line:
                break
        deadline = time.monotonic() + 10
        while not _is_set("http-cancel:started") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _is_set("http-cancel:started")
    # the client is gone: the running tool is cancelled and the model is not asked again
    deadline = time.monotonic() + 10
    while not _is_set("http-cancel:cancelled") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _is_set("http-cancel:cancelled")
    assert len(upstream.for_model("seed-cancel")) == 1


def _is_set(name: str) -> bool:
    ev = py_tools.STATE.get(name)
    return ev is not None and ev.is_set()  # set by the server's loop, only read here


def test_session_chat_stores_the_steps_and_continues(upstream: FakeUpstream, make_server: Any) -> None:
    upstream.add("sess-agent", chain(tool_step([("c1", "calculator", {"expression": "2+2"})]), answer("4"),
                                     answer("and 5 after that")))
    srv = agent_server(make_server, {"calc": {"model": "up/sess-agent", "tools": ["builtin.calculator"]}})
    auth = {"Authorization": f"Bearer {KEY}"}
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{srv.url}/chat/stream", headers=auth, timeout=30,
                      json={"message": "2+2?", "model": "agent/calc"}) as r:
        sid = r.headers["x-session-id"]
        events = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {\"type\"")]
    assert [e["type"] for e in events if e["type"].startswith(("tool-", "finish"))] == [
        "tool-input-start", "tool-input-delta", "tool-input-end", "tool-call", "tool-result", "finish-step",
        "finish"]
    result = next(e for e in events if e["type"] == "tool-result")
    assert result["server"] == "builtin" and result["output"] == "4" and result["elapsed"] >= 0
    run_id = r.headers["x-run-id"]
    with httpx.stream("GET", f"{srv.url}/runs/{run_id}/stream?after=0", headers=auth, timeout=30) as replay:
        again = [orjson.loads(line[6:]) for line in replay.iter_lines() if line.startswith("data: {\"type\"")]
    assert again == events  # a reattach replays the steps too
    msgs = httpx.get(f"{srv.url}/sessions/{sid}/messages", headers=auth).json()["data"]
    parts = msgs[-1]["parts"]
    assert {"type": "tool_result", "call_id": "c1", "name": "calculator", "output": "4", "is_error": False} in parts
    assert any(p["type"] == "tool_call" and p["call_id"] == "c1" for p in parts)
    assert msgs[-1]["model"] == "agent/calc" and msgs[-1]["text"] == "4"
    with httpx.stream("POST", f"{srv.url}/chat/stream", headers=auth, timeout=30,
                      json={"session_id": sid, "message": "and then?", "model": "agent/calc"}) as r:
        text = "".join(orjson.loads(line[6:]).get("delta", "") for line in r.iter_lines()
                       if line.startswith('data: {"type":"text-delta"'))
    assert text == "and 5 after that"
    replay = upstream.for_model("sess-agent")[-1].body["messages"]  # the stored turn, as the model sees it again
    assert replay[-1] == {"role": "user", "content": "and then?"}


def test_approval_pauses_the_run_until_decided(upstream: FakeUpstream, make_server: Any) -> None:
    upstream.add("seed-approve", chain(
        tool_step([("c_ok", "calculator", {"expression": "6*7"}), ("c_no", "current_time", {}),
                   ("c_free", "add_one", {"n": 1})]),
        answer("done")))
    srv = agent_server(make_server, {"default": {
        "model": "up/seed-approve", "tools": ["builtin.calculator", "builtin.current_time", f"{PY}:add_one"],
        "approve": ["builtin.*"]}})
    frames: list[Any] = []
    auth = {"X-API-Key": KEY}
    with httpx.stream("POST", f"{srv.url}/api/web/chat/stream", headers=auth, timeout=30,
                      json={"messages": [{"role": "user", "content": "x"}], "useTools": True}) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                frames.append(orjson.loads(line[6:]))
                if frames[-1]["type"] == "tool-approval-request" and len(
                        [f for f in frames if f["type"] == "tool-approval-request"]) == 2:
                    break
        asks = {f["toolCallId"]: f["approvalId"] for f in frames if f["type"] == "tool-approval-request"}
        assert set(asks) == {"c_ok", "c_no"}  # add_one needs no approval
        assert not any(f["type"] == "tool-result" for f in frames)  # nothing ran while waiting
        listed = httpx.get(f"{srv.url}/api/agents/approvals", headers=auth).json()["data"]
        assert {(p["approval_id"], p["call_id"], p["model"]) for p in listed} == {
            (asks["c_ok"], "c_ok", "agent/default"), (asks["c_no"], "c_no", "agent/default")}
        bad = httpx.post(f"{srv.url}/api/agents/approvals/{asks['c_ok']}", headers=auth, json={"approved": "yes"})
        assert bad.status_code == 400
        ok = httpx.post(f"{srv.url}/api/agents/approvals/{asks['c_ok']}", headers=auth, json={"approved": True})
        no = httpx.post(f"{srv.url}/api/agents/approvals/{asks['c_no']}", headers=auth,
                        json={"approved": False, "reason": "not now"})
        assert ok.status_code == no.status_code == 200
        for line in lines:
            if line.startswith("data: {"):
                frames.append(orjson.loads(line[6:]))
    results = {f["toolCallId"]: f["output"] for f in frames if f["type"] == "tool-result"}
    assert results["c_ok"] == 42 and results["c_free"] == 2
    assert results["c_no"] == {"error": "the user did not approve this call: not now"}
    assert frames[-1]["type"] == "finish"
    again = httpx.post(f"{srv.url}/api/agents/approvals/{asks['c_ok']}", headers=auth, json={"approved": True})
    assert again.status_code == 404
    tool_msgs = [m for m in upstream.last("seed-approve").body["messages"] if m["role"] == "tool"]
    assert "did not approve" in next(m["content"] for m in tool_msgs if m["tool_call_id"] == "c_no")


def test_seed_stream_is_counted_in_metrics(upstream: FakeUpstream, make_server: Any) -> None:
    upstream.add("seed-metrics", answer("hi"))
    srv = agent_server(make_server, {"default": {"model": "up/seed-metrics"}})
    assert seed_stream(srv, {"messages": [{"role": "user", "content": "x"}]})[0] == 200
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert any(line.startswith("sluiceway_requests_total") and 'protocol="mini_opencode"' in line
               and line.rstrip().endswith(" 1.0") for line in text.splitlines()), text[:2000]
