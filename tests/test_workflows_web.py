"""The web UI's Workflows page in a real browser: the list, a form built from
the input schema, and the output streaming in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from .conftest import IN_CI, make_config
from .upstream import FakeUpstream, chat_text_stream

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
HERE = Path(__file__).parent / "workflows"

if not os.path.exists(CHROMIUM):
    if IN_CI:
        raise RuntimeError(f"{CHROMIUM} is required in CI (scripts/test.sh installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def test_workflows_page_runs_and_streams(upstream: FakeUpstream, make_server, monkeypatch):
    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    upstream.add("wf-chat", chat_text_stream(["Hel", "lo", ", wor", "ld!\nBye", " now."], delay=0.05))
    srv = make_server(make_config(upstream, workflows=[str(HERE / "chat-stream.yml"), str(HERE / "grade.yml")]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.click("#open-workflows")
            picks = page.locator(".wf-pick")
            expect(picks).to_have_count(2)
            page.click("text=Chat stream (chat-stream)")
            # the form comes from the input schema: a textarea for `as text`, a number field for `as number`
            expect(page.locator("textarea#wf-in-prompt")).to_be_visible()
            expect(page.locator("input#wf-in-temperature")).to_have_value("0.7")
            page.fill("textarea#wf-in-prompt", "say hello")
            page.uncheck("#wf-keep")  # model-compose's own API
            page.click(".wf-form button[type=submit]")
            expect(page.locator(".wf-output")).to_have_text("Hello, world!\nBye now.")
            expect(page.locator(".wf-status")).to_contain_text("Done")
            assert upstream.last("wf-chat").body["messages"][0]["content"] == "say hello"
            # kept as a chat (the default): the run is a stored session, the form its message
            page.check("#wf-keep")
            page.fill("textarea#wf-in-prompt", "again")
            page.click(".wf-form button[type=submit]")
            expect(page.locator(".wf-status")).to_contain_text("Kept as chat")
            expect(page.locator(".wf-output")).to_have_text("Hello, world!\nBye now.")
            assert upstream.last("wf-chat").body["messages"][0]["content"] == "again"
            session = page.locator(".wf-status").get_attribute("data-session")
            stored = httpx.get(f"{srv.url}/sessions/{session}/messages").json()
            rows = stored["data"] if isinstance(stored, dict) else stored
            assert [m["role"] for m in rows] == ["user", "assistant"]
            assert rows[-1]["text"] == "Hello, world!\nBye now." and json.loads(rows[0]["text"])["prompt"] == "again"
            # a JSON output is shown as JSON
            page.click("text=Grade a score (grade)")
            page.fill("input#wf-in-score", "88")
            page.click(".wf-form button[type=submit]")
            expect(page.locator(".wf-output")).to_contain_text('"grade": "high"')
        finally:
            browser.close()
