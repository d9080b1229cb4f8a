"""The session chat API over real sockets: the fake upstream, sluiceway under
uvicorn, a real SQLite file. What is stored must be what was streamed,
however the stream ends."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import UPSTREAM_KEY
from .upstream import DROP, HANG, Script, chat_chunk, chat_text_stream, sse, usage_wire

PIECES = ["Hel", "lo, ", "wor", "ld! ", "¿Qué? ", "日本語 ", "🙂"]
TEXT = "".join(PIECES)


@pytest.fixture(scope="module", autouse=True)
def no_env_store_overrides() -> Iterator[None]:
    """The servers here take their store and run log from the test's config; an
    environment's DATABASE_URL / REDIS_URL (which override config) must not leak in."""
    saved = {k: os.environ.pop(k) for k in ("DATABASE_URL", "REDIS_URL") if k in os.environ}
    yield
    os.environ.update(saved)


def read_sse(resp: httpx.Response | Iterator[str], limit: int | None = None) -> tuple[dict | None, list[tuple[int, dict]]]:
    """(the ``run`` frame, [(id, event)…]) from our SSE framing; stops after
    ``limit`` events when given. Pass ``resp.iter_lines()`` to read on later."""
    run, events = None, []
    ev_id, name, data = None, None, []
    for line in resp.iter_lines() if isinstance(resp, httpx.Response) else resp:
        if line.startswith(":"):
            continue
        if line == "":
            if data:
                obj = json.loads("\n".join(data))
                if name == "run":
                    run = obj
                else:
                    events.append((int(ev_id), obj))
                    if limit is not None and len(events) >= limit:
                        return run, events
            ev_id, name, data = None, None, []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            ev_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return run, events


def text_of(events: list[tuple[int, dict]]) -> str:
    return "".join(e["delta"] for _, e in events if e["type"] == "text-delta")


def wait_for(fn, timeout: float = 5.0, every: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def messages(srv, session_id: str) -> list[dict]:
    r = httpx.get(f"{srv.url}/sessions/{session_id}/messages")
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.fixture
def chat_server(make_server, tmp_path):
    def factory(**runs: Any):
        return make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/chat.db", "checkpoint_interval": 0.1},
                           runs={"shutdown_grace": 0, **runs})
    return factory


def test_chat_saves_answer_usage_metrics_and_redacted_trace(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-basic", chat_text_stream(PIECES, usage=usage_wire(11, 7), delay=0.01))
    r = httpx.post(f"{srv.url}/chat", json={"message": "Say hello", "model": "up/c-basic",
                                            "params": {"temperature": 0.5}}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    msg = body["message"]
    assert (msg["status"], msg["text"], msg["finish_reason"]) == ("complete", TEXT, "stop")
    assert msg["usage"] == {"input": 11, "output": 7, "cached_input": 0, "reasoning": 0, "estimated": False}
    assert msg["ttft_ms"] > 0 and msg["tokens_per_s"] > 0
    assert (msg["model"], msg["provider"]) == ("up/c-basic", "up")
    assert upstream.last("c-basic").body["temperature"] == 0.5
    stored = messages(srv, body["session_id"])
    assert [(m["role"], m["text"], m["status"]) for m in stored] == [
        ("user", "Say hello", "complete"), ("assistant", TEXT, "complete")]
    assert httpx.get(f"{srv.url}/sessions/{body['session_id']}").json()["title"] == "Say hello"
    tr = httpx.get(f"{srv.url}/messages/{msg['id']}/trace")
    assert tr.status_code == 200
    trace = tr.json()
    assert UPSTREAM_KEY not in tr.text
    assert trace["request"]["settings"]["api_key"] == "[redacted]"
    assert trace["request"]["request"]["messages"][-1]["content"][0]["text"] == "Say hello"
    assert "".join(e.get("delta", "") for e in trace["response"] if e["type"] == "text-delta") == TEXT
    assert trace["response"][-1]["type"] == "finish"
    # the raw upstream exchange, as sent and as received, credentials redacted
    wire = trace["request"]["wire"]
    assert wire["request"]["method"] == "POST" and wire["request"]["url"].endswith("/v1/chat/completions")
    assert wire["request"]["headers"]["authorization"] == "[redacted]"
    assert '"temperature":0.5' in wire["request"]["body"]
    assert wire["response"]["status"] == 200
    assert wire["response"]["headers"]["Content-Type"] == "text/event-stream"
    raw = wire["response"]["body"]
    assert raw == b"".join(s if isinstance(s, bytes) else s.encode()
                           for s in chat_text_stream(PIECES, usage=usage_wire(11, 7))
                           if isinstance(s, bytes | str)).decode()
    assert raw.endswith("data: [DONE]\n\n") and not wire["response"]["truncated"]


def test_stream_ids_are_dense_and_the_stored_answer_matches(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-stream", chat_text_stream(PIECES, usage=usage_wire(3, 4)))
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "hi", "model": "up/c-stream"},
                      timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        run, events = read_sse(resp)
    assert run["run_id"] == resp.headers["x-run-id"] == run["message_id"]
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1]["type"] == "finish" and events[-1][1]["usage"]["output"] == 4
    assert text_of(events) == TEXT
    # the run's end is sent only after the answer is saved: read-your-writes
    stored = messages(srv, run["session_id"])
    assert (stored[1]["status"], stored[1]["text"]) == ("complete", TEXT)


def test_run_stream_sends_keepalive_comments_during_silence_and_still_ends(upstream, make_server, tmp_path):
    """A run stream's keep-alive comes from the run log's heartbeat; the
    answer that follows the silence still arrives whole."""
    srv = make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/ka.db"}, server={"keepalive": 0.1},
                      runs={"shutdown_grace": 0})
    upstream.add("ka-pause", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "a"})),
                              0.6, sse(chat_chunk({"content": "b"})), sse(chat_chunk({}, "stop")),
                              b"data: [DONE]\n\n"])
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "x", "model": "up/ka-pause"},
                      timeout=10) as r:
        raw = b"".join(r.iter_raw())
    assert raw.count(b": keep-alive\n\n") >= 2, raw
    _, events = read_sse(iter(raw.decode().splitlines()))
    assert text_of(events) == "ab" and events[-1][1]["type"] == "finish"


def test_second_turn_sends_history(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-hist", chat_text_stream(["first answer"]))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "one", "model": "up/c-hist",
                                              "system": "be brief"}, timeout=10).json()["session_id"]
    upstream.add("c-hist", chat_text_stream(["second answer"]))
    r = httpx.post(f"{srv.url}/chat", json={"message": "two", "session_id": sid}, timeout=10)
    assert r.json()["message"]["text"] == "second answer"
    sent = upstream.last("c-hist").body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "be brief"), ("user", "one"), ("assistant", "first answer"), ("user", "two")]


def _disconnect_after_first_text(srv, model: str) -> dict:
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "go", "model": model},
                      timeout=10) as resp:
        run, events = read_sse(resp, limit=3)  # text-start, first delta, …
    assert "first " in text_of(events)
    return run


def test_disconnect_with_continue_saves_the_full_answer(upstream, chat_server):
    srv = chat_server()  # disconnect policy defaults to continue
    upstream.add("c-cont", chat_text_stream(["first ", "second ", "third"], delay=0.15))
    run = _disconnect_after_first_text(srv, "up/c-cont")
    msg = wait_for(lambda: [m for m in messages(srv, run["session_id"])
                            if m["role"] == "assistant" and m["status"] != "streaming"])[0]
    assert (msg["status"], msg["text"]) == ("complete", "first second third")
    assert upstream.last("c-cont").completed


def test_disconnect_with_cancel_saves_partial_and_cancels_upstream(upstream, chat_server):
    srv = chat_server(disconnect="cancel")
    upstream.add("c-cancel", [sse(chat_chunk({"role": "assistant", "content": ""})),
                              sse(chat_chunk({"content": "first "})), 0.05,
                              sse(chat_chunk({"content": "bit"})), HANG])
    run = _disconnect_after_first_text(srv, "up/c-cancel")
    assert upstream.last("c-cancel").wait_closed(1.0), "upstream still open 1 s after the client left"
    msg = wait_for(lambda: [m for m in messages(srv, run["session_id"])
                            if m["role"] == "assistant" and m["status"] != "streaming"])[0]
    assert msg["status"] == "interrupted"
    assert msg["text"] in ("first ", "first bit")
    assert msg["usage"]["estimated"] is True


def test_upstream_drop_keeps_partial_text_as_error(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-drop", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "half an "})), sse(chat_chunk({"content": "answer"})), DROP])
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "x", "model": "up/c-drop"},
                      timeout=10) as resp:
        run, events = read_sse(resp)
    assert events[-1][1]["type"] == "error"
    msg = messages(srv, run["session_id"])[1]
    assert (msg["status"], msg["text"], msg["finish_reason"]) == ("error", "half an answer", "error")
    assert msg["error"]["code"]


def test_bad_input_is_a_clear_4xx_and_writes_nothing(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-bad", chat_text_stream(["x"]))
    url = f"{srv.url}/chat"
    cases = [
        (b"{not json", 400), (b"[]", 400), (json.dumps({"model": "up/c-bad"}).encode(), 400),
        (json.dumps({"message": "", "model": "up/c-bad"}).encode(), 400),
        (json.dumps({"message": "x", "model": "up/c-bad", "params": {"temperature": "hot"}}).encode(), 400),
        (json.dumps({"message": "x", "model": "up/c-bad", "params": {"bogus": 1}}).encode(), 400),
        (json.dumps({"message": "x", "model": "up/c-bad", "session_id": "missing"}).encode(), 404),
        (json.dumps({"message": "x", "model": "nosuch/model"}).encode(), 404),
        (json.dumps({"message": "x" * 200_001, "model": "up/c-bad"}).encode(), 413),
    ]
    for path in ("/chat", "/chat/stream"):
        url = srv.url + path
        for raw, status in cases:
            r = httpx.post(url, content=raw, headers={"content-type": "application/json"}, timeout=10)
            assert r.status_code == status, (path, raw[:60], r.text)
            assert r.json()["error"]["message"]
    assert httpx.get(f"{srv.url}/sessions").json()["data"] == []
    assert httpx.get(f"{srv.url}/runs/nope/stream").status_code == 404
    assert httpx.get(f"{srv.url}/runs/nope/stream", headers={"last-event-id": "x"}).status_code == 400
    assert httpx.post(f"{srv.url}/runs/nope/stop").status_code == 404
    assert httpx.get(f"{srv.url}/messages/nope/trace").status_code == 404


def test_sessions_crud_and_export(upstream, chat_server):
    srv = chat_server()
    base = srv.url
    r = httpx.post(f"{base}/sessions", json={"title": "Plans", "model": "up/c-crud"})
    assert r.status_code == 201
    sid = r.json()["id"]
    assert httpx.patch(f"{base}/sessions/{sid}", json={"title": "Trip"}).json()["title"] == "Trip"
    assert httpx.patch(f"{base}/sessions/{sid}", json={"colour": "red"}).status_code == 400
    assert httpx.patch(f"{base}/sessions/nope", json={"title": "x"}).status_code == 404
    upstream.add("c-crud", chat_text_stream(["Go **north**."]))
    r = httpx.post(f"{base}/chat", json={"message": "Where?", "session_id": sid}, timeout=10)
    assert r.json()["message"]["text"] == "Go **north**."  # the session's model was used
    assert [s["id"] for s in httpx.get(f"{base}/sessions").json()["data"]] == [sid]
    exported = httpx.get(f"{base}/sessions/{sid}/export").json()
    assert exported["session"]["title"] == "Trip"
    assert [m["text"] for m in exported["messages"]] == ["Where?", "Go **north**."]
    md = httpx.get(f"{base}/sessions/{sid}/export", params={"format": "markdown"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# Trip") and "## User" in md.text and "Go **north**." in md.text
    assert httpx.get(f"{base}/sessions/{sid}/export", params={"format": "pdf"}).status_code == 400
    assert httpx.delete(f"{base}/sessions/{sid}").status_code == 204
    assert httpx.get(f"{base}/sessions/{sid}").status_code == 404
    assert httpx.get(f"{base}/sessions/{sid}/messages").status_code == 404
    assert httpx.delete(f"{base}/sessions/{sid}").status_code == 404


def test_concurrent_messages_to_one_session_keep_their_order(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-conc", chat_text_stream(["ok"], delay=0.02))
    sid = httpx.post(f"{srv.url}/sessions", json={"model": "up/c-conc"}).json()["id"]

    def send(i: int) -> dict:
        return httpx.post(f"{srv.url}/chat", json={"message": f"m{i}", "session_id": sid}, timeout=20).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    stored = messages(srv, sid)
    assert [m["seq"] for m in stored] == list(range(16))
    assert sorted(m["text"] for m in stored if m["role"] == "user") == sorted(f"m{i}" for i in range(8))
    for r in results:  # each answer sits right after its own question
        by_id = {m["id"]: m for m in stored}
        assert by_id[r["message"]["id"]]["seq"] == by_id[r["user_message_id"]]["seq"] + 1
        assert by_id[r["message"]["id"]]["status"] == "complete"


def test_upstream_refusal_before_first_token_is_saved_as_error(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-refused", Script([json.dumps({"error": {"message": "model overloaded", "type": "x"}})],
                                     status=503, headers={"content-type": "application/json"}))
    r = httpx.post(f"{srv.url}/chat", json={"message": "anyone?", "model": "up/c-refused"}, timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert "model overloaded" in body["error"]["message"]
    assert body["message"]["status"] == "error"
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "again?", "session_id": body["session_id"],
                                                               "model": "up/c-refused"}, timeout=10) as resp:
        run, events = read_sse(resp)
    assert [e["type"] for _, e in events] == ["error"]
    stored = messages(srv, body["session_id"])
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"), ("assistant", "error"), ("user", "complete"), ("assistant", "error")]
    assert stored[3]["error"]["message"].endswith("model overloaded")
    # a failed answer is not sent back to the model as context
    upstream.add("c-refused", chat_text_stream(["fine now"]))
    httpx.post(f"{srv.url}/chat", json={"message": "third", "session_id": body["session_id"]}, timeout=10)
    assert [m["role"] for m in upstream.last("c-refused").body["messages"]] == ["user", "user", "user"]


def test_title_generation_asks_the_model_and_saves_the_title(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-title", chat_text_stream(["Sure, Paris is lovely in spring."]))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "Plan a weekend in Paris", "model": "up/c-title"},
                     timeout=10).json()["session_id"]
    upstream.add("c-title", chat_text_stream(['"Weekend in ', 'Paris."']))
    r = httpx.post(f"{srv.url}/sessions/{sid}/title", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Weekend in Paris"
    assert httpx.get(f"{srv.url}/sessions/{sid}").json()["title"] == "Weekend in Paris"
    sent = upstream.last("c-title").body
    assert sent["messages"][0]["role"] == "system" and "Plan a weekend in Paris" in sent["messages"][1]["content"]
    empty = httpx.post(f"{srv.url}/sessions", json={"model": "up/c-title"}).json()["id"]
    assert httpx.post(f"{srv.url}/sessions/{empty}/title").status_code == 400
    assert httpx.post(f"{srv.url}/sessions/nope/title").status_code == 404


def test_deleting_a_session_stops_its_active_run(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-del", [sse(chat_chunk({"role": "assistant", "content": ""})),
                           sse(chat_chunk({"content": "going on"})), HANG])
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "x", "model": "up/c-del"},
                      timeout=10) as resp:
        lines = resp.iter_lines()
        run, _ = read_sse(lines, limit=2)
        assert httpx.delete(f"{srv.url}/sessions/{run['session_id']}", timeout=10).status_code == 204
        _, rest = read_sse(lines)  # the watcher's stream ends with the abort
    assert rest[-1][1] == {"type": "abort", "reason": "session deleted"}
    assert upstream.last("c-del").wait_closed(1.0)
    assert httpx.get(f"{srv.url}/sessions/{run['session_id']}/messages").status_code == 404
    assert httpx.get(f"{srv.url}/messages/{run['message_id']}/trace").status_code == 404


def _think_and_call(finish: bool) -> list:
    steps = [sse(chat_chunk({"role": "assistant", "content": ""})),
             sse(chat_chunk({"reasoning_content": "deep"})), sse(chat_chunk({"reasoning_content": "er"})),
             sse(chat_chunk({"content": "Let me check."})),
             sse(chat_chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                                             "function": {"name": "get_weather", "arguments": ""}}]})),
             sse(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]})),
             sse(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}))]
    return steps + ([sse(chat_chunk({}, "tool_calls")), b"data: [DONE]\n\n"] if finish else [HANG])


def test_reasoning_and_tool_calls_are_stored_complete_or_partial(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-tools", _think_and_call(finish=True))
    msg = httpx.post(f"{srv.url}/chat", json={"message": "weather?", "model": "up/c-tools"},
                     timeout=10).json()["message"]
    assert msg["finish_reason"] == "tool_calls"
    assert msg["parts"] == [{"type": "reasoning", "text": "deeper"}, {"type": "text", "text": "Let me check."},
                            {"type": "tool_call", "call_id": "call_A", "name": "get_weather",
                             "arguments": '{"city":"Oslo"}'}]
    # stopped while the call's arguments were still arriving: what arrived is kept, marked partial
    upstream.add("c-tools", _think_and_call(finish=False))
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "again", "model": "up/c-tools"},
                      timeout=10) as resp:
        lines = resp.iter_lines()
        run, events = read_sse(lines, limit=1)
        while not any(e["type"] == "tool-input-delta" and e["delta"] == '"Oslo"}' for _, e in events):
            events += read_sse(lines, limit=1)[1]
        stopped = httpx.post(f"{srv.url}/runs/{run['run_id']}/stop", timeout=10).json()["message"]
    assert stopped["status"] == "interrupted"
    assert stopped["parts"] == [{"type": "reasoning", "text": "deeper"}, {"type": "text", "text": "Let me check."},
                                {"type": "tool_call", "call_id": "call_A", "name": "get_weather",
                                 "arguments": '{"city":"Oslo"}', "partial": True}]
    md = httpx.get(f"{srv.url}/sessions/{run['session_id']}/export", params={"format": "md"}).text
    assert "> deeper" in md and "Tool call `get_weather`" in md and "_(interrupted)_" in md


def test_a_rate_limited_key_can_chat_and_its_run_is_counted(upstream, make_server, tmp_path):
    # a key with limits wraps the recorder (server/auth.py): the run must still stream and be saved
    admin = "admin-for-chat-test"
    srv = make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/keyed.db"},
                      server={"admin_key": admin, "keepalive": 15}, runs={"shutdown_grace": 0})
    made = httpx.post(f"{srv.url}/admin/keys", json={"name": "limited", "tpm": 100000, "max_concurrent_streams": 1},
                      headers={"authorization": f"Bearer {admin}"})
    assert made.status_code == 201, made.text
    auth = {"authorization": f"Bearer {made.json()['key']}"}
    upstream.add("c-keyed", chat_text_stream(["counted ", "answer"], usage=usage_wire(3, 2)))
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "hi", "model": "up/c-keyed"},
                      headers=auth, timeout=10) as resp:
        assert resp.status_code == 200
        run, events = read_sse(resp)
    assert events[-1][1]["type"] == "finish" and text_of(events) == "counted answer"
    stored = httpx.get(f"{srv.url}/sessions/{run['session_id']}/messages", headers=auth).json()["data"]
    assert (stored[1]["status"], stored[1]["text"]) == ("complete", "counted answer")
    # the concurrent-stream slot was given back when the run ended
    r = httpx.post(f"{srv.url}/chat", json={"message": "again", "model": "up/c-keyed"}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text


def test_truncate_from_a_message_then_ask_again(upstream, chat_server):
    """Regenerate / edit and resend: delete from a message on, then send the question again."""
    srv = chat_server()
    upstream.add("c-trunc", chat_text_stream(["answer one"]))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "one", "model": "up/c-trunc"}, timeout=10).json()["session_id"]
    upstream.add("c-trunc", chat_text_stream(["answer two"]))
    second = httpx.post(f"{srv.url}/chat", json={"message": "two", "session_id": sid}, timeout=10).json()
    before = messages(srv, sid)
    assert [m["text"] for m in before] == ["one", "answer one", "two", "answer two"]
    r = httpx.delete(f"{srv.url}/sessions/{sid}/messages", params={"from": second["user_message_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == [second["user_message_id"], second["message_id"]]
    assert [m["text"] for m in messages(srv, sid)] == ["one", "answer one"]
    assert httpx.get(f"{srv.url}/messages/{second['message_id']}/trace").status_code == 404  # traces go too
    upstream.add("c-trunc", chat_text_stream(["answer two, edited"]))
    again = httpx.post(f"{srv.url}/chat", json={"message": "two, edited", "session_id": sid}, timeout=10)
    assert again.status_code == 200
    sent = upstream.last("c-trunc").body["messages"]  # the deleted turn is not in the context
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "one"), ("assistant", "answer one"), ("user", "two, edited")]
    assert [m["text"] for m in messages(srv, sid)] == ["one", "answer one", "two, edited", "answer two, edited"]


def test_truncate_refuses_while_a_run_is_active_and_bad_input(upstream, chat_server):
    srv = chat_server()
    upstream.add("c-trunc-live", [sse(chat_chunk({"role": "assistant", "content": ""})),
                                  sse(chat_chunk({"content": "busy"})), HANG])
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "x", "model": "up/c-trunc-live"},
                      timeout=10) as resp:
        lines = resp.iter_lines()
        run, _ = read_sse(lines, limit=2)
        sid = run["session_id"]
        r = httpx.delete(f"{srv.url}/sessions/{sid}/messages", params={"from": run["user_message_id"]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "run_active"
        assert len(messages(srv, sid)) == 2  # nothing deleted
        assert httpx.post(f"{srv.url}/runs/{run['run_id']}/stop", timeout=10).status_code == 200
        read_sse(lines)
    r = httpx.delete(f"{srv.url}/sessions/{sid}/messages", params={"from": run["message_id"]})
    assert r.status_code == 200 and r.json()["deleted"] == [run["message_id"]]  # just the stopped answer
    assert [m["role"] for m in messages(srv, sid)] == ["user"]
    assert httpx.delete(f"{srv.url}/sessions/{sid}/messages").status_code == 400  # no 'from'
    r = httpx.delete(f"{srv.url}/sessions/{sid}/messages", params={"from": "not-in-this-session"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "message_not_found"
    assert httpx.delete(f"{srv.url}/sessions/nope/messages", params={"from": "x"}).status_code == 404
