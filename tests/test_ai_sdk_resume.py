"""/api/chat generations are runs: the AI SDK's resume request
(GET /api/chat/{chatId}/stream, what ``resumeStream`` sends) replays the
chat's run and follows its live tail, 204 when there is nothing to resume;
a client leaving follows the runs disconnect policy. Read with the `ai`
package's own transport under Node, and over raw HTTP."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import httpx

from .test_protocol_ui_stream import JS, node  # noqa: F401 (fixture)
from .test_sessions_chat import no_env_store_overrides  # noqa: F401 (autouse fixture)
from .upstream import HANG, chat_chunk, chat_text_stream, sse, usage_wire

PIECES = [f"w{i} " for i in range(10)]
TEXT = "".join(PIECES)


def ui_body(model: str, chat_id: str) -> dict[str, Any]:
    return {"id": chat_id, "trigger": "submit-message", "model": model,
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}]}


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def start_and_drop(url: str, model: str, chat_id: str, upto: bytes) -> bytes:
    """POST /api/chat, read until ``upto`` has arrived, then close the connection."""
    seen = b""
    with httpx.Client(timeout=10) as c, c.stream("POST", f"{url}/api/chat", json=ui_body(model, chat_id)) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            seen += chunk
            if upto in seen:
                break
    return seen


def resume(url: str, chat_id: str) -> httpx.Response:
    return httpx.get(f"{url}/api/chat/{chat_id}/stream", timeout=10)


def test_ai_package_resumes_a_dropped_chat(upstream, make_server, node):  # noqa: F811
    srv = make_server()
    name = upstream.add(f"ui-resume-{uuid.uuid4().hex[:6]}", chat_text_stream(PIECES, delay=0.08,
                                                                              usage=usage_wire(7, 10)))
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([node, "ui_resume.mjs", json.dumps({"url": srv.url, "model": f"up/{name}",
                                                                  "chatId": chat_id, "dropAfter": 5})],
                          cwd=JS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    before = [c["type"] for c in out["before"]]
    assert before[:2] == ["start", "start-step"] and "finish" not in before  # dropped part-way
    assert out["resumed"] is True
    chunks = out["chunks"]
    assert [c["type"] for c in chunks][:2] == ["start", "start-step"]
    assert chunks[0]["messageId"] == out["before"][0]["messageId"]  # the same answer, not a new one
    assert chunks[-1]["type"] == "finish" and chunks[-1]["messageMetadata"]["usage"]["outputTokens"] == 10
    assert text_of(chunks) == TEXT  # the whole answer exactly once
    assert out["errors"] == []
    msg = out["message"]
    assert msg["role"] == "assistant" and msg["id"] == chunks[0]["messageId"]
    assert "".join(p["text"] for p in msg["parts"] if p["type"] == "text") == TEXT
    assert out["againNull"] is True  # delivered: nothing left to resume (204)


def test_nothing_to_resume_is_204(upstream, make_server):
    srv = make_server()
    assert resume(srv.url, "never-seen").status_code == 204
    name = upstream.add(f"ui-done-{uuid.uuid4().hex[:6]}", chat_text_stream(["all ", "here"]))
    r = httpx.post(f"{srv.url}/api/chat", json=ui_body(f"up/{name}", "delivered"), timeout=10)
    assert text_of(chunks_of(r.content)) == "all here"
    assert resume(srv.url, "delivered").status_code == 204  # the client read it all


def test_continue_policy_finishes_the_run_and_resume_replays_it(upstream, make_server):
    srv = make_server()  # runs.disconnect defaults to continue
    name = upstream.add(f"ui-cont-{uuid.uuid4().hex[:6]}", chat_text_stream(PIECES, delay=0.05))
    seen = start_and_drop(srv.url, f"up/{name}", "cont", b"w2 ")
    assert b'"finish"' not in seen
    rec = upstream.last(name)
    assert rec.done.wait(5) and rec.completed and not rec.client_closed  # the run read the upstream to its end
    r = resume(srv.url, "cont")  # ended while nobody was reading: still resumable
    assert r.status_code == 200 and r.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = chunks_of(r.content)
    assert r.content.endswith(b"data: [DONE]\n\n")
    assert text_of(chunks) == TEXT and chunks[-1]["type"] == "finish"
    assert resume(srv.url, "cont").status_code == 204


def test_cancel_policy_stops_the_upstream_and_leaves_nothing_to_resume(upstream, make_server):
    srv = make_server(runs={"disconnect": "cancel"})
    name = upstream.add(f"ui-cancel-{uuid.uuid4().hex[:6]}", [sse(chat_chunk({"role": "assistant", "content": ""})),
                                                              sse(chat_chunk({"content": "first"})), HANG])
    start_and_drop(srv.url, f"up/{name}", "cancelled", b"first")
    rec = upstream.last(name)
    assert rec.wait_closed(2.0) and rec.client_closed
    assert resume(srv.url, "cancelled").status_code == 204


def test_resume_while_live_replays_then_follows_the_tail(upstream, make_server):
    srv = make_server()
    name = upstream.add(f"ui-live-{uuid.uuid4().hex[:6]}", chat_text_stream(PIECES, delay=0.1))
    start_and_drop(srv.url, f"up/{name}", "live", b"w1 ")
    t0 = time.monotonic()
    with httpx.stream("GET", f"{srv.url}/api/chat/live/stream", timeout=10) as r:
        assert r.status_code == 200
        raw = r.read()
    assert time.monotonic() - t0 > 0.3  # it waited for the live tail, not only the replay
    chunks = chunks_of(raw)
    assert text_of(chunks) == TEXT
    types = [c["type"] for c in chunks]
    assert types.count("start") == 1 and types.count("finish") == 1


def test_a_chat_is_resumed_only_with_the_key_that_started_it(upstream, make_server, tmp_path):
    admin = "admin-for-resume"
    srv = make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/keys.db"},
                      server={"keepalive": 15, "admin_key": admin, "api_keys": []})
    keys = []
    for _ in range(2):
        r = httpx.post(f"{srv.url}/admin/keys", json={"name": "k"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        keys.append({"authorization": f"Bearer {r.json()['key']}"})
    name = upstream.add(f"ui-own-{uuid.uuid4().hex[:6]}", chat_text_stream(PIECES, delay=0.05))
    with httpx.Client(timeout=10) as c, c.stream("POST", f"{srv.url}/api/chat", json=ui_body(f"up/{name}", "shared-id"),
                                                 headers=keys[0]) as r:
        assert r.status_code == 200
        seen = b""
        for chunk in r.iter_raw():
            seen += chunk
            if b"w1 " in seen:
                break
    assert httpx.get(f"{srv.url}/api/chat/shared-id/stream", headers=keys[1], timeout=10).status_code == 204
    assert httpx.get(f"{srv.url}/api/chat/shared-id/stream", timeout=10).status_code == 401
    r = httpx.get(f"{srv.url}/api/chat/shared-id/stream", headers=keys[0], timeout=10)
    assert r.status_code == 200 and text_of(chunks_of(r.content)) == TEXT


async def test_memory_aliases_expire_with_their_run_log():
    import asyncio

    from sluiceway.engine.runs import MemoryRunLog

    log = MemoryRunLog(ttl=0.05)
    await log.create("r1", {})
    await log.set_alias("ai-chat::c", "r1")
    assert await log.get_alias("ai-chat::c") == "r1"
    await log.create("r2", {})
    await log.drop_alias("ai-chat::c", "r2")  # not its run: kept
    assert await log.get_alias("ai-chat::c") == "r1"
    from sluiceway.core import Finish, Usage

    await log.append("r1", [Finish("stop", Usage())], end=True)
    await asyncio.sleep(0.15)
    assert not log.has("r1") and log._aliases == {} and log._alias_of == {}  # nothing left behind
