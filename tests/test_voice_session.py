"""Voice mode on chat streams: the WebSocket session (``/v1/voice``) and the
SSE speech of a run (``/v1/voice/runs/{id}``) against the scripted fake
upstream, with the embedded eSpeak NG voice. Every sentence gets audio, in
order; barge-in stops the audio and the generation and the partial answer
is stored as interrupted; the microphone path transcribes offline."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from sluiceway.providers.speech import parse_wav
from sluiceway.providers.speech.audio import to_mono_rate

from .conftest import IN_CI
from .upstream import HANG, chat_chunk, chat_text_stream, sse

if shutil.which("espeak-ng") is None:
    if IN_CI:
        pytest.fail("espeak-ng must be installed in CI (scripts/test.sh installs it)")
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

SENTENCES = ["Good morning, and welcome to the show.", "Today we talk about rivers and sluices.",
             "今天我们也说中文。", "Numbers like 3.14 stay whole, as does Dr. Who.", "That is all for now!"]


@pytest.fixture
def srv(make_server, tmp_path):
    return make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/voice.db"},
                       voice={"chunker": {"min_chars": 8, "max_wait": 5.0, "first_wait": 5.0}})


def start_chat(srv, model: str) -> dict[str, Any]:
    """POST /chat/stream and read only its first frame (the run's ids); the run goes on server-side."""
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "talk", "model": model},
                      timeout=10) as r:
        assert r.status_code == 200, r.read()
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                return json.loads(line[6:])
    raise AssertionError("no run frame")


def ws_url(srv) -> str:
    return srv.url.replace("http://", "ws://") + "/v1/voice"


def collect(ws, until: str) -> list[Any]:
    """Messages (dicts; audio as (seq, rate, bytes)) up to and including type ``until``."""
    out: list[Any] = []
    while True:
        msg = ws.recv(timeout=30)
        if isinstance(msg, bytes):
            job, seq, rate = struct.unpack(">III", msg[:12])
            out.append((seq, rate, msg[12:], job))
            continue
        doc = json.loads(msg)
        out.append(doc)
        if doc["type"] == until:
            return out
        assert doc["type"] != "error", doc


def check_order(msgs: list[Any]) -> dict[int, bytes]:
    """Each piece: sentence, its audio, sentence.end with the byte count; pieces in sequence."""
    audio: dict[int, bytes] = {}
    current = None
    for m in msgs:
        if isinstance(m, tuple):
            assert m[0] == current and m[1] == 22050
            audio[current] = audio.get(current, b"") + m[2]
        elif m["type"] == "sentence":
            assert current is None and m["seq"] == len(audio)
            current = m["seq"]
            audio[current] = b""
        elif m["type"] == "sentence.end":
            assert m["seq"] == current and m["bytes"] == len(audio[current])
            current = None
    return audio


def test_every_sentence_of_a_chat_answer_is_spoken_in_order(srv, upstream):
    pieces = [c for s in SENTENCES for c in (s[: len(s) // 2], s[len(s) // 2:] + " ")]
    upstream.add("v-all", chat_text_stream(pieces, delay=0.01))
    run = start_chat(srv, "up/v-all")
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "follow", "run_id": run["run_id"], "voice": "alloy"}))
        msgs = collect(ws, "done")
    spoken = [m["text"] for m in msgs if isinstance(m, dict) and m["type"] == "sentence"]
    assert spoken == SENTENCES
    audio = check_order(msgs)
    for seq, pcm in audio.items():
        words = max(1, len(SENTENCES[seq].split()))
        assert len(pcm) / 2 / 22050 > 0.15 * words, seq  # real speech, not a click
    assert msgs[-1] == {"type": "done", "job": 1, "run_id": run["run_id"], "sentences": len(SENTENCES)}
    assert msgs[0] == {"type": "started", "job": 1, "run_id": run["run_id"]}
    assert {m[3] for m in msgs if isinstance(m, tuple)} == {1}


def test_barge_in_stops_audio_and_generation_and_keeps_the_partial_answer(srv, upstream):
    first = "This is the first sentence of a long answer. "
    upstream.add("v-barge", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": first})),
                             sse(chat_chunk({"content": "And this one is never finish"})), HANG])
    run = start_chat(srv, "up/v-barge")
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "follow", "run_id": run["run_id"]}))
        before = collect(ws, "sentence.end")
        assert [m["text"] for m in before if isinstance(m, dict) and m["type"] == "sentence"] == [first.strip()]
        assert any(isinstance(m, tuple) for m in before)
        ws.send(json.dumps({"type": "stop"}))
        stopped = json.loads(next(m for m in iter(lambda: ws.recv(timeout=10), None) if isinstance(m, str)
                                  and json.loads(m)["type"] == "stopped"))
        assert stopped["run_id"] == run["run_id"] and stopped["run_stopped"] is True
        ws.send(json.dumps({"type": "hello"}))
        nxt = ws.recv(timeout=10)  # nothing of the old answer may come between "stopped" and this reply
        assert isinstance(nxt, str) and json.loads(nxt)["type"] == "ready"
    assert upstream.last("v-barge").wait_closed(2.0), "the upstream was not closed by the barge-in"
    msgs = httpx.get(f"{srv.url}/sessions/{run['session_id']}/messages").json()
    msgs = msgs.get("data", msgs) if isinstance(msgs, dict) else msgs
    answer = [m for m in msgs if m["role"] == "assistant"][0]
    assert answer["status"] == "interrupted"
    assert answer["text"] == first + "And this one is never finish"


def test_run_speech_over_sse_sends_every_sentence_and_base64_audio(srv, upstream):
    upstream.add("v-sse", chat_text_stream([s + " " for s in SENTENCES[:3]]))
    run = start_chat(srv, "up/v-sse")
    with httpx.stream("GET", f"{srv.url}/v1/voice/runs/{run['run_id']}", timeout=30) as r:
        assert r.status_code == 200
        events = [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ")]
    assert [e["text"] for e in events if e["type"] == "speech.sentence"] == SENTENCES[:3]
    assert events[-1] == {"type": "speech.audio.done", "sentences": 3}
    import base64

    for seq in range(3):
        pcm = b"".join(base64.b64decode(e["audio"]) for e in events
                       if e["type"] == "speech.audio.delta" and e["seq"] == seq)
        done = next(e for e in events if e["type"] == "speech.sentence.done" and e["seq"] == seq)
        assert len(pcm) == done["bytes"] > 22050  # over half a second each
    assert httpx.get(f"{srv.url}/v1/voice/runs/nope").status_code == 404


def test_speak_text_and_transcribe_the_microphone(srv):
    pytest.importorskip("pocketsphinx")
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us+m3", "-s", "160", "one two three four five"],
                         capture_output=True, timeout=30).stdout
    rate, _, pcm = parse_wav(wav)
    mic = to_mono_rate(pcm, rate, 1, 16000)
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "speak", "text": "Hello from the embedded voice. It needs no key."}))
        msgs = collect(ws, "done")
        assert [m["text"] for m in msgs if isinstance(m, dict) and m["type"] == "sentence"] == [
            "Hello from the embedded voice.", "It needs no key."]
        ws.send(json.dumps({"type": "listen", "sample_rate": 16000}))
        for i in range(0, len(mic), 3200):  # 100 ms frames, as a page sends them
            ws.send(mic[i:i + 3200])
        ws.send(json.dumps({"type": "listen.end"}))
        msg = json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"type": "listen"}))  # a press too short to say anything
        ws.send(json.dumps({"type": "listen.end"}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "transcript", "text": ""}
    assert msg["type"] == "transcript"
    assert len(set(msg["text"].split()) & {"one", "two", "three", "four", "five"}) >= 3, msg


def test_text_streamed_by_the_client_is_spoken_as_it_arrives(srv):
    with connect(ws_url(srv)) as ws:
        for piece in ["Streamed by the ", "page itself. And ", "spoken as it ", "comes in."]:
            ws.send(json.dumps({"type": "text", "delta": piece}))
        first = collect(ws, "sentence.end")  # the first sentence is spoken before the text has ended
        assert [m["text"] for m in first if isinstance(m, dict) and m["type"] == "sentence"] == [
            "Streamed by the page itself."]
        ws.send(json.dumps({"type": "text.end"}))
        rest = collect(ws, "done")
    check_order(first + rest)
    assert [m["text"] for m in rest if isinstance(m, dict) and m["type"] == "sentence"] == ["And spoken as it comes in."]
    assert rest[-1]["sentences"] == 2


def test_session_errors_and_guards(make_server, tmp_path):
    srv = make_server(server={"api_keys": ["sk-voice"]}, store={"url": f"sqlite+aiosqlite:///{tmp_path}/g.db"})
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "speak", "text": "hi"}))
        assert json.loads(ws.recv(timeout=10))["status"] == 401
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "hello", "api_key": "sk-voice"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        for bad, status in [("not json", 400), (json.dumps({"type": "dance"}), 400),
                            (json.dumps({"type": "follow", "run_id": "missing"}), 404),
                            (json.dumps({"type": "speak", "text": "x", "model": "nope"}), 404),
                            (json.dumps({"type": "speak", "text": "x", "speed": 10}), 400),
                            (json.dumps({"type": "listen.end"}), 400)]:
            ws.send(bad)
            err = json.loads(ws.recv(timeout=10))
            assert err["type"] == "error" and err["status"] == status, bad
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus), connect(ws_url(srv), origin="http://evil.example"):
        pass  # another site's page may not open the session


def test_a_chat_turn_can_ask_for_speech_alongside_the_text(srv, upstream):
    import base64

    upstream.add("v-chat", chat_text_stream([s + " " for s in SENTENCES[:3]], delay=0.01))
    frames = []
    with httpx.stream("POST", f"{srv.url}/v1/voice/chat?voice=nova", json={"message": "hi", "model": "up/v-chat"},
                      timeout=30) as r:
        assert r.status_code == 200 and r.headers["x-run-id"]
        block: dict[str, str] = {}
        for line in r.iter_lines():
            if line == "":
                if block:
                    frames.append(block)
                block = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                block[k] = v
    assert frames[0]["event"] == "run"
    text_events = [(int(f["id"]), json.loads(f["data"])) for f in frames if "id" in f]
    speech = [json.loads(f["data"]) for f in frames if f.get("event") == "speech"]
    assert [n for n, _ in text_events] == list(range(1, len(text_events) + 1))  # numbered as on /chat/stream
    assert "".join(e.get("delta", "") for _, e in text_events if e["type"] == "text-delta") == \
        "".join(s + " " for s in SENTENCES[:3])
    assert text_events[-1][1]["type"] == "finish"
    assert [e["text"] for e in speech if e["type"] == "speech.sentence"] == SENTENCES[:3]
    for seq in range(3):
        pcm = b"".join(base64.b64decode(e["audio"]) for e in speech
                       if e["type"] == "speech.audio.delta" and e["seq"] == seq)
        assert len(pcm) > 22050
    assert speech[-1] == {"type": "speech.audio.done", "sentences": 3}
    bad = httpx.post(f"{srv.url}/v1/voice/chat?model=nope", json={"message": "hi", "model": "up/v-chat"})
    assert bad.status_code == 404


def test_only_the_key_that_started_a_run_may_hear_or_stop_it(make_server, upstream, tmp_path):
    admin = "admin-for-voice"
    srv = make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/own.db"}, server={"admin_key": admin})
    keys = []
    for _ in range(2):
        r = httpx.post(f"{srv.url}/admin/keys", json={"name": "v"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        keys.append(r.json()["key"])
    upstream.add("v-own", [sse(chat_chunk({"role": "assistant", "content": ""})),
                           sse(chat_chunk({"content": "Private words for one key only. "})), HANG])
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "x", "model": "up/v-own"},
                      headers={"authorization": f"Bearer {keys[0]}"}, timeout=10) as r:
        run = next(json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: "))
    other = {"authorization": f"Bearer {keys[1]}"}
    assert httpx.get(f"{srv.url}/v1/voice/runs/{run['run_id']}", headers=other).status_code == 404
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "hello", "api_key": keys[1]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "follow", "run_id": run["run_id"]}))
        assert json.loads(ws.recv(timeout=10))["status"] == 404
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"type": "hello", "api_key": keys[0]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "follow", "run_id": run["run_id"]}))
        assert [m["text"] for m in collect(ws, "sentence.end") if isinstance(m, dict) and m["type"] == "sentence"] \
            == ["Private words for one key only."]
        ws.send(json.dumps({"type": "stop"}))
        stopped = next(d for d in (json.loads(m) for m in iter(lambda: ws.recv(timeout=10), None)
                                   if isinstance(m, str)) if d["type"] == "stopped")
        assert stopped["run_stopped"] is True
