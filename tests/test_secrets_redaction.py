"""Configured secrets are redacted by value, wherever they sit: responses, traces, log lines, the database."""

from __future__ import annotations

import logging

import httpx
import pytest

from sluiceway.core.secrets import SECRETS, Scrubber, install_log_scrubber, secret_values
from sluiceway.providers.openai import OpenAISettings

from .upstream import Script, chat_text_stream

KEY = "sk-key-AAAA1111bbbb"
HEADER = "hdr-pass-CCCC2222"
QUERY = "qry-code-DDDD3333"
URL_PW = "url-pw-EEEE4444"
ALL = (KEY, HEADER, QUERY, URL_PW)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture
def capture():
    h = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.DEBUG)
    yield h
    root.removeHandler(h)
    root.setLevel(old)


def test_secret_values_are_found_in_every_kind_of_field():
    s = OpenAISettings(base_url=f"http://bob:{URL_PW}@127.0.0.1:1/v1", api_key=KEY,
                       headers={"x-upstream-pass": HEADER, "content-type": "application/json"}, query={"code": QUERY})
    found = secret_values(s)
    for v in ALL:
        assert v in found
    assert "application/json" not in found  # protocol settings are not credentials
    scrubber = Scrubber()
    scrubber.add(found)
    text = f"a {KEY} b {HEADER} c {QUERY.replace('-', '%2D')} d {URL_PW}"
    assert scrubber.scrub(f"a {KEY} b {HEADER} c {QUERY} d {URL_PW}") == "a [redacted] b [redacted] c [redacted] d [redacted]"
    assert KEY not in scrubber.scrub(text)


def test_no_configured_secret_leaks_into_responses_traces_logs_or_the_store(upstream, make_server, tmp_path, capture):
    db = tmp_path / "secrets.db"
    providers = {"up": {"kind": "openai", "base_url": f"http://127.0.0.1:{upstream.port}/v1", "api_key": KEY,
                        "headers": {"x-upstream-pass": HEADER}, "query": {"code": QUERY}},
                 # credentials in the URL itself (sent as basic auth)
                 "basic": {"kind": "openai", "base_url": f"http://bob:{URL_PW}@127.0.0.1:{upstream.port}/v1"}}
    srv = make_server(providers=providers, store={"url": f"sqlite+aiosqlite:///{db}"})
    echo = (f'{{"error": {{"message": "Incorrect API key {KEY}; header {HEADER}; code {QUERY}; pw {URL_PW}",'
            f' "type": "invalid_request_error"}}}}').encode()
    upstream.add("sec-fail", Script([echo], status=401, headers={"content-type": "application/json"}))
    upstream.add("sec-ok", chat_text_stream(["all ", "good"]))
    bodies: list[str] = []
    r = httpx.post(f"{srv.url}/v1/chat/completions", timeout=10,
                   json={"model": "up/sec-fail", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code >= 400
    bodies.append(r.text)
    ids = []
    for model in ("up/sec-fail", "up/sec-ok", "basic/sec-fail", "basic/sec-ok"):
        r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": model}, timeout=10)
        bodies.append(r.text)
        ids.append((r.json().get("session_id"), (r.json().get("message") or {}).get("id")))
    ok = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/sec-ok"}, timeout=10).json()
    assert ok["message"]["text"] == "all good", ok
    # the upstream really was sent every secret (so the check below can fail)
    sent = upstream.last("sec-ok")
    assert sent.headers.get("x-upstream-pass") == HEADER and sent.headers.get("Authorization") == f"Bearer {KEY}"
    assert QUERY in sent.path
    for sid, mid in ids:
        if sid:
            bodies.append(httpx.get(f"{srv.url}/sessions/{sid}/messages").text)
        if mid:
            trace = httpx.get(f"{srv.url}/messages/{mid}/trace")
            assert trace.status_code == 200, trace.text
            bodies.append(trace.text)
    wire = httpx.get(f"{srv.url}/messages/{ok['message']['id']}/trace").json()
    assert wire["request"]["wire"]["request"]["url"].count("[redacted]") >= 1
    for secret in ALL:
        for body in bodies:
            assert secret not in body, f"{secret} leaked in a response: {body[:300]}"
        for line in capture.lines:
            assert secret not in line, f"{secret} leaked in a log line: {line[:300]}"
    srv.stop()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("secrets.db"))
    assert raw
    for secret in ALL:
        assert secret.encode() not in raw, f"{secret} is in the database file"
    SECRETS.clear()


def test_log_lines_and_tracebacks_are_scrubbed(capture):
    install_log_scrubber()
    SECRETS.add([KEY])
    try:
        log = logging.getLogger("sluiceway.test")
        log.warning("calling upstream with %s", KEY)
        try:
            raise RuntimeError(f"upstream said: bad key {KEY}")
        except RuntimeError:
            log.exception("failed")
        text = "\n".join(capture.lines)
        assert "calling upstream with [redacted]" in text and "bad key [redacted]" in text
        assert KEY not in text
    finally:
        SECRETS.clear()
