"""The Providers page in headless Chromium: add a provider pointed at the
scripted upstream through the schema-driven form, test it, save it, and chat
with it — no reload, the secret only in .env."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import yaml
from playwright.sync_api import expect, sync_playwright

from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config
from .test_web_ui import ARGS, ARTIFACTS, CHROMIUM  # importing it skips this module when chromium is missing
from .upstream import chat_text_stream

pytestmark = pytest.mark.timeout(90)
SECRET = "sk-web-" + "w3" * 12 + "Q8r1"


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    before = dict(os.environ)
    yield
    for k in [k for k in os.environ if k not in before]:
        del os.environ[k]
    os.environ.update(before)


def test_add_test_and_chat_with_a_provider_in_the_browser(tmp_path, upstream):
    model = upstream.add(f"web-{uuid.uuid4().hex[:6]}", chat_text_stream(["Hello ", "from the ", "new provider."],
                                                                          delay=0.02))
    cfg = make_config(None)
    cfg.path = tmp_path / "sluiceway.yaml"
    srv = ServerThread(create_app(cfg)).start()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list = []
            page.on("pageerror", lambda e: errors.append(e))
            page.goto(f"{srv.url}/?store=local")
            page.wait_for_selector("html[data-ready]", timeout=15000)
            assert page.locator("#model option").all_text_contents() == ["No models available"]

            page.click("#open-providers")
            expect(page.locator("#providers-page")).to_be_visible()
            page.click("#prov-add")
            form = page.locator(".prov-form")
            expect(form.locator('[name="base_url"]')).to_be_visible()
            # the form comes from the schema: name first, the secret a password field, advanced collapsed
            rows = form.locator(".prov-fields > .prov-row").evaluate_all("rs => rs.map(r => r.dataset.field)")
            assert rows[0] == "name" and "base_url" in rows and "headers" not in rows
            assert form.locator('[name="api_key"]').get_attribute("type") == "password"
            expect(form.locator('[name="headers"]')).to_be_hidden()  # inside the closed "Advanced"
            # a vendor preset fills the URL and the default model
            form.locator("#prov-preset").select_option(label="DeepSeek")
            expect(form.locator('[name="base_url"]')).to_have_value("https://api.deepseek.com/v1")
            expect(form.locator('[name="default_model"]')).to_have_value("deepseek-chat")

            form.locator('[name="name"]').fill("Not A Name")
            form.locator('[name="base_url"]').fill(f"{upstream.url}/v1")
            form.locator('[name="api_key"]').fill(SECRET)
            form.locator('[name="default_model"]').fill(model)
            form.locator('[name="display_name"]').fill("Web provider")
            page.click("#prov-save")  # refused: the error shows next to the name field
            expect(form.locator('.prov-row[data-field="name"] .field-error')).to_contain_text("lowercase")
            form.locator('[name="name"]').fill("webprov")

            page.click("#prov-test")
            expect(form.locator(".prov-status")).to_contain_text("ok:", timeout=20000)
            expect(form.locator(".prov-status")).to_have_attribute("data-diagnosis", "ok")
            page.screenshot(path=str(ARTIFACTS / "settings-01-form.png"))

            page.click("#prov-save")
            row = page.locator('.prov-table tr[data-name="webprov"]')
            expect(row).to_have_class("highlight")
            saved = yaml.safe_load(cfg.path.read_text())["providers"]["webprov"]
            assert saved["api_key"] == "${env.SLUICEWAY_WEBPROV_API_KEY}" and saved["display_name"] == "Web provider"
            assert SECRET in (tmp_path / ".env").read_text()
            expect(row).to_contain_text("Web provider")
            # its models are in the chat's picker, the new one selected — without a reload
            expect(page.locator("#model")).to_have_value(f"webprov/{model}")
            page.screenshot(path=str(ARTIFACTS / "settings-02-saved.png"))

            page.click("#prov-close")
            page.fill("#input", "Hi there")
            page.press("#input", "Enter")
            reply = page.locator("#messages .msg.assistant").last
            expect(reply.locator(".content")).to_contain_text("Hello from the new provider.", timeout=15000)
            assert upstream.last(model).headers["Authorization"] == f"Bearer {SECRET}"
            assert SECRET not in page.content()

            # edit: the form comes back filled in, the secret only as a masked placeholder
            page.click("#open-providers")
            row.locator('[data-action="edit"]').click()
            expect(form.locator('[name="api_key"]')).to_have_attribute("placeholder", re.compile("saved: sk-…Q8r1"))
            expect(form.locator('[name="base_url"]')).to_have_value(f"{upstream.url}/v1")
            assert form.locator('[name="api_key"]').input_value() == ""
            form.locator('[name="display_name"]').fill("Web provider (edited)")
            page.click("#prov-save")
            expect(row).to_contain_text("Web provider (edited)")
            # delete (asks for a second click): its models leave the picker
            row.locator('[data-action="delete"]').click()
            row.locator('[data-action="delete"]').click()
            expect(row).to_have_count(0)
            expect(page.locator(f'#model option[value="webprov/{model}"]')).to_have_count(0)
            assert SECRET not in page.content()
            assert not errors, errors
            browser.close()
            saved = yaml.safe_load(cfg.path.read_text())["providers"]
            assert saved == {}  # deleted from the file, and its key from .env
            assert SECRET not in (tmp_path / ".env").read_text()
    finally:
        srv.stop()
