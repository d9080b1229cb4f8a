"""The agent loop in the engine, over the scripted upstream on a real socket:
single and parallel tool calls, failing and hanging tools, max_steps, client
tools mixed with server tools, cancellation, MCP tools over stdio, Python
tools by import path, and config errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sluiceway.core import ChatRequest, Message, Tool
from sluiceway.engine.config import ConfigError, load_config
from sluiceway.engine.gateway import Gateway

from .agent_helpers import PY, answer, chain, stdio_server, tool_step
from .conftest import make_config
from .mcp_servers import py_tools
from .upstream import HANG, FakeUpstream, chat_chunk, sse


def gateway(upstream: FakeUpstream, agents: dict[str, Any], **kw: Any) -> Gateway:
    return Gateway(make_config(upstream, agents=agents, **kw))


async def run(gw: Gateway, model: str, text: str = "hi", **kw: Any) -> list[Any]:
    opened = await gw.router.open(ChatRequest(model=model, messages=[Message.of("user", text)], **kw))
    events: list[Any] = []
    try:
        async for batch in opened.batches():
            events.extend(batch)
    finally:
        await opened.aclose()
    return events


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


async def test_single_tool_step_then_answer(upstream: FakeUpstream) -> None:
    upstream.add("ag-single", chain(tool_step([("call_1", "calculator", {"expression": "6*7"})], usage=(10, 5)),
                                    answer("It is 42.", usage=(30, 7))))
    gw = gateway(upstream, {"calc": {"model": "up/ag-single", "system": "Be brief.",
                                     "tools": ["builtin.calculator"]}})
    try:
        events = await run(gw, "agent/calc", "what is 6*7?")
    finally:
        await gw.aclose()
    assert types(events)[0] == "start" and events[0].model == "agent/calc"
    assert types(events).count("start") == 1
    call = next(e for e in events if e.type == "tool-call")
    assert (call.name, call.server) == ("calculator", "builtin")
    res = next(e for e in events if e.type == "tool-result")
    assert (res.call_id, res.output, res.is_error, res.server) == ("call_1", "42", False, "builtin")
    step = next(e for e in events if e.type == "finish-step")
    assert (step.reason, step.usage.input, step.usage.output) == ("tool_calls", 10, 5)
    assert types(events).index("tool-result") < types(events).index("finish-step") < types(events).index("text-delta")
    fin = events[-1]
    assert fin.type == "finish" and fin.reason == "stop"
    assert (fin.usage.input, fin.usage.output) == (40, 12)  # summed over the two steps
    assert "".join(e.delta for e in events if e.type == "text-delta") == "It is 42."
    first, second = upstream.for_model("ag-single")
    assert first.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [t["function"]["name"] for t in first.body["tools"]] == ["calculator"]
    assert "expression" in first.body["tools"][0]["function"]["parameters"]["properties"]
    msgs = second.body["messages"]
    assert msgs[-2]["role"] == "assistant" and msgs[-2]["tool_calls"][0]["id"] == "call_1"
    assert msgs[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


async def test_parallel_calls_run_concurrently_and_python_tools(upstream: FakeUpstream) -> None:
    py_tools.reset_rendezvous()
    upstream.add("ag-par", chain(tool_step([("c_a", "rendezvous", {"name": "a"}),
                                            ("c_b", "rendezvous", {"name": "b"}),
                                            ("c_p", "price", {"order": {"item": "tea", "quantity": 2}})]),
                                 answer("done")))
    gw = gateway(upstream, {"par": {"model": "up/ag-par", "tools": [f"{PY}:rendezvous", f"{PY}:price"]}})
    try:
        events = await run(gw, "agent/par")
    finally:
        await gw.aclose()
    results = {e.call_id: e for e in events if e.type == "tool-result"}
    assert not any(r.is_error for r in results.values()), results
    assert results["c_a"].output == "a met b" and results["c_b"].output == "b met a"
    assert json.loads(results["c_p"].output) == {"item": "tea", "total": 5.0, "currency": "EUR"}
    schema = next(t for t in upstream.for_model("ag-par")[0].body["tools"] if t["function"]["name"] == "price")
    assert "order" in schema["function"]["parameters"]["required"]
    tool_msgs = [m for m in upstream.for_model("ag-par")[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["c_a", "c_b", "c_p"]  # call order, not completion order


async def test_failing_and_bad_arguments_become_error_results(upstream: FakeUpstream) -> None:
    upstream.add("ag-fail", chain(tool_step([("c1", "explode", {"reason": "kaboom"}),
                                             ("c2", "calculator", "{not json"),
                                             ("c3", "calculator", {"expression": "__import__('os')"})]),
                                  answer("sorry")))
    gw = gateway(upstream, {"f": {"model": "up/ag-fail", "tools": [f"{PY}:explode", "builtin.calculator"]}})
    try:
        events = await run(gw, "agent/f")
    finally:
        await gw.aclose()
    results = {e.call_id: e for e in events if e.type == "tool-result"}
    assert all(r.is_error for r in results.values())
    assert "exploded: kaboom" in results["c1"].output
    assert "not valid JSON" in results["c2"].output
    assert "unsupported expression" in results["c3"].output
    assert events[-1].type == "finish" and events[-1].reason == "stop"
    tool_msgs = [m for m in upstream.for_model("ag-fail")[1].body["messages"] if m["role"] == "tool"]
    assert "exploded: kaboom" in tool_msgs[0]["content"]


async def test_hanging_tool_times_out_into_an_error_result(upstream: FakeUpstream) -> None:
    upstream.add("ag-hang", chain(tool_step([("c1", "hang", {"tag": "timeout"})]), answer("gave up")))
    gw = gateway(upstream, {"h": {"model": "up/ag-hang", "tools": [f"{PY}:hang"], "tool_timeout": 0.2}})
    try:
        events = await run(gw, "agent/h")
    finally:
        await gw.aclose()
    res = next(e for e in events if e.type == "tool-result")
    assert res.is_error and "timed out after 0.2 s" in res.output
    assert py_tools.event("timeout:cancelled").is_set()  # the timed-out tool was cancelled, not left running
    assert events[-1].type == "finish" and events[-1].reason == "stop"


async def test_max_steps_reached(upstream: FakeUpstream) -> None:
    upstream.add("ag-max", tool_step([("c", "current_time", {})]))  # calls a tool every time
    gw = gateway(upstream, {"m": {"model": "up/ag-max", "tools": ["builtin.current_time"], "max_steps": 3}})
    try:
        events = await run(gw, "agent/m")
    finally:
        await gw.aclose()
    assert len(upstream.for_model("ag-max")) == 3
    assert types(events).count("finish-step") == 3 and types(events).count("tool-result") == 3
    fin = events[-1]
    assert (fin.type, fin.reason, fin.raw_reason) == ("finish", "tool_calls", "max_steps")
    assert fin.usage.input == 30


async def test_client_tools_mixed_with_server_tools(upstream: FakeUpstream) -> None:
    upstream.add("ag-mix", tool_step([("s1", "calculator", {"expression": "1+1"}),
                                      ("k1", "open_drawer", {"which": "top"})]))
    gw = gateway(upstream, {"mix": {"model": "up/ag-mix", "tools": ["builtin.calculator"]}})
    try:
        events = await run(gw, "agent/mix", tools=[Tool("open_drawer", "client side", {"type": "object"})])
    finally:
        await gw.aclose()
    calls = {e.call_id: e for e in events if e.type == "tool-call"}
    assert calls["s1"].server == "builtin" and calls["k1"].server is None
    assert [e.call_id for e in events if e.type == "tool-result"] == ["s1"]
    assert events[-1].type == "finish" and events[-1].reason == "tool_calls"
    assert len(upstream.for_model("ag-mix")) == 1  # the client runs open_drawer and comes back
    sent = [t["function"]["name"] for t in upstream.last("ag-mix").body["tools"]]
    assert sent == ["calculator", "open_drawer"]


async def test_cancel_mid_tool_cancels_the_tool(upstream: FakeUpstream) -> None:
    upstream.add("ag-cancel", chain(tool_step([("c1", "hang", {"tag": "cancel"})]), answer("never")))
    gw = gateway(upstream, {"c": {"model": "up/ag-cancel", "tools": [f"{PY}:hang"]}})
    opened = await gw.router.open(ChatRequest(model="agent/c", messages=[Message.of("user", "x")]))
    seen: list[str] = []

    async def consume() -> None:  # the server's pump: a task reading the stream, cancelled when the client leaves
        async for batch in opened.batches():
            seen.extend(types(batch))

    reader = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(py_tools.event("cancel:started").wait(), 5)  # the tool is running now
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await opened.aclose()
        await asyncio.wait_for(py_tools.event("cancel:cancelled").wait(), 5)
    finally:
        await gw.aclose()
    assert "tool-call" in seen and "tool-result" not in seen
    assert len(upstream.for_model("ag-cancel")) == 1  # the model was not called again


async def test_cancel_mid_model_step_closes_the_upstream(upstream: FakeUpstream) -> None:
    hanging = [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "thinking"})), HANG]
    upstream.add("ag-cancel2", chain(tool_step([("c1", "calculator", {"expression": "1"})]), hanging))
    gw = gateway(upstream, {"c": {"model": "up/ag-cancel2", "tools": ["builtin.calculator"]}})
    opened = await gw.router.open(ChatRequest(model="agent/c", messages=[Message.of("user", "x")]))
    try:
        it = opened.batches()
        async for batch in it:
            if any(e.type == "text-delta" for e in batch):
                break
        await it.aclose()
        await opened.aclose()
    finally:
        await gw.aclose()
    second = upstream.for_model("ag-cancel2")[1]
    assert await asyncio.to_thread(second.wait_closed, 5) and second.client_closed


async def test_mcp_stdio_tools_and_reconnect_after_a_crash(upstream: FakeUpstream) -> None:
    upstream.add("ag-mcp", chain(tool_step([("w1", "get_weather", {"city": "深圳"}), ("p1", "whoami", {})]),
                                 answer("sunny"),
                                 tool_step([("x1", "crash", {})]), answer("it crashed"),
                                 tool_step([("p2", "whoami", {})]), answer("back")))
    gw = gateway(upstream, {"w": {"model": "up/ag-mcp", "tools": ["tools.*"]}},
                 mcp_servers={"tools": stdio_server()})
    try:
        first = await run(gw, "agent/w")
        crashed = await run(gw, "agent/w")
        again = await run(gw, "agent/w")
        conn = gw.providers["agent"].toolbox.mcp["tools"]
        connects = conn.connects
    finally:
        await gw.aclose()
    r1 = {e.call_id: e for e in first if e.type == "tool-result"}
    assert r1["w1"].server == "tools" and json.loads(r1["w1"].output)["weather"] == "晴"
    sent = {t["function"]["name"]: t for t in upstream.for_model("ag-mcp")[0].body["tools"]}
    assert set(sent) == {"get_weather", "add", "whoami", "slow", "crash", "fail"}
    assert sent["get_weather"]["function"]["parameters"]["required"] == ["city"]  # the server's JSON Schema
    crash = next(e for e in crashed if e.type == "tool-result")
    assert crash.is_error and "closed the connection" in crash.output
    assert crashed[-1].type == "finish" and crashed[-1].reason == "stop"  # the stream itself is fine
    p2 = next(e for e in again if e.type == "tool-result")
    assert not p2.is_error and p2.output != r1["p1"].output  # a new server process answered
    assert connects == 2


def test_config_errors(tmp_path: Any, upstream: FakeUpstream) -> None:
    bad = tmp_path / "sluiceway.yaml"
    bad.write_text("embedded: false\nagents:\n  a:\n    model: up/x\n    max_step: 3\n")
    with pytest.raises(ConfigError, match="max_step.*did you mean 'max_steps'"):
        load_config(bad)
    bad.write_text("embedded: false\nmcp_servers:\n  s: {command: [x], url: http://127.0.0.1:1/mcp}\n")
    with pytest.raises(ConfigError, match="exactly one of command"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown tool server 'nope'"):
        gateway(upstream, {"a": {"model": "up/x", "tools": ["nope.*"]}})
    with pytest.raises(ConfigError, match="cannot import tool"):
        gateway(upstream, {"a": {"model": "up/x", "tools": ["tests.mcp_servers.py_tools:missing"]}})
    with pytest.raises(ConfigError, match="read_file needs"):
        gateway(upstream, {"a": {"model": "up/x", "tools": ["builtin.read_file"]}})


async def test_unreachable_mcp_server_leaves_its_tools_out(upstream: FakeUpstream) -> None:
    upstream.add("ag-down", answer("no tools today"))
    dead = {"command": ["/bin/false"], "connect_timeout": 5}
    gw = gateway(upstream, {"d": {"model": "up/ag-down", "tools": ["gone.*", "builtin.current_time"]}},
                 mcp_servers={"gone": dead})
    try:
        events = await run(gw, "agent/d")
        again = await run(gw, "agent/d")  # within the retry pause: no new attempt, the same answer
    finally:
        await gw.aclose()
    assert events[-1].type == again[-1].type == "finish"
    assert [t["function"]["name"] for t in upstream.last("ag-down").body["tools"]] == ["current_time"]


async def test_agent_deadline_bounds_tools_and_steps(upstream: FakeUpstream) -> None:
    upstream.add("ag-dl", chain(tool_step([("c1", "hang", {"tag": "deadline"})]), answer("late")))
    gw = gateway(upstream, {"d": {"model": "up/ag-dl", "tools": [f"{PY}:hang"], "deadline": 0.3}})
    opened = await gw.router.open(ChatRequest(model="agent/d", messages=[Message.of("user", "x")]))
    events: list[Any] = []
    try:
        with pytest.raises(Exception, match="deadline passed"):
            async for batch in opened.batches():
                events.extend(batch)
    finally:
        await opened.aclose()
        await gw.aclose()
    res = next(e for e in events if e.type == "tool-result")
    assert res.is_error and "timed out" in res.output  # the tool got what was left of the run's time
    assert len(upstream.for_model("ag-dl")) == 1


async def test_call_ids_reused_across_steps_are_made_unique(upstream: FakeUpstream) -> None:
    same = tool_step([("call_0", "calculator", {"expression": "1+1"})])
    upstream.add("ag-ids", chain(same, same, answer("2 and 2")))  # a model that numbers its calls per step
    gw = gateway(upstream, {"i": {"model": "up/ag-ids", "tools": ["builtin.calculator"]}})
    try:
        events = await run(gw, "agent/i")
    finally:
        await gw.aclose()
    assert [e.call_id for e in events if e.type == "tool-result"] == ["call_0", "call_0.s1"]
    assert {e.call_id for e in events if e.type == "tool-input-delta"} == {"call_0", "call_0.s1"}
    third = upstream.for_model("ag-ids")[2].body["messages"]
    assert [m["tool_call_id"] for m in third if m["role"] == "tool"] == ["call_0", "call_0.s1"]


async def test_read_file_stays_below_its_folder(upstream: FakeUpstream, tmp_path: Any) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "notes.txt").write_text("hello from notes")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    calls = [("r1", "read_file", {"path": "sub/notes.txt"}), ("r2", "read_file", {"path": "../secret.txt"}),
             ("r3", "read_file", {"path": str(tmp_path / "secret.txt")}), ("r4", "read_file", {"path": "link.txt"}),
             ("r5", "read_file", {"path": "sub/../sub/notes.txt"}), ("r6", "read_file", {"path": "missing.txt"})]
    upstream.add("ag-files", chain(tool_step(calls), answer("ok")))
    gw = gateway(upstream, {"f": {"model": "up/ag-files", "tools": ["builtin.read_file"], "files": str(root)}})
    try:
        events = await run(gw, "agent/f")
    finally:
        await gw.aclose()
    r = {e.call_id: e for e in events if e.type == "tool-result"}
    assert (r["r1"].output, r["r1"].is_error) == ("hello from notes", False)
    assert (r["r5"].output, r["r5"].is_error) == ("hello from notes", False)
    for cid in ("r2", "r3", "r4"):
        assert r[cid].is_error and "outside the files folder" in r[cid].output
    assert r["r6"].is_error and "no such file" in r["r6"].output
    assert not any("top secret" in e.output for e in r.values())


def test_calculator_is_arithmetic_only() -> None:
    from sluiceway.engine.agents.builtins import calculator

    assert calculator("2**10 + sqrt(16) - abs(-3) * pi / pi") == 1025.0
    assert calculator("7 // 2 + 7 % 2") == 4
    for bad in ("__import__('os').system('true')", "(1).__class__", "open('x')", "9**9**9", "[1,2]", "x"):
        with pytest.raises(ValueError):
            calculator(bad)
    with pytest.raises(ValueError, match="division by zero"):
        calculator("1/0")


async def test_cancel_mid_mcp_tool_cancels_it_on_the_server(upstream: FakeUpstream, tmp_path: Any) -> None:
    marker = tmp_path / "marker"
    upstream.add("ag-mcp-cancel", chain(tool_step([("s1", "slow", {"seconds": 60})]), answer("never")))
    gw = gateway(upstream, {"c": {"model": "up/ag-mcp-cancel", "tools": ["tools.slow"]}},
                 mcp_servers={"tools": stdio_server(env={"SW_MCP_MARKER": str(marker)})})
    opened = await gw.router.open(ChatRequest(model="agent/c", messages=[Message.of("user", "x")]))

    async def consume() -> None:
        async for _ in opened.batches():
            pass

    async def lines() -> list[str]:
        return marker.read_text().split() if marker.exists() else []

    reader = asyncio.create_task(consume())
    try:
        for _ in range(1000):
            if "started" in await lines():
                break
            await asyncio.sleep(0.01)
        assert "started" in await lines()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await opened.aclose()
        for _ in range(1000):
            if "cancelled" in await lines():
                break
            await asyncio.sleep(0.01)
        assert await lines() == ["started", "cancelled"]
    finally:
        await gw.aclose()
