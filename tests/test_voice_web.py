"""Voice mode in the browser: Debian's chromium (headless, fake audio devices)
turns voice on, and while the answer is still being written the page
receives the audio over the voice WebSocket, schedules it back to back in
order, highlights the sentence being heard, and on Stop silences every
scheduled chunk at once while the server stops the answer and keeps it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest

from sluiceway.server.app import create_app

from .conftest import IN_CI, ServerThread, make_config
from .upstream import HANG, chat_chunk, chat_text_stream, sse

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required"]

if not os.path.exists(CHROMIUM) or shutil.which("espeak-ng") is None:
    if IN_CI:
        raise RuntimeError("chromium and espeak-ng are required in CI (scripts/test.sh installs them)")
    pytest.skip("chromium or espeak-ng is missing", allow_module_level=True)

from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(90)
SENTENCES = ["Rivers find the lowest path.", "A sluice gate holds the water back.",
             "Then it lets the water through, a little at a time."]


@pytest.fixture(scope="module")
def srv(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    steps = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    steps += [sse(chat_chunk({"content": s + " "})) for s in SENTENCES]
    upstream.add("ui-voice", [*steps, sse(chat_chunk({"content": "And more is coming"})), HANG])
    upstream.add("ui-voice-local", chat_text_stream([s + " " for s in SENTENCES[:2]]))
    db = tmp_path_factory.mktemp("voice-ui") / "chat.db"
    cfg = make_config(upstream, store={"url": f"sqlite+aiosqlite:///{db}"},
                      voice={"chunker": {"max_wait": 30.0}})  # the unfinished tail is never flushed mid-test
    s = ServerThread(create_app(cfg)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_page_plays_the_answer_while_it_is_written_and_stops_on_barge_in(browser, srv, upstream):
    ctx = browser.new_context()
    page = ctx.new_page()
    errors: list = []
    page.on("pageerror", lambda e: errors.append(e))
    try:
        page.goto(f"{srv.url}/")
        page.wait_for_selector("html[data-ready]", timeout=15000)
        options = page.locator("#model option").all_inner_texts()
        assert "espeak" not in options  # a voice is not a chat model
        page.click("#voice-toggle")
        expect(page.locator("#voice-toggle")).to_have_attribute("aria-pressed", "true")
        page.wait_for_function("() => window.sluicewayVoice.ws && window.sluicewayVoice.ws.readyState === 1")
        page.select_option("#model", "up/ui-voice")
        page.fill("#input", "Tell me about sluices")
        page.press("#input", "Enter")

        # every sentence is received and scheduled, and the first is being heard
        page.wait_for_function(
            f"() => new Set(window.sluicewayVoice.stats.scheduled.map(c => c.seq)).size === {len(SENTENCES)}"
            " && window.sluicewayVoice.stats.sentencesHeard.length > 0", timeout=30000, polling=50)
        # the caption and the highlight in the message show the sentence being heard (read in one go)
        seen = page.evaluate("() => ({caption: document.getElementById('voice-caption').textContent,"
                             " marked: CSS.highlights.get('sluiceway-speaking').values().next().value.toString(),"
                             " heard: window.sluicewayVoice.stats.sentencesHeard.at(-1)})")
        assert seen["caption"] == seen["marked"] == SENTENCES[seen["heard"]]
        chunks = page.evaluate("window.sluicewayVoice.stats.scheduled")
        assert [c["seq"] for c in chunks] == sorted(c["seq"] for c in chunks)  # in order
        for a, b in zip(chunks, chunks[1:], strict=False):  # back to back on the audio clock: gapless
            assert abs(b["start"] - (a["start"] + a["duration"])) < 1e-6
        total = sum(c["duration"] for c in chunks)
        assert total > 3.0  # three spoken sentences, far longer than the time this took to arrive
        assert page.evaluate("window.sluicewayVoice.playing")

        # barge-in: Stop silences every scheduled chunk at once and stops the answer
        page.click("#stop")
        state = page.evaluate("() => ({playing: window.sluicewayVoice.playing,"
                              " stopped: window.sluicewayVoice.stats.stoppedSources,"
                              " caption: document.getElementById('voice-caption').hidden})")
        assert state["playing"] is False and state["caption"] is True
        assert state["stopped"] >= 1  # cut off mid-answer, not after it had finished
        # every chunk scheduled before the stop either played or was stopped; nothing came after it
        page.wait_for_function("() => { const s = window.sluicewayVoice.stats;"
                               " return s.played + s.stoppedSources === s.scheduled.length; }", polling=50)
        after = page.evaluate("() => window.sluicewayVoice.stats")
        assert after["played"] < len(after["scheduled"])
        expect(page.locator("#messages .msg.assistant").last).to_have_attribute("data-status", "stopped",
                                                                                 timeout=10000)
        assert upstream.last("ui-voice").wait_closed(5.0)
        assert not errors, errors
    finally:
        ctx.close()
    sessions = httpx.get(f"{srv.url}/sessions").json()
    sessions = sessions.get("data", sessions) if isinstance(sessions, dict) else sessions
    msgs = httpx.get(f"{srv.url}/sessions/{sessions[0]['id']}/messages").json()
    msgs = msgs.get("data", msgs) if isinstance(msgs, dict) else msgs
    answer = [m for m in msgs if m["role"] == "assistant"][-1]
    assert answer["status"] == "interrupted"
    assert answer["text"].startswith(" ".join(SENTENCES))


def test_hands_free_the_user_speaking_interrupts_the_answer(browser, srv, upstream):
    """Chromium's fake microphone beeps: hands-free hears it as speech, which stops
    the answer being spoken and sends the utterance to the recogniser."""
    ctx = browser.new_context(permissions=["microphone"])
    page = ctx.new_page()
    errors: list = []
    page.on("pageerror", lambda e: errors.append(e))
    try:
        page.goto(f"{srv.url}/")
        page.wait_for_selector("html[data-ready]", timeout=15000)
        page.click("#voice-toggle")
        page.wait_for_function("() => window.sluicewayVoice.ws && window.sluicewayVoice.ws.readyState === 1")
        page.select_option("#model", "up/ui-voice")
        page.fill("#input", "Tell me again")
        page.press("#input", "Enter")
        page.wait_for_function("() => window.sluicewayVoice.stats.sentencesHeard.length > 0", timeout=30000,
                               polling=50)
        assert page.evaluate("window.sluicewayVoice.playing")
        page.evaluate("() => { window.sluicewayVoice.endOfSpeechMs = 250; }")  # the fake mic beeps every 0.5 s
        page.click("#voice-handsfree")
        expect(page.locator("#voice-handsfree")).to_have_attribute("aria-pressed", "true")
        page.wait_for_function("() => window.sluicewayVoice.stats.heardSpeech > 0", timeout=20000, polling=50)
        assert not page.evaluate("window.sluicewayVoice.playing")  # the user spoke: silence at once
        assert page.evaluate("window.sluicewayVoice.stats.stops") >= 1
        page.wait_for_function("() => window.sluicewayVoice.stats.transcripts.length > 0", timeout=20000, polling=50)
        assert not errors, errors
    finally:
        ctx.close()
    assert upstream.last("ui-voice").wait_closed(5.0)  # the barge-in stopped the generation too


def test_browser_stored_chats_stream_their_text_to_the_voice(browser, srv):
    """With chats kept in the browser there is no server run to follow: the
    page sends the text deltas over the session and hears every sentence."""
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(f"{srv.url}/?store=local")
        page.wait_for_selector("html[data-ready]", timeout=15000)
        page.click("#voice-toggle")
        page.wait_for_function("() => window.sluicewayVoice.ws && window.sluicewayVoice.ws.readyState === 1")
        page.select_option("#model", "up/ui-voice-local")
        page.fill("#input", "Say two things")
        page.press("#input", "Enter")
        page.wait_for_function("() => window.sluicewayVoice.stats.done === 1", timeout=30000, polling=50)
        stats = page.evaluate("window.sluicewayVoice.stats")
        assert stats["sentences"] == SENTENCES[:2]
        seqs = [c["seq"] for c in stats["scheduled"]]
        assert seqs == sorted(seqs) and set(seqs) == {0, 1}
        assert sum(c["duration"] for c in stats["scheduled"]) > 3.0
    finally:
        ctx.close()


def test_push_to_talk_sends_the_microphone_to_the_recogniser(browser, srv):
    pytest.importorskip("pocketsphinx")
    ctx = browser.new_context(permissions=["microphone"])
    page = ctx.new_page()
    try:
        page.goto(f"{srv.url}/")
        page.wait_for_selector("html[data-ready]", timeout=15000)
        page.click("#voice-toggle")
        page.wait_for_function("() => window.sluicewayVoice.ws && window.sluicewayVoice.ws.readyState === 1")
        mic = page.locator("#voice-mic")
        expect(mic).to_be_visible()
        box = mic.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        expect(mic).to_have_class(re.compile(r"\bon\b"))
        page.wait_for_function("() => window.sluicewayVoice.mic !== null && window.sluicewayVoice.mic !== undefined",
                               polling=50)
        page.mouse.up()
        expect(mic).not_to_have_class(re.compile(r"\bon\b"))
        page.wait_for_function("() => window.sluicewayVoice.stats.transcripts.length === 1", timeout=20000, polling=50)
        assert page.evaluate("window.sluicewayVoice.mic") is None  # the microphone is released
    finally:
        ctx.close()
