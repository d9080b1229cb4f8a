"""``agent/<name>`` through every client protocol, read by the official
clients: each shows the server's tool steps in its own native shape.

One step calls a built-in tool (calculator) and an MCP tool (get_weather,
stdio) in parallel; the next step answers. Chat Completions shows only the
final text unless ``agent_steps`` asks for the steps; Responses shows a
``function_call`` + ``function_call_output`` for the built-in and an
``mcp_call`` for the MCP tool; Anthropic shows ``mcp_tool_use`` +
``mcp_tool_result`` blocks; the AI SDK shows provider-executed tool parts
with their outputs and one ``start-step``/``finish-step`` per step."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from sluiceway.server.app import create_app

from .agent_helpers import answer, chain, stdio_server, tool_step
from .conftest import ServerThread, make_config
from .test_protocol_ui_stream import JS, node  # noqa: F401 (fixture)
from .upstream import FakeUpstream

FINAL = "Oslo: 晴, and 6*7 = 42."
AGENTS = ("chat", "resp", "anth", "ui")


@pytest.fixture(scope="module")
def srv(upstream: FakeUpstream) -> Iterator[ServerThread]:
    agents = {name: {"model": f"up/agp-{name}", "tools": ["builtin.calculator", "tools.get_weather"]}
              for name in AGENTS}
    cfg = make_config(upstream, agents=agents, mcp_servers={"tools": stdio_server()})
    s = ServerThread(create_app(cfg)).start()
    yield s
    s.stop()


def script(upstream: FakeUpstream, name: str, runs: int = 1) -> None:
    steps = [tool_step([("call_calc", "calculator", {"expression": "6*7"}),
                        ("call_wx", "get_weather", {"city": "Oslo"})], usage=(20, 10)),
             answer(FINAL, usage=(50, 9))]
    upstream.add(f"agp-{name}", chain(*steps * runs))


def oai(s: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_chat_completions_final_text_only_by_default(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "chat")
    chunks = list(oai(srv).chat.completions.create(model="agent/chat", stream=True,
                                                   stream_options={"include_usage": True},
                                                   messages=[{"role": "user", "content": "weather and 6*7?"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FINAL
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (70, 19)
    script(upstream, "chat")
    done = oai(srv).chat.completions.create(model="agent/chat", messages=[{"role": "user", "content": "again"}])
    msg = done.choices[0].message
    assert msg.content == FINAL and not msg.tool_calls and done.choices[0].finish_reason == "stop"


def test_chat_completions_steps_on_request(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "chat")
    chunks = list(oai(srv).chat.completions.create(model="agent/chat", stream=True,
                                                   extra_body={"agent_steps": True},
                                                   messages=[{"role": "user", "content": "weather and 6*7?"}]))
    steps = [c.choices[0].delta.model_extra["agent_step"] for c in chunks
             if c.choices and (c.choices[0].delta.model_extra or {}).get("agent_step")]
    calls = {s["id"]: s for s in steps if s["type"] == "tool_call"}
    results = {s["id"]: s for s in steps if s["type"] == "tool_result"}
    assert calls["call_calc"]["name"] == "calculator" and calls["call_calc"]["server"] == "builtin"
    assert json.loads(calls["call_wx"]["arguments"]) == {"city": "Oslo"} and calls["call_wx"]["server"] == "tools"
    assert results["call_calc"]["output"] == "42" and results["call_calc"]["is_error"] is False
    assert "晴" in results["call_wx"]["output"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FINAL
    assert "agent_steps" not in upstream.last("agp-chat").body  # an extension for us, never sent upstream


def test_chat_completions_steps_on_request_non_streamed(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "chat")
    done = oai(srv).chat.completions.create(model="agent/chat", extra_body={"agent_steps": True},
                                            messages=[{"role": "user", "content": "weather and 6*7?"}])
    msg = done.choices[0].message
    steps = msg.model_extra["agent_steps"]
    assert {s["name"] for s in steps if s["type"] == "tool_call"} >= {"calculator"}
    assert any(s["type"] == "tool_result" and s["output"] == "42" for s in steps)
    assert msg.content == FINAL and not msg.tool_calls


def test_responses_show_function_call_outputs_and_mcp_calls(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "resp")
    events = list(oai(srv).responses.create(model="agent/resp", input="weather and 6*7?", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "response.completed"
    assert "response.mcp_call.completed" in kinds and "response.mcp_call_arguments.done" in kinds
    out = events[-1].response.output
    by_type: dict[str, list[Any]] = {}
    for item in out:
        by_type.setdefault(item.type, []).append(item)
    (fc,) = by_type["function_call"]
    assert (fc.name, fc.call_id, json.loads(fc.arguments)) == ("calculator", "call_calc", {"expression": "6*7"})
    (fco,) = by_type["function_call_output"]
    assert (fco.call_id, fco.output) == ("call_calc", "42")
    (mcp,) = by_type["mcp_call"]
    assert (mcp.name, mcp.server_label, json.loads(mcp.arguments)) == ("get_weather", "tools", {"city": "Oslo"})
    assert "晴" in mcp.output and mcp.error is None
    assert out[-1].type == "message" and events[-1].response.output_text == FINAL
    assert [i.type for i in out].index("function_call_output") > [i.type for i in out].index("function_call")
    script(upstream, "resp")
    done = oai(srv).responses.create(model="agent/resp", input="again")
    assert done.output_text == FINAL
    assert sorted(i.type for i in done.output) == ["function_call", "function_call_output", "mcp_call", "message"]
    # continuing the stored answer: its server steps come back as input and are accepted
    upstream.add("agp-resp", answer("you're welcome"))
    follow = oai(srv).responses.create(model="agent/resp", previous_response_id=events[-1].response.id,
                                       input="thanks")
    assert follow.output_text == "you're welcome"
    sent = upstream.last("agp-resp").body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["tool_calls"][0]["id"] == "call_calc" and sent[2]["content"] == "42"


def test_anthropic_shows_mcp_tool_use_and_result_blocks(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "anth")
    client = anthropic.Anthropic(base_url=srv.url, api_key="unused", max_retries=0, timeout=30)
    with client.beta.messages.stream(model="agent/anth", max_tokens=200,
                                     messages=[{"role": "user", "content": "weather and 6*7?"}]) as stream:
        final = stream.get_final_message()
    blocks = final.content
    uses = {b.id: b for b in blocks if b.type == "mcp_tool_use"}
    results = {b.tool_use_id: b for b in blocks if b.type == "mcp_tool_result"}
    assert (uses["call_calc"].name, uses["call_calc"].server_name, uses["call_calc"].input) == \
        ("calculator", "builtin", {"expression": "6*7"})
    assert (uses["call_wx"].server_name, uses["call_wx"].input) == ("tools", {"city": "Oslo"})
    assert results["call_calc"].content[0].text == "42" and results["call_calc"].is_error is False
    assert "晴" in results["call_wx"].content[0].text
    assert blocks[-1].type == "text" and blocks[-1].text == FINAL
    assert final.stop_reason == "end_turn" and final.usage.input_tokens == 70
    # the answer goes back as history: its server blocks are accepted
    script(upstream, "anth")
    again = client.beta.messages.create(model="agent/anth", max_tokens=200, messages=[
        {"role": "user", "content": "weather and 6*7?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in blocks]},
        {"role": "user", "content": "thanks"}])
    assert again.content[-1].text == FINAL


def test_ai_sdk_parts_are_provider_executed(upstream: FakeUpstream, srv: ServerThread,
                                            node: str) -> None:  # noqa: F811 (the fixture)
    script(upstream, "ui", runs=2)  # ui_stream.mjs asks twice: raw chunks, then through useChat's transport
    spec = {"url": srv.url, "model": "agent/ui"}
    done = subprocess.run([node, "ui_stream.mjs", json.dumps(spec)], cwd=JS, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["raw"]["invalid"] == []
    chunks = out["raw"]["valid"]
    kinds = [c["type"] for c in chunks]
    assert kinds.count("start-step") == 2 and kinds.count("finish-step") == 2
    outputs = {c["toolCallId"]: c for c in chunks if c["type"] == "tool-output-available"}
    assert outputs["call_calc"]["output"] == 42 and outputs["call_calc"]["providerExecuted"] is True
    assert outputs["call_wx"]["output"]["weather"] == "晴"
    assert all(c.get("providerExecuted") for c in chunks if c["type"] == "tool-input-available")
    msg = out["ui"]["message"]
    tools = [p for p in msg["parts"] if p["type"].startswith("tool-")]
    assert {p["state"] for p in tools} == {"output-available"} and all(p["providerExecuted"] for p in tools)
    assert msg["parts"][-1]["text"] == FINAL
    # useChat's auto-resend check: provider-executed steps must not make the client send again
    check = ("import {lastAssistantMessageIsCompleteWithToolCalls as f} from 'ai';"
             "process.stdout.write(String(f({messages: [JSON.parse(process.argv[1])]})))")
    ran = subprocess.run([node, "--input-type=module", "-e", check, json.dumps(msg)], cwd=JS,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "false"


def test_plain_json_stream_carries_the_canonical_steps(upstream: FakeUpstream, srv: ServerThread) -> None:
    script(upstream, "chat")
    r = httpx.post(f"{srv.url}/v1/stream?format=json", timeout=30,
                   json={"model": "agent/chat", "messages": [{"role": "user", "content": "x"}]})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    results = [e for e in events if e["type"] == "tool-result"]
    assert {e["call_id"] for e in results} == {"call_calc", "call_wx"}
    assert [e["type"] for e in events].count("finish-step") == 1 and events[-1]["type"] == "finish"
