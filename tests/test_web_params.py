"""The chat page's model parameters beyond temperature and max tokens: top_p,
reasoning effort, seed and stop sequences reach the upstream, from a chat kept
in the browser (/v1/chat/completions) and from a chat stored on the server
(/chat/stream params), and stay set after a reload."""

from __future__ import annotations

import os
import tempfile

import pytest

from sluiceway.server.app import create_app

from .conftest import IN_CI, ServerThread, make_config
from .upstream import chat_text_stream

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if IN_CI:
        raise RuntimeError(f"{CHROMIUM} is required in CI")
    pytest.skip("chromium is missing", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("store", ["local", "server"])
def test_sampling_parameters_reach_the_upstream(upstream, store):
    name = f"ui-params-{store}"
    upstream.add(name, chat_text_stream(["fine"]), times=None)
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sw-ui-')}/c.db"
    srv = ServerThread(create_app(make_config(upstream, store={"url": db}, models={"params": [f"up/{name}"]}))).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(f"{srv.url}/" + ("?store=local" if store == "local" else ""))
                page.wait_for_selector("html[data-ready]", timeout=15000)
                page.select_option("#model", "params")
                page.click("#toggle-settings")
                page.fill("#top-p", "0.5")
                page.select_option("#reasoning-effort", "low")
                page.fill("#seed", "7")
                page.fill("#stop-seqs", "END\nSTOP")
                page.fill("#input", "hello")
                page.press("#input", "Enter")
                expect(page.locator("#messages .msg.assistant").last).to_have_attribute("data-status", "complete",
                                                                                        timeout=15000)
                body = upstream.last(name).body
                assert (body["top_p"], body["reasoning_effort"], body["seed"], body["stop"]) == \
                    (0.5, "low", 7, ["END", "STOP"])
                page.reload()
                page.wait_for_selector("html[data-ready]", timeout=15000)
                if page.locator("#settings").is_hidden():
                    page.click("#toggle-settings")
                expect(page.locator("#top-p")).to_have_value("0.5")
                expect(page.locator("#reasoning-effort")).to_have_value("low")
                expect(page.locator("#stop-seqs")).to_have_value("END\nSTOP")
            finally:
                browser.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("store", ["local", "server"])
def test_export_button_downloads_the_chat(upstream, store, tmp_path):
    name = f"ui-export-{store}"
    upstream.add(name, chat_text_stream(["Rivers ", "run to the sea."]))
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sw-ui-')}/c.db"
    srv = ServerThread(create_app(make_config(upstream, store={"url": db}, models={"exp": [f"up/{name}"]}))).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_context(accept_downloads=True).new_page()
                page.goto(f"{srv.url}/" + ("?store=local" if store == "local" else ""))
                page.wait_for_selector("html[data-ready]", timeout=15000)
                page.select_option("#model", "exp")
                page.fill("#input", "Where do rivers go?")
                page.press("#input", "Enter")
                expect(page.locator("#messages .msg.assistant").last).to_have_attribute("data-status", "complete",
                                                                                        timeout=15000)
                with page.expect_download() as info:
                    page.click("#export-chat")
                download = info.value
                path = tmp_path / "chat.md"
                download.save_as(path)
            finally:
                browser.close()
    finally:
        srv.stop()
    text = path.read_text()
    assert download.suggested_filename.endswith(".md")
    assert "Where do rivers go?" in text and "Rivers run to the sea." in text


@pytest.mark.parametrize("store", ["local", "server"])
def test_stream_setting_off_asks_without_streaming(upstream, store):
    name = f"ui-nostream-{store}"
    upstream.add(name, chat_text_stream(["all ", "at once"]))
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sw-ui-')}/c.db"
    srv = ServerThread(create_app(make_config(upstream, store={"url": db}, models={"ns": [f"up/{name}"]}))).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                posts: list[tuple[str, str]] = []
                page.on("request", lambda r: posts.append((r.url, r.post_data or "")) if r.method == "POST" else None)
                page.goto(f"{srv.url}/" + ("?store=local" if store == "local" else ""))
                page.wait_for_selector("html[data-ready]", timeout=15000)
                page.select_option("#model", "ns")
                page.click("#toggle-settings")
                page.uncheck("#stream")
                page.fill("#input", "hi")
                page.press("#input", "Enter")
                reply = page.locator("#messages .msg.assistant").last
                expect(reply).to_have_attribute("data-status", "complete", timeout=15000)
                expect(reply.locator(".content")).to_contain_text("all at once")
            finally:
                browser.close()
    finally:
        srv.stop()
    asked = [(u, d) for u, d in posts if u.endswith(("/v1/chat/completions", "/chat", "/chat/stream"))]
    if store == "local":
        assert len(asked) == 1 and asked[0][0].endswith("/v1/chat/completions") and '"stream":false' in asked[0][1]
    else:
        assert [u.rsplit("/", 1)[-1] for u, _ in asked] == ["chat"]  # POST /chat, not /chat/stream
