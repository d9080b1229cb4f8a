"""The browser chat UI at /, driven in Debian's chromium by Playwright against
the scripted fake upstream (and one smoke test against the embedded model).

Screenshots of the main states go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sluiceway.server.app import create_app

from .conftest import IN_CI, UPSTREAM_KEY, ServerThread, make_config
from .upstream import HANG, FakeUpstream, Script, chat_chunk, chat_text_stream, sse, usage_wire

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HAVE_LIBS = (Path(__file__).resolve().parent.parent / "sluiceway/web/vendor/marked.js").is_file()

if not os.path.exists(CHROMIUM):
    if IN_CI:
        raise RuntimeError(f"{CHROMIUM} is required in CI (scripts/test.sh installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(60)

ANSWER = ["# Rivers\n\n", "Water finds ", "the **lowest** ", "path, ", "always.\n\n",
          "```python\n", "def flow(x):\n", "    return x - 1\n", "```\n\n", "- one\n", "- two\n"]
XSS = ('Hi <img src=x onerror="alert(1)"> and <script>alert(2)</script> '
       '[click me](javascript:alert(3)) <a href="javascript:alert(4)" onclick="alert(5)">raw</a> '
       '![pic](x" onerror="alert(6))\n\n<iframe src="javascript:alert(7)"></iframe>')


def _stream(*deltas: dict, pause: float = 0.0, finish: str = "stop", usage: dict | None = None,
            tail: list | None = None) -> list:
    steps: list = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for d in deltas:
        if pause:
            steps.append(pause)
        steps.append(sse(chat_chunk(d)))
    if tail is not None:
        return steps + tail
    steps.append(sse(chat_chunk({}, finish)))
    if usage:
        steps.append(sse(chat_chunk(usage=usage, choices=False)))
    return [*steps, b"data: [DONE]\n\n"]


def _scripts(up: FakeUpstream) -> None:
    up.add("ui-incremental", chat_text_stream(ANSWER, delay=0.12, usage=usage_wire(14, 40)))
    think = [{"reasoning_content": r} for r in ["The user wants ", "the weather, ", "so I call the tool."]]
    call = [{"tool_calls": [{"index": 0, "id": "call_W", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}]
    up.add("ui-tools", _stream(*think, {"content": "Let me check the weather."}, *call, pause=0.15,
                               finish="tool_calls", usage=usage_wire(30, 25, reasoning=9)))
    up.add("ui-stop", _stream(*({"content": p} for p in ["Partial ", "answer ", "that "]), pause=0.1,
                              tail=[HANG]))
    up.add("ui-xss", _stream({"reasoning_content": '<img src=x onerror="alert(8)">'}, {"content": XSS},
                             {"tool_calls": [{"index": 0, "id": "call_X", "type": "function",
                                              "function": {"name": "<img src=x onerror=alert(9)>",
                                                           "arguments": '{"a": "<script>alert(10)</script>"}'}}]},
                             finish="tool_calls"))
    up.add("ui-keys", _stream({"content": "typing "}, {"content": "along"}, pause=0.05, tail=[HANG]))
    up.add("ui-quick", chat_text_stream(["Short ", "reply."], usage=usage_wire(3, 2)))
    error = Script([b'{"error": {"message": "the upstream is overloaded", "type": "invalid_request_error"}}'],
                   status=400, headers={"content-type": "application/json"}, times=1,
                   then=Script(chat_text_stream(["Recovered ", "fine."])))
    up.add("ui-error", error)
    up.add("ui-error-stored", Script(error.steps, status=400, headers=error.headers, times=1,
                                     then=Script(chat_text_stream(["Stored ", "fine."]))))
    up.add("ui-slow", chat_text_stream([f"w{i} " for i in range(20)], delay=0.08, usage=usage_wire(6, 20)))
    up.add("ui-hang", _stream({"content": "kept "}, {"content": "partial"}, pause=0.05, tail=[HANG]))


def _config(upstream: FakeUpstream | None, db: Path, **overrides):
    return make_config(upstream, store={"url": f"sqlite+aiosqlite:///{db}"}, **overrides)


@pytest.fixture(scope="module")
def ui(upstream: FakeUpstream, tmp_path_factory) -> Iterator[ServerThread]:
    _scripts(upstream)  # before the server lists models, so the picker offers them
    srv = ServerThread(create_app(_config(upstream, tmp_path_factory.mktemp("ui") / "chat.db"))).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Console(list):
    def text(self) -> str:
        return "\n".join(f"{m.type}: {m.text}" for m in self)


@pytest.fixture
def open_page(browser: Browser, ui: ServerThread):
    """A fresh context (fresh storage) with the chat page loaded and ready."""
    contexts = []

    def factory(server: ServerThread = ui, *, width: int = 1280, height: int = 860, setup=None,
                store: str = "local") -> Page:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.console_log = Console()  # type: ignore[attr-defined]
        page.dialogs = []  # type: ignore[attr-defined]
        page.errors = []  # type: ignore[attr-defined]
        page.on("console", lambda m: page.console_log.append(m))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(e))  # type: ignore[attr-defined]

        def on_dialog(d):
            page.dialogs.append(d.message)  # type: ignore[attr-defined]
            d.dismiss()
        page.on("dialog", on_dialog)
        if setup:
            setup(page)
        page.goto(f"{server.url}/" + ("?store=local" if store == "local" else ""))
        page.wait_for_selector("html[data-ready]", timeout=15000)
        return page

    yield factory
    for ctx in contexts:
        ctx.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def ask(page: Page, model: str, text: str) -> None:
    page.select_option("#model", model)
    page.fill("#input", text)
    page.press("#input", "Enter")


def last_reply(page: Page):
    return page.locator("#messages .msg.assistant").last


def wait_status(page: Page, status: str, timeout: float = 10000) -> None:
    expect(last_reply(page)).to_have_attribute("data-status", status, timeout=timeout)


RECORD_STATES = """() => {
  window.__states = [];
  const box = document.getElementById('messages');
  new MutationObserver(() => {
    const el = box.querySelector('.msg.assistant:last-child .content');
    const html = el ? el.innerHTML : '';
    if (html && window.__states.at(-1) !== html) window.__states.push(html);
  }).observe(box, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


# ---------------------------------------------------------------------------- tests

def test_page_and_libraries_are_served(open_page, ui):
    page = open_page()
    assert page.title() == "sluiceway"
    assert page.evaluate("document.documentElement.dataset.ready") == ("markdown" if HAVE_LIBS else "plain")
    options = page.locator("#model option").all_text_contents()
    assert "up/ui-incremental" in options
    resp = page.request.get(f"{ui.url}/")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    # API routes are not shadowed by the UI, and node_modules is only reachable through /vendor
    assert page.request.get(f"{ui.url}/v1/models").json()["object"] == "list"
    assert page.request.get(f"{ui.url}/static/node_modules/marked/package.json").status == 404
    assert page.request.get(f"{ui.url}/vendor/../package.json").status == 404
    shot(page, "01-empty")
    assert not page.errors


def test_text_streams_in_incrementally_as_markdown(open_page, upstream):
    # the upstream holds its first token until the typing indicator has been
    # seen: the test decides when the stream goes on, not the machine's load
    gate = threading.Event()
    steps = chat_text_stream(ANSWER, delay=0.12, usage=usage_wire(14, 40))
    upstream.add("ui-incremental", [steps[0], gate, *steps[1:]])
    page = open_page()
    page.evaluate(RECORD_STATES)
    try:
        ask(page, "up/ui-incremental", "Tell me about rivers")
        expect(page.locator("#messages .msg.user .bubble")).to_have_text("Tell me about rivers")
        expect(last_reply(page).locator(".typing")).to_be_visible()  # until the first token
    finally:
        gate.set()
    expect(last_reply(page).locator(".content")).to_contain_text("Water finds", timeout=5000)
    expect(last_reply(page).locator(".typing")).to_be_hidden()
    if HAVE_LIBS:  # a finished block keeps its DOM node while later text streams in (no flicker)
        last_reply(page).locator(".content h1").evaluate("h => { h.dataset.seen = 'yes'; }")
    shot(page, "02-streaming")
    wait_status(page, "complete")
    final = last_reply(page).locator(".content").inner_html()
    states = page.evaluate("window.__states")
    intermediate = [s for s in states if s != final]
    assert len(set(intermediate)) >= 3, states
    reply = last_reply(page)
    if HAVE_LIBS:
        expect(reply.locator(".content h1")).to_have_text("Rivers")
        expect(reply.locator(".content h1")).to_have_attribute("data-seen", "yes")
        expect(reply.locator(".content strong")).to_have_text("lowest")
        expect(reply.locator(".code-block .code-head")).to_contain_text("python")
        expect(reply.locator(".code-block code .hljs-keyword").first).to_have_text("def")
        expect(reply.locator(".code-block .copy-code")).to_have_count(1)
        expect(reply.locator(".content li")).to_have_count(2)
    else:
        expect(reply.locator(".content")).to_contain_text("**lowest**")
    meta = reply.locator(".meta .stats")
    expect(meta).to_contain_text("up/ui-incremental")
    expect(meta).to_contain_text("TTFT")
    expect(meta).to_contain_text("tok/s")
    expect(meta).to_contain_text("14 in · 40 out")
    assert upstream.last("ui-incremental").body["messages"][-1] == {"role": "user", "content": "Tell me about rivers"}
    shot(page, "03-complete")
    assert not page.errors


def test_reasoning_block_and_tool_card(open_page):
    page = open_page()
    ask(page, "up/ui-tools", "Weather in Oslo?")
    thinking = last_reply(page).locator("details.reasoning")
    expect(thinking).to_contain_text("The user wants", timeout=5000)
    expect(thinking).to_have_attribute("open", "")  # streams live, unfolded
    expect(thinking.locator("summary")).to_have_text("Thinking…")
    wait_status(page, "complete")
    expect(thinking.locator(".reasoning-text")).to_have_text("The user wants the weather, so I call the tool.")
    expect(thinking.locator("summary")).to_contain_text("Thought for")
    assert thinking.get_attribute("open") is None  # folded away once the answer began
    card = last_reply(page).locator(".tool-card")
    expect(card).to_have_count(1)
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    expect(card.locator(".tool-args")).to_have_text('{\n  "city": "Oslo"\n}')
    expect(last_reply(page).locator(".content")).to_have_text("Let me check the weather.")
    shot(page, "04-reasoning-tool")
    thinking.locator("summary").click()
    expect(thinking).to_have_attribute("open", "")


def test_stop_halts_the_stream_and_closes_the_upstream(open_page, upstream):
    page = open_page()
    ask(page, "up/ui-stop", "Start something long")
    expect(last_reply(page).locator(".content")).to_contain_text("Partial answer that", timeout=5000)
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator("#send")).to_be_hidden()
    page.click("#stop")
    wait_status(page, "stopped", timeout=3000)
    rec = upstream.last("ui-stop")
    assert rec.wait_closed(1.0), "the upstream connection stayed open after Stop"
    assert rec.client_closed and not rec.completed
    expect(last_reply(page).locator(".content")).to_have_text("Partial answer that")  # partial answer kept
    expect(last_reply(page).locator(".meta")).to_contain_text("stopped")
    expect(page.locator("#send")).to_be_visible()
    shot(page, "05-stopped")


def test_model_output_cannot_inject_script(open_page):
    page = open_page()
    ask(page, "up/ui-xss", "Be evil")
    wait_status(page, "complete")
    page.wait_for_timeout(300)  # give any onerror a chance to fire
    reply = last_reply(page)
    reply.get_by_text("click me").click()
    page.wait_for_timeout(200)
    assert page.dialogs == []  # type: ignore[attr-defined]
    found = page.evaluate("""() => {
      const all = [...document.querySelectorAll('#messages *')];
      return {
        scripts: document.querySelectorAll('#messages script, #messages iframe').length,
        handlers: all.flatMap(el => [...el.attributes].filter(a => a.name.startsWith('on')).map(a => a.name)),
        jsLinks: all.filter(el => /^\\s*javascript:/i.test(el.getAttribute('href') || el.getAttribute('src') || '')).length,
      };
    }""")
    assert found == {"scripts": 0, "handlers": [], "jsLinks": 0}, found
    # the payload was neutralised, not lost: the raw HTML is shown as text
    expect(reply.locator(".content")).to_contain_text("Hi")
    if HAVE_LIBS:
        expect(reply.locator(".content")).to_contain_text('<img src=x onerror="alert(1)">')
    expect(reply.locator(".reasoning-text")).to_have_text('<img src=x onerror="alert(8)">')
    expect(reply.locator(".tool-name")).to_have_text("<img src=x onerror=alert(9)>")
    shot(page, "06-xss-inert")
    assert not page.errors


def test_enter_sends_shift_enter_breaks_line_and_escape_stops(open_page, upstream):
    page = open_page()
    page.select_option("#model", "up/ui-keys")
    box = page.locator("#input")
    box.click()
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert box.input_value() == "line one\nline two"
    expect(page.locator("#messages .msg")).to_have_count(0)  # nothing sent yet
    page.keyboard.press("Enter")
    expect(page.locator("#messages .msg.user .bubble")).to_have_text("line one\nline two")
    assert box.input_value() == ""
    expect(last_reply(page).locator(".content")).to_have_text("typing along", timeout=5000)
    page.keyboard.press("Escape")
    wait_status(page, "stopped", timeout=3000)
    rec = upstream.last("ui-keys")
    assert rec.wait_closed(1.0)
    assert rec.body["messages"][-1]["content"] == "line one\nline two"


def test_error_shows_inline_and_retry_recovers(open_page):
    page = open_page()
    ask(page, "up/ui-error", "Hello?")
    wait_status(page, "error")
    err = last_reply(page).locator(".error")
    expect(err).to_contain_text("overloaded")
    shot(page, "07-error")
    err.locator("button.retry").click()
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("Recovered fine.")
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)  # the failed reply was replaced


def test_error_then_retry_in_a_stored_chat(open_page):
    page = server_page(open_page)
    ask(page, "up/ui-error-stored", "Hello server?")
    wait_status(page, "error")
    expect(last_reply(page).locator(".error")).to_contain_text("overloaded")
    last_reply(page).locator("button.retry").click()
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("Stored fine.")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(last_reply(page).locator(".content")).to_have_text("Stored fine.")
    expect(page.locator("#messages .msg.user .bubble").last).to_have_text("Hello server?")


def test_regenerate_and_edit_and_resend(open_page, upstream):
    page = open_page()
    ask(page, "up/ui-quick", "first question")
    wait_status(page, "complete")
    before = len(upstream.for_model("ui-quick"))
    last_reply(page).hover()
    last_reply(page).locator("[data-action=regenerate]").click()
    wait_status(page, "complete")
    assert len(upstream.for_model("ui-quick")) == before + 1
    expect(page.locator("#messages .msg")).to_have_count(2)
    user = page.locator("#messages .msg.user").first
    user.hover()
    user.locator("[data-action=edit]").click()
    editor = user.locator(".editor textarea")
    editor.fill("edited question")
    editor.press("Enter")
    wait_status(page, "complete")
    expect(page.locator("#messages .msg")).to_have_count(2)
    expect(page.locator("#messages .msg.user .bubble")).to_have_text("edited question")
    assert upstream.last("ui-quick").body["messages"] == [{"role": "user", "content": "edited question"}]


def test_sessions_sidebar_new_rename_search_delete_and_reload(open_page):
    page = open_page()
    ask(page, "up/ui-quick", "apples and pears")
    wait_status(page, "complete")
    page.click("#new-chat")
    expect(page.locator("#messages .msg")).to_have_count(0)
    ask(page, "up/ui-quick", "bananas")
    wait_status(page, "complete")
    items = page.locator("#session-list .session-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("bananas")  # newest first
    # rename
    items.first.hover()
    items.first.locator("[data-action=rename]").click()
    page.locator(".rename-input").fill("Fruit talk")
    page.locator(".rename-input").press("Enter")
    expect(items.first.locator(".session-open")).to_have_text("Fruit talk")
    expect(page.locator("#chat-title")).to_have_text("Fruit talk")
    # search matches titles and message text
    page.fill("#search", "pears")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("apples and pears")
    page.fill("#search", "")
    expect(items).to_have_count(2)
    shot(page, "08-sidebar")
    # open the older chat, then survive a reload
    items.nth(1).locator(".session-open").click()
    expect(page.locator("#messages .msg.user .bubble")).to_have_text("apples and pears")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(items).to_have_count(2)
    # delete asks for a second click
    target = items.filter(has_text="Fruit talk")
    target.hover()
    target.locator("[data-action=delete]").click()
    expect(items).to_have_count(2)
    target.locator("[data-action=delete]").click()
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("apples and pears")


def test_settings_are_sent_with_the_request(open_page, upstream):
    page = open_page()
    page.click("#toggle-settings")
    expect(page.locator("#settings")).to_be_visible()
    page.fill("#system", "Answer like a pirate.")
    page.fill("#max-tokens", "64")
    page.locator("#temperature").fill("0.3")
    shot(page, "09-settings")
    ask(page, "up/ui-quick", "hello")
    wait_status(page, "complete")
    body = upstream.last("ui-quick").body
    assert body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert body["max_tokens"] == 64 and body["temperature"] == pytest.approx(0.3)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_dark_theme_toggle_persists(open_page):
    page = open_page()
    ask(page, "up/ui-incremental", "dark please")
    wait_status(page, "complete")
    theme = page.evaluate("document.documentElement.dataset.theme")
    if theme == "dark":
        page.click("#toggle-theme")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#toggle-theme")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light_bg != dark_bg
    rgb = [int(x) for x in dark_bg[dark_bg.index("(") + 1:-1].split(",")[:3]]
    assert sum(rgb) < 150, dark_bg
    shot(page, "10-dark")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_narrow_screen_hides_the_sidebar_behind_a_menu(open_page):
    page = open_page(width=390, height=800)
    sidebar = page.locator("#sidebar")
    assert sidebar.bounding_box()["x"] < 0  # off-canvas
    page.click("#open-sidebar")
    page.wait_for_timeout(300)
    assert sidebar.bounding_box()["x"] >= 0
    shot(page, "11-mobile-sidebar")
    page.click("#close-sidebar")
    ask(page, "up/ui-quick", "small screen")
    wait_status(page, "complete")
    shot(page, "12-mobile-chat")


def test_without_node_modules_the_page_falls_back_to_plain_text(open_page):
    page = open_page(setup=lambda p: p.route("**/vendor/**", lambda r: r.fulfill(status=404, body="missing")))
    assert page.evaluate("document.documentElement.dataset.ready") == "plain"
    assert "markdown libraries are not installed" in page.console_log.text()  # type: ignore[attr-defined]
    ask(page, "up/ui-xss", "evil, without the sanitiser")
    wait_status(page, "complete")
    reply = last_reply(page)
    expect(reply.locator(".content")).to_contain_text('<img src=x onerror="alert(1)">')
    assert reply.locator(".content img, .content script, .content a").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


@pytest.mark.embedded
@pytest.mark.timeout(180)
def test_embedded_model_smoke(open_page, tmp_path):
    pytest.importorskip("llama_cpp")
    srv = ServerThread(create_app(_config(None, tmp_path / "embedded.db", embedded=True))).start()
    try:
        page = open_page(srv, store="auto")  # what a newcomer gets: chats stored on the server
        options = page.locator("#model option").all_text_contents()
        model = "smollm2" if "smollm2" in options else options[0]
        page.select_option("#model", model)
        page.click("#toggle-settings")
        page.fill("#max-tokens", "16")
        page.fill("#input", "Say hello.")
        page.press("#input", "Enter")
        wait_status(page, "complete", timeout=150000)
        assert last_reply(page).locator(".content").inner_text().strip()
        shot(page, "13-embedded")
    finally:
        srv.stop()


def test_the_model_picker_starts_on_the_configured_default(open_page, upstream, tmp_path):
    srv = ServerThread(create_app(_config(upstream, tmp_path / "default.db", default_model="up/ui-quick"))).start()
    try:
        listed = httpx.get(f"{srv.url}/v1/models").json()["data"]
        assert [m["id"] for m in listed if m["default"]] == ["up/ui-quick"]
        assert listed[0]["id"] != "up/ui-quick"  # so "the first one" would be wrong
        page = open_page(srv)
        expect(page.locator("#model")).to_have_value("up/ui-quick")
    finally:
        srv.stop()


# ------------------------------------------------------- stored sessions (server)

def wait_for_requests(upstream, model: str, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(upstream.for_model(model)) < n:
        assert time.monotonic() < deadline, f"{model}: the upstream was not asked"
        time.sleep(0.02)


def server_page(open_page, server: ServerThread | None = None, *, new_chat: bool = True, **kw) -> Page:
    page = open_page(server, store="auto", **kw) if server else open_page(store="auto", **kw)
    assert page.evaluate("document.documentElement.dataset.store") == "server"
    if new_chat:  # the shared server holds other tests' chats, and the newest one opens first
        page.click("#new-chat")
        expect(page.locator("#messages .msg")).to_have_count(0)
    return page


def test_reload_mid_answer_reattaches_and_completes(open_page, upstream):
    # the upstream holds after w5 until the reloaded page has reattached: the
    # answer is still running then however slow the machine is
    gate = threading.Event()
    steps = chat_text_stream([f"w{i} " for i in range(20)], delay=0.08, usage=usage_wire(6, 20))
    upstream.add("ui-slow", [*steps[:13], gate, *steps[13:]])  # [role, (delay, chunk) × 6, …]
    page = server_page(open_page)
    try:
        ask(page, "up/ui-slow", "count for me")
        expect(last_reply(page).locator(".content")).to_contain_text("w3", timeout=5000)
        page.reload()
        page.wait_for_selector("html[data-ready]")
        expect(last_reply(page)).to_have_attribute("data-status", "streaming")  # reattached while still running
        shot(page, "14-reattached")
    finally:
        gate.set()
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text(" ".join(f"w{i}" for i in range(20)))
    expect(page.locator("#messages .msg")).to_have_count(2)
    assert len(upstream.for_model("ui-slow")) == 1  # reattached to the same run, not asked again
    expect(last_reply(page).locator(".meta")).to_contain_text("6 in · 20 out")


def test_switching_chats_mid_answer_keeps_it_streaming(open_page, upstream):
    page = server_page(open_page)
    ask(page, "up/ui-quick", "an older chat")
    wait_status(page, "complete")
    page.click("#new-chat")
    expect(page.locator("#messages .msg")).to_have_count(0)
    ask(page, "up/ui-slow", "count again")
    expect(last_reply(page).locator(".content")).to_contain_text("w2", timeout=5000)
    items = page.locator("#session-list .session-item")
    items.filter(has_text="an older chat").locator(".session-open").click()
    expect(page.locator("#messages .msg.user .bubble")).to_have_text("an older chat")
    items.filter(has_text="count again").locator(".session-open").click()
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text(" ".join(f"w{i}" for i in range(20)))


def test_server_side_stop_keeps_the_partial_answer_across_reload(open_page, upstream):
    page = server_page(open_page)
    ask(page, "up/ui-hang", "never finishes")
    expect(last_reply(page).locator(".content")).to_have_text("kept partial", timeout=5000)
    page.keyboard.press("Escape")
    wait_status(page, "stopped", timeout=5000)
    rec = upstream.last("ui-hang")
    assert rec.wait_closed(1.0), "the upstream connection stayed open after Stop"
    page.reload()
    page.wait_for_selector("html[data-ready]")
    wait_status(page, "stopped")
    expect(last_reply(page).locator(".content")).to_have_text("kept partial")


def test_sessions_are_stored_on_the_server_and_survive_a_restart(open_page, upstream, tmp_path):
    db = tmp_path / "restart.db"
    first = ServerThread(create_app(_config(upstream, db))).start()
    try:
        page = server_page(open_page, first, new_chat=False)
        ask(page, "up/ui-quick", "remember me")
        wait_status(page, "complete")
        page.click("#new-chat")
        ask(page, "up/ui-quick", "second chat")
        wait_status(page, "complete")
        items = page.locator("#session-list .session-item")
        expect(items).to_have_count(2)
        items.first.hover()
        items.first.locator("[data-action=rename]").click()
        page.locator(".rename-input").fill("Renamed on the server")
        page.locator(".rename-input").press("Enter")
        expect(items.first.locator(".session-open")).to_have_text("Renamed on the server")
        titles = [s["title"] for s in page.request.get(f"{first.url}/sessions").json()["data"]]
        assert sorted(titles) == ["Renamed on the server", "remember me"]
        page.close()  # no idle keep-alive connection holds up the shutdown
    finally:
        first.stop()
    second = ServerThread(create_app(_config(upstream, db))).start()
    try:
        page = server_page(open_page, second, new_chat=False)
        items = page.locator("#session-list .session-item")
        expect(items).to_have_count(2)
        items.filter(has_text="remember me").locator(".session-open").click()
        expect(page.locator("#messages .msg.user .bubble")).to_have_text("remember me")
        expect(last_reply(page).locator(".content")).to_have_text("Short reply.")
        shot(page, "15-after-restart")
        target = items.filter(has_text="Renamed on the server")
        target.hover()
        target.locator("[data-action=delete]").click()
        target.locator("[data-action=delete]").click()
        expect(items).to_have_count(1)
        titles = [s["title"] for s in page.request.get(f"{second.url}/sessions").json()["data"]]
        assert titles == ["remember me"]
        page.close()
    finally:
        second.stop()


def test_debug_drawer_shows_the_trace_without_secrets(open_page, upstream):
    page = server_page(open_page)
    ask(page, "up/ui-quick", "trace me")
    wait_status(page, "complete")
    last_reply(page).hover()
    last_reply(page).locator("[data-action=trace]").click()
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(drawer).to_contain_text("trace me", timeout=5000)
    expect(drawer).to_contain_text("up/ui-quick")
    assert UPSTREAM_KEY not in drawer.inner_text()
    shot(page, "16-trace")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    # regenerate replaces the stored turn: the server deletes it, and the question is asked again alone
    asked = len(upstream.for_model("ui-quick"))
    last_reply(page).hover()
    last_reply(page).locator("[data-action=regenerate]").click()
    expect(page.locator("#messages .msg")).to_have_count(2)
    wait_for_requests(upstream, "ui-quick", asked + 1)
    wait_status(page, "complete")
    assert [m["content"] for m in upstream.last("ui-quick").body["messages"]] == ["trace me"]
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator("#messages .msg")).to_have_count(2)  # stored that way too


def test_edit_and_resend_in_a_stored_chat_rewrites_it_from_that_turn(open_page, upstream):
    page = server_page(open_page)
    ask(page, "up/ui-quick", "first")
    wait_status(page, "complete")
    ask(page, "up/ui-quick", "second")
    wait_status(page, "complete")
    expect(page.locator("#messages .msg")).to_have_count(4)
    asked = len(upstream.for_model("ui-quick"))
    user = page.locator("#messages .msg.user").first
    user.hover()
    user.locator("[data-action=edit]").click()
    editor = user.locator(".editor textarea")
    editor.fill("first, edited")
    editor.press("Enter")
    expect(page.locator("#messages .msg.user .bubble")).to_have_text(["first, edited"])
    wait_for_requests(upstream, "ui-quick", asked + 1)
    wait_status(page, "complete")
    expect(page.locator("#messages .msg")).to_have_count(2)
    assert upstream.last("ui-quick").body["messages"] == [{"role": "user", "content": "first, edited"}]
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator("#messages .msg.user .bubble")).to_have_text(["first, edited"])
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    assert page.errors == [] and page.dialogs == []


def test_a_server_that_wants_a_key_gets_one_from_the_page(browser, ui, upstream, tmp_path):
    srv = ServerThread(create_app(_config(upstream, tmp_path / "keys.db", server={"api_keys": ["sk-ui-key"]}))).start()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(f"{srv.url}/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible(timeout=10000)
        page.fill("#key-input", "sk-wrong")
        page.click("#key-dialog button[value=save]")
        expect(page.locator("#key-why")).to_contain_text("not accepted", timeout=10000)
        page.fill("#key-input", "sk-ui-key")
        page.click("#key-dialog button[value=save]")
        page.wait_for_selector("html[data-ready]", timeout=15000)
        assert page.evaluate("document.documentElement.dataset.store") == "server"
        ask(page, "up/ui-quick", "with a key")
        wait_status(page, "complete")
        expect(last_reply(page).locator(".content")).to_have_text("Short reply.")
        assert upstream.last("ui-quick").body["messages"][-1]["content"] == "with a key"
    finally:
        ctx.close()
        srv.stop()


def test_the_pages_sse_parser_follows_the_spec(open_page):
    """sse.js, run in the page: line ends split across reads, UTF-8 split
    inside a character, BOM, comments, multi-line data, ids, and an event
    without its closing blank line dropped at EOF."""
    page = open_page()
    got = page.evaluate("""async () => {
      const { SSEParser } = await import('./static/sse.js');
      const enc = new TextEncoder();
      const bytes = enc.encode('\\ufeffdata: a\\r\\r\\n: keep-alive\\n\\nevent: run\\nid: 7\\ndata:{"x":1}\\ndata:  two\\n\\n'
                               + 'data: 日本\\r\\n\\ndata:no-colon-space\\nretry: 5\\nfield\\n\\ndata: lost at EOF');
      const p = new SSEParser();
      const out = [];
      for (let i = 0; i < bytes.length; i += 3) out.push(...p.feed(bytes.slice(i, i + 3)));  // splits everything
      out.push(...p.end());
      return out;
    }""")
    assert got == [
        {"event": "message", "data": "a", "id": None},
        {"event": "run", "data": '{"x":1}\n two', "id": "7"},
        {"event": "message", "data": "日本", "id": "7"},
        {"event": "message", "data": "no-colon-space", "id": "7"},
    ]
