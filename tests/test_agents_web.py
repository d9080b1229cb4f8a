"""The browser chat UI with an agent: its tool cards fill in live (input,
output, a failed tool marked failed) while the answer is still streaming.
Playwright in Debian's chromium, the fixtures of test_web_ui."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway.server.app import create_app

from .agent_helpers import PY, chain, tool_step
from .conftest import ServerThread, make_config
from .test_web_ui import browser, last_reply, open_page, ui, wait_status  # noqa: F401 (fixtures)
from .upstream import FakeUpstream, chat_chunk, sse, usage_wire

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture
def agent_ui(upstream: FakeUpstream, tmp_path: Path) -> Iterator[tuple[ServerThread, threading.Event]]:
    gate = threading.Event()
    second = [sse(chat_chunk({"role": "assistant", "content": ""})), gate,  # held until the test saw the cards
              sse(chat_chunk({"content": "Six times seven is 42."})), sse(chat_chunk({}, "stop")),
              sse(chat_chunk(usage=usage_wire(40, 8), choices=False)), b"data: [DONE]\n\n"]
    upstream.add("web-agent", chain(tool_step([("c_calc", "calculator", {"expression": "6*7"}),
                                               ("c_boom", "explode", {"reason": "on purpose"})]), second))
    cfg = make_config(upstream, store={"url": f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"},
                      agents={"web": {"model": "up/web-agent", "tools": ["builtin.calculator", f"{PY}:explode"]}})
    srv = ServerThread(create_app(cfg)).start()
    yield srv, gate
    gate.set()
    srv.stop()


def test_agent_tool_cards_fill_in_live(open_page, agent_ui) -> None:  # noqa: F811 (fixture)
    srv, gate = agent_ui
    page = open_page(srv, store="auto")
    page.select_option("#model", "agent/web")
    page.fill("#input", "what is 6*7?")
    page.press("#input", "Enter")
    cards = last_reply(page).locator(".tool-card")
    expect(cards).to_have_count(2, timeout=10000)
    calc = last_reply(page).locator('.tool-card[data-name="calculator"]')
    boom = last_reply(page).locator('.tool-card[data-name="explode"]')
    expect(calc.locator(".tool-result")).to_have_text("42", timeout=10000)
    expect(calc.locator(".tool-state")).to_have_text("done")
    expect(boom).to_have_class("tool-card failed")
    expect(boom.locator(".tool-result")).to_contain_text("exploded: on purpose")
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")  # all of that before the answer
    gate.set()
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("Six times seven is 42.")
    expect(calc.locator(".tool-args")).to_have_text('{\n  "expression": "6*7"\n}')
