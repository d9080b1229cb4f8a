"""Hot reload: a provider added while 50 streams are in flight on another
serves at once and breaks nothing; a provider replaced mid-stream keeps
serving its open streams from the old instance, whose HTTP session closes
only after they end; hand edits of sluiceway.yaml and .env are picked up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp import web

from sluiceway.engine.config import load_config
from sluiceway.engine.settings.inflight import inflight
from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config
from .upstream import chat_chunk, chat_text_stream, free_port, sse

pytestmark = pytest.mark.timeout(120)


class GatedUpstream:
    """An OpenAI-compatible upstream whose streams send "first " and then wait
    for the test to open the gate before sending "last" and finishing, so the
    test decides when streams are in flight instead of racing them."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.arrived = 0
        self.finished = 0
        self.changed = threading.Condition()
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._gate = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "gated", "object": "model", "owned_by": "gate"}]})

    def _bump(self, what: str) -> None:
        with self.changed:
            setattr(self, what, getattr(self, what) + 1)
            self.changed.notify_all()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse(chat_chunk({"role": "assistant", "content": ""})))
        await resp.write(sse(chat_chunk({"content": "first "})))
        self._bump("arrived")
        assert self._gate is not None
        await self._gate.wait()
        await resp.write(sse(chat_chunk({"content": "last"})))
        await resp.write(sse(chat_chunk({}, "stop")))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self._bump("finished")
        return resp

    def wait(self, what: str, n: int, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: getattr(self, what) >= n, timeout), f"{what}: {getattr(self, what)}"

    def open_gate(self) -> None:
        assert self._loop is not None and self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    before = dict(os.environ)
    yield
    for k in [k for k in os.environ if k not in before]:
        del os.environ[k]
    os.environ.update(before)


def start(tmp_path: Path, yaml_text: str):
    path = tmp_path / "sluiceway.yaml"
    path.write_text(yaml_text)
    cfg = load_config(path)  # as `sluiceway serve --config` reads it
    cfg.store.url = make_config(None).store.url  # a private SQLite file
    app = create_app(cfg)
    return ServerThread(app).start(), app, path


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def stream_text(url: str, model: str) -> str:
    text = []
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                for c in chunk.get("choices", []):
                    text.append(c["delta"].get("content") or "")
    return "".join(text)


def test_provider_added_and_replaced_while_50_streams_are_in_flight(tmp_path, upstream):
    gated = GatedUpstream()
    srv, app, path = start(tmp_path, f"embedded: false\nproviders:\n  busy: {{kind: openai, base_url: '{gated.url}/v1'}}\n")
    gw = app.state.sluiceway.gateway
    try:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            streams = [pool.submit(stream_text, srv.url, "busy/gated") for _ in range(50)]
            gated.wait("arrived", 50)  # all 50 are mid-answer now
            old = gw.providers["busy"]
            assert inflight(old) == 50
            # a new provider serves at once, while the 50 are open
            model = upstream.add(f"fresh-{uuid.uuid4().hex[:6]}", chat_text_stream(["served ", "at once"]))
            r = httpx.post(f"{srv.url}/settings/providers", json={
                "name": "fresh", "kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-fresh-0123456789"})
            assert r.status_code == 201, r.text
            assert stream_text(srv.url, f"fresh/{model}") == "served at once"
            # replacing the busy provider: new requests get a new instance, open streams keep the old one
            r = httpx.patch(f"{srv.url}/settings/providers/busy", json={"display_name": "Busy (edited)"})
            assert r.status_code == 200, r.text
            new = gw.providers["busy"]
            assert new is not old and inflight(old) == 50 and inflight(new) == 0
            assert old._session is not None and not old._session.closed  # not closed under its streams
            assert not any(f.done() for f in streams)
            gated.open_gate()
            texts = [f.result(30) for f in streams]
        assert texts == ["first last"] * 50  # nothing broke
        assert gated.finished == 50
        wait_for(lambda: old._session.closed)  # the old instance's session closes once they ended
        assert new._session is None or not new._session.closed
        assert stream_text(srv.url, "busy/gated") == "first last"  # the gate stays open: served by the new one
    finally:
        gated.open_gate()
        srv.stop()


def test_hand_edits_of_yaml_and_env_are_picked_up(tmp_path, upstream, caplog):
    model = upstream.add(f"hand-{uuid.uuid4().hex[:6]}", chat_text_stream(["by ", "hand"]))
    srv, app, path = start(tmp_path, "embedded: false\nproviders: {}\n")
    env = tmp_path / ".env"
    try:
        ids = lambda: [m["id"] for m in httpx.get(f"{srv.url}/v1/models").json()["data"]]  # noqa: E731
        assert not any(i.startswith("handmade/") for i in ids())
        env.write_text("# by hand\nHAND_KEY=sk-hand-first-000000\n")
        path.write_text("embedded: false\nproviders:\n  handmade:\n    kind: openai\n"
                        f"    base_url: {upstream.url}/v1\n    api_key: ${{env.HAND_KEY}}\n"
                        f"models:\n  by-hand: handmade/{model}\n")
        wait_for(lambda: "by-hand" in ids() and f"handmade/{model}" in ids())
        r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "by-hand", "messages": [
            {"role": "user", "content": "hi"}]})
        assert r.json()["choices"][0]["message"]["content"] == "by hand"
        assert upstream.last(model).headers["Authorization"] == "Bearer sk-hand-first-000000"
        # a new key in .env alone reaches the provider too
        env.write_text("# by hand\nHAND_KEY=sk-hand-second-11111\n")

        def second_key_used() -> bool:
            httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "by-hand", "messages": [
                {"role": "user", "content": "again"}]})
            return upstream.last(model).headers["Authorization"] == "Bearer sk-hand-second-11111"
        wait_for(second_key_used)
        # a broken hand edit changes nothing and says why in the log
        sync = app.state.settings_sync
        seen = sync.reloads
        path.write_text("embedded: false\nproviders:\n  handmade: {kind: openai, baseurl: http://x}\n")
        wait_for(lambda: any("not applying" in r.getMessage() for r in caplog.records))
        assert sync.reloads == seen and "by-hand" in ids()
        assert "did you mean 'base_url'" in "\n".join(r.getMessage() for r in caplog.records)
        # removing the provider by hand stops serving it
        path.write_text("embedded: false\nproviders: {}\n")
        wait_for(lambda: f"handmade/{model}" not in ids())
        assert yaml.safe_load(path.read_text())["providers"] == {}
    finally:
        srv.stop()
