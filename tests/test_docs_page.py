"""The API docs page at /docs: rendered in headless Chromium from the
server's own /openapi.json with no request leaving the server (no CDN), every
documented operation listed, filterable, and behind the document's own key
rule when the server has keys."""

from __future__ import annotations

import os

import httpx
import pytest

from .conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if IN_CI:
        raise RuntimeError(f"{CHROMIUM} is required in CI")
    pytest.skip("chromium is missing", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def count_ops(doc: dict) -> int:
    return sum(1 for item in doc["paths"].values() for op in item.values() if isinstance(op, dict) and "responses" in op)


def open_docs(url: str, key: str | None = None):
    p = sync_playwright().start()
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    seen: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None)
    page.goto(f"{url}/docs")
    return p, browser, page, seen, errors


def test_docs_page_lists_every_operation_offline(make_server):
    srv = make_server()
    doc = httpx.get(f"{srv.url}/openapi.json").json()
    p, browser, page, seen, errors = open_docs(srv.url)
    try:
        expect(page.locator("html")).to_have_attribute("data-ready", "docs")  # not wait_for_function: the page's CSP forbids eval
        assert page.locator(".docs-op").count() == count_ops(doc)
        expect(page.locator("#status")).to_have_text(f"{count_ops(doc)} operations")
        page.fill("#filter", "/readyz")
        visible = page.locator(".docs-op:not([hidden])")
        expect(visible).to_have_count(1)
        visible.locator("summary").click()
        expect(visible).to_contain_text("Readiness")
        page.fill("#filter", "/v1/chat/completions")
        page.locator(".docs-op:not([hidden]) summary").first.click()
        expect(page.locator(".docs-op:not([hidden]) pre").first).to_contain_text('"messages"')  # the body schema
    finally:
        browser.close()
        p.stop()
    assert all(u.startswith(srv.url) or u.startswith("data:") for u in seen), seen  # nothing from a CDN
    assert errors == []


def test_docs_page_asks_for_the_key_when_the_document_needs_one(make_server):
    srv = make_server(server={"keepalive": 15, "api_keys": ["sk-docs"]})
    assert httpx.get(f"{srv.url}/docs").status_code == 200  # the page is public, the document is not
    assert httpx.get(f"{srv.url}/openapi.json").status_code == 401
    p, browser, page, _, _ = open_docs(srv.url)
    try:
        expect(page.locator("html")).to_have_attribute("data-ready", "key")  # not wait_for_function: the page's CSP forbids eval
        page.fill("#key", "sk-docs")
        page.click("#key-form button")
        expect(page.locator("html")).to_have_attribute("data-ready", "docs")  # not wait_for_function: the page's CSP forbids eval
        assert page.locator(".docs-op").count() > 20
    finally:
        browser.close()
        p.stop()
