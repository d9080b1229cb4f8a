"""Attaching images in the browser chat UI (attachments.js), in Debian's
chromium driven by Playwright against the scripted fake upstream: the attach
button's file picker, paste and drag-and-drop, thumbnails with a remove
button, the size limit, and the images reaching the upstream as image_url
parts, from a chat kept in the browser (/v1/chat/completions) and from one
stored on the server (/chat/stream), where a reload shows them again.
The fixtures are test_web_ui's."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator

import pytest

from sluiceway.server.app import create_app

from .conftest import ServerThread
from .test_web_ui import _config, browser, last_reply, open_page, shot, ui, wait_status  # noqa: F401 (fixtures)
from .upstream import chat_text_stream

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

MODEL = "ui-images"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, so the browser can draw the thumbnail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


RED, BLUE = png(8, 6, (220, 20, 20)), png(5, 5, (20, 20, 220))
URL_RED = "data:image/png;base64," + base64.b64encode(RED).decode()
URL_BLUE = "data:image/png;base64," + base64.b64encode(BLUE).decode()


def file(name: str, data: bytes, mime: str = "image/png") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


@pytest.fixture(scope="module")
def images_ui(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    upstream.add(MODEL, chat_text_stream(["A ", "red ", "square."]), times=None)  # before the models are listed
    srv = ServerThread(create_app(_config(upstream, tmp_path_factory.mktemp("img") / "chat.db"))).start()
    yield srv
    srv.stop()


@pytest.fixture
def page_for(open_page, images_ui):  # noqa: F811 (fixture)
    def factory(store: str):
        page = open_page(images_ui, store="auto" if store == "server" else "local")
        if store == "server":
            assert page.evaluate("document.documentElement.dataset.store") == "server"
            page.click("#new-chat")
        page.select_option("#model", f"up/{MODEL}")
        return page
    return factory


def sent_user_content(upstream) -> object:
    return upstream.last(MODEL).body["messages"][-1]["content"]


@pytest.mark.parametrize("store", ["local", "server"])
def test_attach_with_the_file_picker_sends_the_image_and_history_shows_it(page_for, upstream, store):
    page = page_for(store)
    attach = page.get_by_role("button", name="Attach images")
    expect(attach).to_be_visible()
    page.set_input_files("#attach-input", [file("red.png", RED)])
    thumbs = page.locator("#attachments .thumb")
    expect(thumbs).to_have_count(1)
    expect(thumbs.locator("img")).to_have_attribute("src", URL_RED)
    expect(thumbs.locator("figcaption")).to_contain_text("red.png")
    page.fill("#input", "What is in this picture?")
    page.press("#input", "Enter")
    wait_status(page, "complete")
    expect(last_reply(page).locator(".content")).to_have_text("A red square.")
    assert sent_user_content(upstream) == [{"type": "text", "text": "What is in this picture?"},
                                           {"type": "image_url", "image_url": {"url": URL_RED}}]
    expect(page.locator("#attachments")).to_be_hidden()  # the tray is empty once sent
    user = page.locator("#messages .msg.user").last
    expect(user.locator(".msg-images img")).to_have_attribute("src", URL_RED)
    assert user.locator(".msg-images img").evaluate("img => img.naturalWidth") == 8  # drawn, not a broken image
    expect(user.locator(".bubble")).to_have_text("What is in this picture?")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    user = page.locator("#messages .msg.user").last
    expect(user.locator(".msg-images img")).to_have_attribute("src", URL_RED)  # from the stored chat
    expect(user.locator(".bubble")).to_have_text("What is in this picture?")
    # the image stays in the history the next question is asked with
    page.fill("#input", "And now?")
    page.press("#input", "Enter")
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    wait_status(page, "complete")
    first = upstream.last(MODEL).body["messages"][0]
    assert first["content"][1] == {"type": "image_url", "image_url": {"url": URL_RED}}
    assert not page.errors  # type: ignore[attr-defined]


def test_paste_and_drop_attach_images_and_an_image_alone_can_be_sent(page_for, upstream):
    page = page_for("server")
    put = """async ([kind, b64, name]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: "image/png" }));
      if (kind === "paste") {
        document.getElementById("input").dispatchEvent(
          new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
      } else {
        const zone = document.getElementById("composer-wrap");
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    }"""
    page.evaluate(put, ["paste", base64.b64encode(RED).decode(), "pasted.png"])
    expect(page.locator("#attachments .thumb")).to_have_count(1)
    page.evaluate(put, ["drop", base64.b64encode(BLUE).decode(), "dropped.png"])
    expect(page.locator("#attachments .thumb img")).to_have_count(2)
    expect(page.locator("#attachments .thumb img").nth(1)).to_have_attribute("src", URL_BLUE)
    # a text paste is still a text paste
    page.locator("#input").focus()
    page.keyboard.insert_text("kept text")
    expect(page.locator("#input")).to_have_value("kept text")
    page.fill("#input", "")
    page.click("#send")  # images alone are a message
    wait_status(page, "complete")
    assert sent_user_content(upstream) == [{"type": "image_url", "image_url": {"url": URL_RED}},
                                           {"type": "image_url", "image_url": {"url": URL_BLUE}}]
    user = page.locator("#messages .msg.user").last
    expect(user.locator(".msg-images img")).to_have_count(2)
    expect(user.locator(".bubble")).to_be_hidden()
    shot(page, "19-images-sent")


def test_remove_a_thumbnail_with_the_mouse_and_the_keyboard(page_for, upstream):
    page = page_for("local")
    page.set_input_files("#attach-input", [file("red.png", RED), file("blue.png", BLUE)])
    thumbs = page.locator("#attachments .thumb")
    expect(thumbs).to_have_count(2)
    page.fill("#input", "Which colour?")
    shot(page, "17-attachments")
    page.get_by_role("button", name="Remove image 1: red.png").click()
    expect(thumbs).to_have_count(1)
    expect(thumbs.locator("img")).to_have_attribute("src", URL_BLUE)
    page.fill("#input", "only blue")
    page.press("#input", "Enter")
    wait_status(page, "complete")
    assert sent_user_content(upstream) == [{"type": "text", "text": "only blue"},
                                           {"type": "image_url", "image_url": {"url": URL_BLUE}}]
    # by keyboard: Tab from the attach button reaches nothing new, the remove button is focusable and Enter removes
    page.set_input_files("#attach-input", [file("red.png", RED)])
    remove = page.get_by_role("button", name="Remove image 1: red.png")
    remove.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#attachments")).to_be_hidden()
    expect(page.locator("#input")).to_be_focused()  # the keyboard lands back in the message box


def test_oversize_and_non_image_files_are_refused_with_a_message(page_for, upstream):
    page = page_for("local")
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (6 * 1024 * 1024)
    page.set_input_files("#attach-input", [file("huge.png", big)])
    notice = page.locator("#attach-notice")
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("“huge.png” is 6.0 MB: images can be at most 5.0 MB each.")
    expect(page.locator("#attachments .thumb")).to_have_count(0)
    page.set_input_files("#attach-input", [file("notes.txt", b"hello", "text/plain"), file("red.png", RED)])
    expect(notice).to_contain_text("“notes.txt” is not a PNG, JPEG, GIF or WebP image.")
    expect(page.locator("#attachments .thumb")).to_have_count(1)  # the good one is kept
    shot(page, "18-attachment-refused")
    page.get_by_role("button", name="Remove image 1: red.png").click()
    expect(notice).to_be_hidden()
    asked = len(upstream.for_model(MODEL))
    page.click("#send")  # nothing to send: no request
    page.wait_for_timeout(200)
    assert len(upstream.for_model(MODEL)) == asked
    expect(page.locator("#messages .msg")).to_have_count(0)
