"""Session chat with images and with tool calls the client answers, over real
sockets (the fake upstream, sluiceway under uvicorn, a SQLite file): what the
web UI's attachments and tool-call cards rely on.

- ``message`` may be ``{"role": "user", "content": [text and image_url parts]}``:
  the images are stored with the user turn and sent upstream, in this turn
  and as history in later ones.
- ``tool_results`` answer the calls the session's last answer ended with; the
  model goes on from them (``/chat``), or they are only recorded
  (``POST /sessions/{id}/tool-results``, a dismissal). A call is replayed
  upstream only with its result, so the history stays valid for strict
  upstreams."""

from __future__ import annotations

import httpx
import pytest

from .upstream import Script, chat_chunk, chat_text_stream, sse

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/HwADAgH/eL9zJQAAAABJ"
       "RU5ErkJggg==")


def tool_call_stream(call_id: str = "call_1", name: str = "get_weather", args: str = '{"city": "Oslo"}') -> list:
    return [sse(chat_chunk({"role": "assistant", "content": ""})),
            sse(chat_chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                             "function": {"name": name, "arguments": args}}]})),
            sse(chat_chunk({}, "tool_calls")), b"data: [DONE]\n\n"]


def then_text(first: list, *texts: str) -> Script:
    """``first`` once, then each of ``texts`` as a plain answer (the last one for good)."""
    script = Script(chat_text_stream([texts[-1]]))
    for t in reversed(texts[:-1]):
        script = Script(chat_text_stream([t]), times=1, then=script)
    return Script(first, times=1, then=script)


@pytest.fixture
def srv(make_server, tmp_path):
    return make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/tools.db"})


def stored(srv, sid: str) -> list[dict]:
    return httpx.get(f"{srv.url}/sessions/{sid}/messages").json()["data"]


def test_images_are_stored_with_the_turn_and_sent_upstream_as_history_too(upstream, srv):
    upstream.add("ti-img", chat_text_stream(["A red dot."]), times=None)
    msg = {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                       {"type": "image_url", "image_url": {"url": PNG}}]}
    r = httpx.post(f"{srv.url}/chat", json={"message": msg, "model": "up/ti-img"}, timeout=10)
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert upstream.last("ti-img").body["messages"][-1]["content"] == [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]
    user = stored(srv, sid)[0]
    assert user["parts"] == [{"type": "text", "text": "What is this?"}, {"type": "image", "url": PNG}]
    assert user["text"] == "What is this?"
    # an image alone is a message too; the first turn's image goes upstream again as history
    alone = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}
    r = httpx.post(f"{srv.url}/chat", json={"message": alone, "session_id": sid}, timeout=10)
    assert r.status_code == 200, r.text
    sent = upstream.last("ti-img").body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"][1] == {"type": "image_url", "image_url": {"url": PNG}}
    assert sent[2]["content"] == [{"type": "image_url", "image_url": {"url": PNG}}]
    assert httpx.get(f"{srv.url}/sessions/{sid}").json()["title"] == "What is this?"


@pytest.mark.parametrize("message", [
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "javascript:alert(1)"}}]},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/html;base64,PGI+"}}]},
    {"role": "user", "content": [{"type": "audio", "data": "x"}]},
    {"role": "user", "content": []},
    {"role": "assistant", "content": "hi"},
])
def test_bad_image_messages_are_400_and_write_nothing(upstream, srv, message):
    r = httpx.post(f"{srv.url}/chat", json={"message": message, "model": "up/ti-img"}, timeout=10)
    assert r.status_code == 400, r.text
    assert httpx.get(f"{srv.url}/sessions").json()["data"] == []


def test_a_tool_result_lets_the_model_go_on_with_a_valid_history(upstream, srv):
    upstream.add("ti-tool", then_text(tool_call_stream(), "It is 12 °C in Oslo."))
    r = httpx.post(f"{srv.url}/chat", json={"message": "Weather in Oslo?", "model": "up/ti-tool"}, timeout=10)
    first = r.json()
    assert first["message"]["finish_reason"] == "tool_calls"
    sid = first["session_id"]
    r = httpx.post(f"{srv.url}/chat", json={"session_id": sid, "tool_results": [
        {"tool_call_id": "call_1", "content": "12 °C, cloudy"}]}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "It is 12 °C in Oslo."
    assert "user_message_id" not in body and body["user_message"] is None
    sent = upstream.last("ti-tool").body["messages"]
    assert sent[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 °C, cloudy"}]
    rows = stored(srv, sid)
    assert [m["role"] for m in rows] == ["user", "assistant", "tool", "assistant"]
    assert rows[2]["id"] == body["tool_message_id"]
    assert rows[2]["parts"] == [{"type": "tool_result", "call_id": "call_1", "name": "get_weather",
                                 "output": "12 °C, cloudy", "is_error": False}]
    # answered once: a second answer to the same call is refused, and nothing is written
    r = httpx.post(f"{srv.url}/chat", json={"session_id": sid, "tool_results": [
        {"tool_call_id": "call_1", "content": "again"}]}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "tool_call_not_pending"
    assert len(stored(srv, sid)) == 4


def test_a_dismissal_is_recorded_without_the_model_and_the_next_turn_stays_valid(upstream, srv):
    upstream.add("ti-dismiss", then_text(tool_call_stream("call_D"), "Hi!"))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "Weather?", "model": "up/ti-dismiss"},
                     timeout=10).json()["session_id"]
    asked = len(upstream.for_model("ti-dismiss"))
    r = httpx.post(f"{srv.url}/sessions/{sid}/tool-results", json={"tool_results": [
        {"tool_call_id": "call_D", "content": "The user dismissed it.", "dismissed": True}]})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "tool" and r.json()["parts"][0]["dismissed"] is True
    assert len(upstream.for_model("ti-dismiss")) == asked  # the model was not asked
    again = httpx.post(f"{srv.url}/sessions/{sid}/tool-results", json={"tool_results": [
        {"tool_call_id": "call_D", "content": "twice"}]})
    assert again.status_code == 400
    r = httpx.post(f"{srv.url}/chat", json={"message": "Never mind, say hi.", "session_id": sid}, timeout=10)
    assert r.json()["content"] == "Hi!"
    sent = upstream.last("ti-dismiss").body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2] == {"role": "tool", "tool_call_id": "call_D", "content": "The user dismissed it."}


def test_an_unanswered_call_is_left_out_of_the_history(upstream, srv):
    upstream.add("ti-skip", then_text(tool_call_stream("call_S"), "Sure."))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "Weather?", "model": "up/ti-skip"},
                     timeout=10).json()["session_id"]
    r = httpx.post(f"{srv.url}/chat", json={"message": "Something else.", "session_id": sid}, timeout=10)
    assert r.status_code == 200
    # the answer had no text and its call no result: nothing of it goes upstream
    assert [m["role"] for m in upstream.last("ti-skip").body["messages"]] == ["user", "user"]
    # and its call can no longer be answered: the chat went on
    r = httpx.post(f"{srv.url}/sessions/{sid}/tool-results", json={"tool_results": [
        {"tool_call_id": "call_S", "content": "late"}]})
    assert r.status_code == 400


def test_tool_results_and_a_message_in_one_turn(upstream, srv):
    upstream.add("ti-both", then_text(tool_call_stream("call_B"), "OK."))
    sid = httpx.post(f"{srv.url}/chat", json={"message": "Weather?", "model": "up/ti-both"},
                     timeout=10).json()["session_id"]
    r = httpx.post(f"{srv.url}/chat", json={"session_id": sid, "message": "Skip that.", "tool_results": [
        {"tool_call_id": "call_B", "content": "dismissed", "dismissed": True}]}, timeout=10)
    assert r.status_code == 200, r.text
    assert [m["role"] for m in stored(srv, sid)] == ["user", "assistant", "tool", "user", "assistant"]
    assert [m["role"] for m in upstream.last("ti-both").body["messages"]] == ["user", "assistant", "tool", "user"]


@pytest.mark.parametrize("body", [
    {"tool_results": [{"tool_call_id": "call_1", "content": "x"}], "model": "up/ti-img"},  # no session
    {"tool_results": []},
    {"tool_results": [{"tool_call_id": "", "content": "x"}]},
    {"tool_results": [{"tool_call_id": "c", "content": 3}]},
    {"tool_results": [{"tool_call_id": "c", "content": "x", "dismissed": "yes"}]},
    {"tool_results": [{"tool_call_id": "c", "content": "x"}, {"tool_call_id": "c", "content": "y"}]},
    {"tool_results": [{"role": "user", "tool_call_id": "c", "content": "x"}]},
])
def test_bad_tool_results_are_400(upstream, srv, body):
    r = httpx.post(f"{srv.url}/chat", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert httpx.get(f"{srv.url}/sessions").json()["data"] == []


def test_tool_results_for_a_session_without_calls_are_400(upstream, srv):
    upstream.add("ti-plain", chat_text_stream(["plain"]), times=None)
    sid = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/ti-plain"},
                     timeout=10).json()["session_id"]
    one = [{"tool_call_id": "x", "content": "y"}]
    for url, body in [(f"{srv.url}/chat", {"session_id": sid, "tool_results": one}),
                      (f"{srv.url}/sessions/{sid}/tool-results", {"tool_results": one}),
                      (f"{srv.url}/sessions/{sid}/tool-results", {"tool_results": one, "extra": 1}),
                      (f"{srv.url}/sessions/{sid}/tool-results", [])]:
        r = httpx.post(url, json=body, timeout=10)
        assert r.status_code == 400, (url, body, r.text)
    assert len(stored(srv, sid)) == 2
    assert httpx.post(f"{srv.url}/sessions/nope/tool-results", json={"tool_results": [
        {"tool_call_id": "x", "content": "y"}]}).status_code == 404
