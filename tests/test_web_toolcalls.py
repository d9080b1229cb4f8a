"""A tool call the browser chat UI cannot run (toolcalls.js), in Debian's
chromium driven by Playwright against the scripted fake upstream: the model
ends its answer with a call to a client tool; the page shows it as a card
(name, pretty arguments, a note that it cannot run it) with Answer and
Dismiss. Answer sends the typed result back as a tool message with the call's
id and the model goes on; Dismiss records a result saying so without asking
the model, so the next question's history is valid. Both in a chat kept in
the browser and in one stored on the server, and both survive a reload.
The fixtures are test_web_ui's."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sluiceway.server.app import create_app

from .conftest import ServerThread
from .test_sessions_tools_images import then_text, tool_call_stream
from .test_web_ui import (  # noqa: F401 (fixtures)
    _config,
    ask,
    browser,
    last_reply,
    open_page,
    shot,
    ui,
    wait_for_requests,
    wait_status,
)
from .upstream import chat_chunk, sse

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

MODEL = "ui-client-tool"
TWO = "ui-client-two"
ARGS = '{"city": "Oslo", "unit": "C"}'
DISMISSED = "The user dismissed this tool call: it was not run and there is no result."


def call_wire(call_id: str, args: str = ARGS) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}


def two_calls() -> list:
    calls = [{"index": i, "id": f"call_{c}", "type": "function", "function": {"name": name, "arguments": args}}
             for i, (c, name, args) in enumerate([("A", "get_weather", ARGS), ("B", "get_time", '{"tz": "CET"}')])]
    return [sse(chat_chunk({"role": "assistant", "content": "Checking both."})), sse(chat_chunk({"tool_calls": calls})),
            sse(chat_chunk({}, "tool_calls")), b"data: [DONE]\n\n"]


@pytest.fixture(scope="module")
def tools_ui(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    for name in (MODEL, TWO):  # registered before the server lists its models
        upstream.add(name, tool_call_stream())
    srv = ServerThread(create_app(_config(upstream, tmp_path_factory.mktemp("tools") / "chat.db"))).start()
    yield srv
    srv.stop()


@pytest.fixture
def tools_page(open_page, tools_ui):  # noqa: F811 (fixture)
    def factory(store: str):
        page = open_page(tools_ui, store="auto" if store == "server" else "local")
        if store == "server":
            assert page.evaluate("document.documentElement.dataset.store") == "server"
            page.click("#new-chat")
            expect(page.locator("#messages .msg")).to_have_count(0)
        return page
    return factory


def reload(page) -> None:
    page.reload()
    page.wait_for_selector("html[data-ready]")


def first_card(page):
    return page.locator("#messages .msg.assistant").first.locator(".tool-card")


@pytest.mark.parametrize("store", ["local", "server"])
def test_answer_a_tool_call_the_page_cannot_run(tools_page, upstream, store):
    upstream.add(MODEL, then_text(tool_call_stream("call_W", "get_weather", ARGS), "It is 12 °C and cloudy in Oslo."))
    page = tools_page(store)
    ask(page, f"up/{MODEL}", "Weather in Oslo?")
    wait_status(page, "complete")
    card = last_reply(page).locator(".tool-card")
    expect(card).to_have_count(1)
    expect(card).to_have_attribute("data-state", "open")
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    expect(card.locator(".tool-args")).to_have_text('{\n  "city": "Oslo",\n  "unit": "C"\n}')
    expect(card.locator(".tool-note")).to_contain_text("cannot run this tool")
    asked = len(upstream.for_model(MODEL))
    # keyboard: the Answer button opens a labelled box, Esc closes it again (and stops nothing)
    answer = card.get_by_role("button", name="Answer get_weather")
    answer.focus()
    page.keyboard.press("Enter")
    box = card.get_by_role("textbox", name="Result of get_weather")
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    expect(answer).to_be_focused()
    shot(page, f"20-client-tool-open-{store}")
    answer.click()
    box.fill('{"temp": 12, "sky": "cloudy"}')
    shot(page, f"21-client-tool-answering-{store}")
    box.press("Control+Enter")
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("It is 12 °C and cloudy in Oslo.")
    assert len(upstream.for_model(MODEL)) == asked + 1
    sent = upstream.last(MODEL).body["messages"]
    assert sent == [{"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": None, "tool_calls": [call_wire("call_W")]},
                    {"role": "tool", "tool_call_id": "call_W", "content": '{"temp": 12, "sky": "cloudy"}'}]
    for attempt in ("live", "reloaded"):
        card = first_card(page)
        expect(card, attempt).to_have_attribute("data-state", "answered")
        expect(card.locator(".tool-name")).to_have_text("get_weather")
        expect(card.locator(".tool-reply")).to_have_text('{"temp": 12, "sky": "cloudy"}')
        expect(card.get_by_role("button", name="Answer get_weather")).to_be_hidden()
        expect(page.locator("#messages .msg.assistant")).to_have_count(2)
        expect(last_reply(page).locator(".content")).to_have_text("It is 12 °C and cloudy in Oslo.")
        shot(page, f"22-client-tool-answered-{store}-{attempt}")
        reload(page)
    assert not page.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["local", "server"])
def test_dismiss_a_tool_call_then_go_on(tools_page, upstream, store):
    upstream.add(MODEL, then_text(tool_call_stream("call_D", "get_weather", ARGS), "Hi there!"))
    page = tools_page(store)
    ask(page, f"up/{MODEL}", "Weather in Oslo?")
    wait_status(page, "complete")
    card = last_reply(page).locator(".tool-card")
    expect(card).to_have_attribute("data-state", "open")
    asked = len(upstream.for_model(MODEL))
    card.get_by_role("button", name="Dismiss get_weather").click()
    expect(card).to_have_attribute("data-state", "dismissed")
    expect(card.locator(".tool-reply")).to_have_text("Dismissed: the tool was not run.")
    expect(card.get_by_role("button", name="Dismiss get_weather")).to_be_hidden()
    expect(page.locator("#input")).to_be_focused()  # the user goes on
    page.wait_for_timeout(300)
    assert len(upstream.for_model(MODEL)) == asked  # the model was not asked
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    reload(page)
    card = first_card(page)
    expect(card).to_have_attribute("data-state", "dismissed")  # recorded, not only drawn
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    ask(page, f"up/{MODEL}", "Never mind, just say hi.")
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("Hi there!")
    sent = upstream.last(MODEL).body["messages"]
    assert sent == [{"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": None, "tool_calls": [call_wire("call_D")]},
                    {"role": "tool", "tool_call_id": "call_D", "content": DISMISSED},
                    {"role": "user", "content": "Never mind, just say hi."}]
    reload(page)
    expect(first_card(page)).to_have_attribute("data-state", "dismissed")
    expect(page.locator("#messages .msg.user .bubble")).to_have_text(["Weather in Oslo?", "Never mind, just say hi."])
    assert not page.errors  # type: ignore[attr-defined]


def test_asking_on_while_a_call_is_open_dismisses_it(tools_page, upstream):
    upstream.add(MODEL, then_text(tool_call_stream("call_O", "get_weather", ARGS), "Sure."))
    page = tools_page("server")
    ask(page, f"up/{MODEL}", "Weather in Oslo?")
    wait_status(page, "complete")
    expect(last_reply(page).locator(".tool-card")).to_have_attribute("data-state", "open")
    ask(page, f"up/{MODEL}", "Something else instead.")
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    wait_status(page, "complete")
    expect(first_card(page)).to_have_attribute("data-state", "dismissed")
    roles = [m["role"] for m in upstream.last(MODEL).body["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]
    reload(page)
    expect(first_card(page)).to_have_attribute("data-state", "dismissed")


def test_two_calls_go_back_together(tools_page, upstream):
    upstream.add(TWO, then_text(two_calls(), "Oslo: 12 °C, 14:00."))
    page = tools_page("server")
    ask(page, f"up/{TWO}", "Weather and time?")
    wait_status(page, "complete")
    cards = last_reply(page).locator(".tool-card")
    expect(cards).to_have_count(2)
    asked = len(upstream.for_model(TWO))
    cards.nth(0).get_by_role("button", name="Answer get_weather").click()
    cards.nth(0).get_by_role("textbox", name="Result of get_weather").fill("12 °C")
    cards.nth(0).get_by_role("button", name="Send result").click()
    expect(cards.nth(0)).to_have_attribute("data-state", "answered")
    expect(cards.nth(0).locator(".tool-state")).to_contain_text("sent with the other calls")
    expect(cards.nth(1)).to_have_attribute("data-state", "open")
    page.wait_for_timeout(200)
    assert len(upstream.for_model(TWO)) == asked  # not before every call has its reply
    cards.nth(1).get_by_role("button", name="Dismiss get_time").click()
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    wait_status(page, "complete")
    sent = upstream.last(TWO).body["messages"]
    assert [(m["role"], m.get("tool_call_id")) for m in sent] == [
        ("user", None), ("assistant", None), ("tool", "call_A"), ("tool", "call_B")]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_A", "call_B"]
    assert sent[1]["content"] == "Checking both."
    assert json.loads(sent[1]["tool_calls"][1]["function"]["arguments"]) == {"tz": "CET"}
    assert (sent[2]["content"], sent[3]["content"]) == ("12 °C", DISMISSED)
    reload(page)
    cards = first_card(page)
    expect(cards.nth(0)).to_have_attribute("data-state", "answered")
    expect(cards.nth(1)).to_have_attribute("data-state", "dismissed")
    expect(last_reply(page).locator(".content")).to_have_text("Oslo: 12 °C, 14:00.")
    shot(page, "23-client-tools-two")


@pytest.mark.parametrize("store", ["local", "server"])
def test_regenerate_an_answer_with_a_dismissed_call_asks_the_question_again(tools_page, upstream, store):
    upstream.add(MODEL, then_text(tool_call_stream("call_R1", "get_weather", ARGS), "Cloudy, I guess."))
    page = tools_page(store)
    ask(page, f"up/{MODEL}", "Weather in Oslo?")
    wait_status(page, "complete")
    last_reply(page).locator(".tool-card").get_by_role("button", name="Dismiss get_weather").click()
    expect(first_card(page)).to_have_attribute("data-state", "dismissed")
    asked = len(upstream.for_model(MODEL))
    last_reply(page).hover()
    last_reply(page).locator("[data-action=regenerate]").click()
    wait_for_requests(upstream, MODEL, asked + 1)
    expect(last_reply(page).locator(".content")).to_have_text("Cloudy, I guess.")
    wait_status(page, "complete")
    assert len(upstream.for_model(MODEL)) == asked + 1
    # the answer with the call (and its dismissal) was replaced: the question alone was asked again
    assert upstream.last(MODEL).body["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    expect(last_reply(page).locator(".content")).to_have_text("Cloudy, I guess.")
    expect(last_reply(page).locator(".tool-card")).to_have_count(0)
    reload(page)
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    expect(last_reply(page).locator(".content")).to_have_text("Cloudy, I guess.")
