"""A scripted fake upstream LLM server on a real socket.

Tests register a *script* under a name and send requests whose model (in the
JSON body, or anywhere in the URL path, as Gemini and Bedrock put it) is that
name. A script is a status, headers and a list of steps: bytes to write, a
float to pause (seconds), a ``threading.Event`` (a gate: wait until the test
sets it, so the test, not the clock, decides when the stream goes on),
``HANG`` to stall until the client leaves, or ``DROP`` to cut the connection. Every request is recorded (path, headers,
body) with the moment the client closed the connection, so tests can prove
that cancellation reached the upstream.

Runs in its own thread and event loop so that sync clients (the openai SDK)
and the server under test can share the process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


class _Step:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HANG = _Step("HANG")  # stall until the client leaves
DROP = _Step("DROP")  # cut the connection mid-stream


@dataclass
class Script:
    steps: list[Any] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    times: int | None = None  # serve this many times, then fall through to ``then``
    then: Script | None = None


@dataclass
class Record:
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    started: float
    ended: float | None = None
    client_closed: bool = False
    completed: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        return self.done.wait(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scripts: dict[str, Script] = {}
        self.records: list[Record] = []
        self.default_models: list[str] = []
        self._since: dict[str, int] = {}
        # exact request paths served by a script before any other matching
        # (vendor-shaped model lists such as Gemini's GET /v1beta/models)
        self.routes: dict[str, Script] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)

    # ---------------------------------------------------------------- control
    def add(self, name: str, script: Script | list[Any], **kw: Any) -> str:
        self.scripts[name] = script if isinstance(script, Script) else Script(list(script), **kw)
        # tests share one fake: a name's records count from its latest registration
        self._since[name] = len(self.records)
        return name

    def for_model(self, name: str) -> list[Record]:
        return [r for r in self.records[self._since.get(name, 0):]
                if r.body.get("model") == name or name in r.path]

    def last(self, name: str) -> Record:
        recs = self.for_model(name)
        assert recs, f"no upstream request for {name!r}"
        return recs[-1]

    def start(self) -> FakeUpstream:
        self._thread.start()
        assert self._ready.wait(10), "fake upstream did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)

    # ----------------------------------------------------------------- server
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()

    def _find(self, path: str, body: Any) -> tuple[str, Script] | None:
        if path in self.routes:
            return path, self.routes[path]
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and model in self.scripts:
            return model, self.scripts[model]
        for name in sorted(self.scripts, key=len, reverse=True):
            if name in path:
                return name, self.scripts[name]
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {"_": body}
        rec = Record(request.path_qs, dict(request.headers), body, raw, time.monotonic())
        self.records.append(rec)
        if request.method == "GET" and request.path.rstrip("/").endswith("/models") \
                and request.path not in self.routes:
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
                    for m in self.default_models or sorted(self.scripts)]
            rec.completed = True
            rec.done.set()
            return web.json_response({"object": "list", "data": data})
        found = self._find(request.path, body)
        if found is None:
            rec.completed = True
            rec.done.set()
            return web.json_response({"error": {"message": f"no script for {request.path}", "type": "not_found"}},
                                     status=404)
        name, script = found
        if script.times is not None:
            script.times -= 1
            if script.times <= 0 and script.then is not None:
                self.scripts[name] = script.then
        resp = web.StreamResponse(status=script.status, headers=script.headers)
        try:
            await resp.prepare(request)
            for step in script.steps:
                if step is HANG:
                    await self._sleep(request, 3600)
                elif step is DROP:
                    request.transport.close()  # type: ignore[union-attr]
                    rec.completed = True
                    return resp
                elif isinstance(step, bytes | str):
                    await resp.write(step.encode() if isinstance(step, str) else step)
                elif isinstance(step, int | float):
                    await self._sleep(request, float(step))
                elif isinstance(step, threading.Event):
                    while not step.is_set():
                        await self._sleep(request, 0.01)
                if self._gone(request):
                    raise ConnectionResetError
            await resp.write_eof()
            rec.completed = True
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            rec.client_closed = True
        finally:
            rec.ended = time.monotonic()
            rec.done.set()
        return resp

    @staticmethod
    def _gone(request: web.Request) -> bool:
        t = request.transport
        return t is None or t.is_closing()

    async def _sleep(self, request: web.Request, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._gone(request):
                raise ConnectionResetError
            await asyncio.sleep(min(0.005, max(0.0, end - time.monotonic())))


# ------------------------------------------------------------ wire builders

def sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()


def chat_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, usage: dict | None = None,
               id: str = "chatcmpl-fake", model: str = "fake-model", choices: bool = True) -> dict[str, Any]:
    c: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    c["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else []
    if usage is not None:
        c["usage"] = usage
    return c


def chat_text_stream(pieces: list[str], *, finish: str = "stop", usage: dict | None = None,
                     delay: float = 0.0, done: bool = True) -> list[Any]:
    """The steps of a plain Chat Completions text stream."""
    steps: list[Any] = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for p in pieces:
        if delay:
            steps.append(delay)
        steps.append(sse(chat_chunk({"content": p})))
    steps.append(sse(chat_chunk({}, finish)))
    if usage is not None:
        steps.append(sse(chat_chunk(usage=usage, choices=False)))
    if done:
        steps.append(b"data: [DONE]\n\n")
    return steps


def usage_wire(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}
