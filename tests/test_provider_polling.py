"""Polling provider: a scripted task API on a real socket (submit, status
snapshots, cancel), read through sluiceway's /v1/chat/completions with the
openai SDK, plus pure tests of the snapshot diffing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web

from sluiceway.core import ChatRequest, Deadlines, Message, Timeout, UpstreamError
from sluiceway.providers.polling import PollingProvider, PollingSettings, SnapshotDiff, dig, safe_cut

from .providers.gateway import sdk_client, user
from .upstream import free_port

KEY = "task-api-secret-do-not-leak"


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class TaskAPI:
    """A task-style API: ``POST /v1/tasks`` creates a task for the scripted
    model named in the body; each ``GET /v1/tasks/{id}`` returns the next
    scripted status document (the last one repeats); ``POST
    /v1/tasks/{id}/cancel`` records the cancel. A step is a dict (200 JSON),
    ``(status, dict[, headers])``, or raw bytes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scripts: dict[str, list[Any]] = {}
        self.submit_errors: dict[str, tuple[int, dict, dict]] = {}
        self.records: list[Req] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.cancelled: dict[str, float] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._run, daemon=True, name="task-api").start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/tasks", self._submit)
        app.router.add_get("/v1/tasks/{id}", self._status)
        app.router.add_post("/v1/tasks/{id}/cancel", self._cancel)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()

    def stop(self) -> None:
        assert self._loop is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _record(self, request: web.Request) -> Req:
        raw = await request.read()
        rec = Req(request.method, request.path, dict(request.headers), json.loads(raw) if raw else None)
        self.records.append(rec)
        return rec

    async def _submit(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        model = rec.body["model"]
        if model in self.submit_errors:
            status, body, headers = self.submit_errors[model]
            return web.json_response(body, status=status, headers=headers)
        tid = f"task-{model}-{len(self.tasks)}"
        self.tasks[tid] = {"model": model, "polls": 0}
        return web.json_response({"task_id": tid, "status": "queued"})

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        task = self.tasks[request.match_info["id"]]
        steps = self.scripts[task["model"]]
        step = steps[min(task["polls"], len(steps) - 1)]
        task["polls"] += 1
        if isinstance(step, bytes):
            return web.Response(body=step, content_type="application/json")
        if isinstance(step, tuple):
            return web.json_response(step[1], status=step[0], headers=step[2] if len(step) > 2 else None)
        return web.json_response(step)

    async def _cancel(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.cancelled[request.match_info["id"]] = time.monotonic()
        return web.json_response({"status": "cancelled"})

    def polls(self, model: str) -> list[Req]:
        return [r for r in self.records if r.method == "GET" and f"task-{model}-" in r.path]


def running(text: str, reasoning: str | None = None) -> dict:
    out: dict = {"text": text}
    if reasoning is not None:
        out["reasoning"] = reasoning
    return {"status": "running", "output": out}


def done(text: str, inp: int = 7, outp: int = 9, reasoning: str | None = None) -> dict:
    doc = running(text, reasoning)
    doc.update(status="succeeded", usage={"input_tokens": inp, "output_tokens": outp})
    return doc


def settings(api: TaskAPI, **kw: Any) -> dict[str, Any]:
    return {"submit_url": f"{api.url}/v1/tasks", "status_url": f"{api.url}/v1/tasks/{{task_id}}",
            "cancel_url": f"{api.url}/v1/tasks/{{task_id}}/cancel", "api_key": KEY,
            "task_id_path": "task_id", "text_path": "output.text", "reasoning_path": "output.reasoning",
            "error_path": "error.message", "input_tokens_path": "usage.input_tokens",
            "output_tokens_path": "usage.output_tokens", "interval": 0.05, **kw}


@pytest.fixture(scope="module")
def api():
    a = TaskAPI()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def client(upstream, api):
    with sdk_client(upstream, {"task": {"kind": "polling", **settings(api)}}) as c:
        yield c


def stream_deltas(client, model: str, **kw) -> tuple[list[str], str, list]:
    chunks = list(client.chat.completions.create(model=f"task/{model}", messages=user(), stream=True,
                                                 stream_options={"include_usage": True}, **kw))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    return deltas, reasoning, chunks


# ------------------------------------------------------------- over HTTP

FAMILY = "👨\u200d👩\u200d👧"
FINAL = f"Voilà: cafe\u0301 {FAMILY} 🇳🇴 done"


def test_snapshots_become_unicode_safe_deltas_with_reasoning_and_usage(api, client):
    api.scripts["grow"] = [
        {"status": "queued"},
        running("", "Thinking"),
        running("Voilà: cafe", "Thinking hard"),  # the accent on the e is still to come
        running("Voilà: cafe\u0301 👨\u200d", "Thinking hard"),  # a ZWJ sequence cut in the middle
        running(f"Voilà: cafe\u0301 {FAMILY} 🇳", "Thinking hard"),  # half a flag
        running(f"Voilà: cafe\u0301 {FAMILY} 🇳🇴 do", "Thinking hard"),
        done(FINAL, 7, 9, "Thinking hard"),
    ]
    deltas, reasoning, chunks = stream_deltas(client, "grow", max_tokens=20, temperature=0.5)
    assert "".join(deltas) == FINAL
    assert reasoning == "Thinking hard"
    for d in deltas:  # no delta starts inside a cluster or ends in a joiner
        assert unicodedata.category(d[0]) not in ("Mn", "Mc", "Me") and d[0] != "\u200d", deltas
        assert not d.endswith("\u200d"), deltas
    assert f"{FAMILY}" in "".join(d for d in deltas if FAMILY in d)  # the family arrived in one piece
    assert any("🇳🇴" in d for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 9)

    submit = next(r for r in api.records if r.method == "POST" and r.path == "/v1/tasks"
                  and r.body["model"] == "grow")
    assert submit.headers["Authorization"] == f"Bearer {KEY}"
    assert submit.body == {"model": "grow", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 20, "temperature": 0.5}
    polls = api.polls("grow")
    assert len(polls) == 7 and all(KEY not in p.path for p in polls)
    gaps = [b.at - a.at for a, b in zip(polls, polls[1:], strict=False)]
    assert min(gaps) >= 0.04  # the interval is honoured
    assert not any(t.startswith("task-grow-") for t in api.cancelled)  # finished tasks are not cancelled


def test_snapshot_cut_inside_a_surrogate_pair(api, client):
    # a backend slicing UTF-16 sends half an emoji; the stdlib JSON reads it as a lone surrogate
    api.scripts["surrogate"] = [b'{"status":"running","output":{"text":"ab\\ud83d"}}',
                                b'{"status":"running","output":{"text":"ab\\ud83d\\ude00c"}}',
                                done("ab😀cd")]
    deltas, _, _ = stream_deltas(client, "surrogate")
    assert "".join(deltas) == "ab😀cd" and "\ufffd" not in "".join(deltas)


def test_stale_shorter_snapshot_is_ignored(api, client):
    api.scripts["stale"] = [running("Hello wo"), running("Hel"), running("Hello world"), done("Hello world!")]
    deltas, _, _ = stream_deltas(client, "stale")
    assert "".join(deltas) == "Hello world!"


def test_rewritten_snapshot_is_an_error_after_partial_text(api, client):
    api.scripts["rewrite"] = [running("Hello there"), running("Goodbye"), done("Goodbye")]
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model="task/rewrite", messages=user(), stream=True):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert "".join(got) == "Hello ther"  # the last character was still held back
    assert "no longer extends" in str(info.value)


def test_failed_task_is_an_error_with_its_message(api, client):
    api.scripts["fails"] = [running("par"), {"status": "failed", "error": {"message": "quota exhausted"}}]
    with pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model="task/fails", messages=user(), stream=True))
    assert "quota exhausted" in str(info.value)
    assert not any(t.startswith("task-fails-") for t in api.cancelled)


def test_transient_poll_failures_are_retried_honouring_retry_after(api, client):
    api.scripts["flaky"] = [running("a"), (503, {"error": "busy"}), (504, {"error": "gateway"}),
                            (429, {"error": "slow down"}, {"retry-after": "0.3"}), done("abc")]
    deltas, _, _ = stream_deltas(client, "flaky")
    assert "".join(deltas) == "abc"
    polls = api.polls("flaky")
    assert len(polls) == 5
    assert polls[4].at - polls[3].at >= 0.29  # waited as long as the 429 asked, not the 0.05 s interval


def test_too_many_poll_failures_end_the_stream(api, client):
    api.scripts["down"] = [running("a"), (503, {"error": "still busy"})]
    with pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model="task/down", messages=user(), stream=True))
    assert "still busy" in str(info.value)
    assert len(api.polls("down")) == 5  # one good poll, then max_poll_errors (3) retries and the last failure


def test_task_gone_is_not_retried(api, client):
    api.scripts["gone"] = [running("a"), (404, {"error": "task expired"})]
    with pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model="task/gone", messages=user(), stream=True))
    assert "task expired" in str(info.value)
    assert len(api.polls("gone")) == 2


# ------------------------------------------------- deadlines, direct calls

async def _drain(p: PollingProvider, model: str, d: Deadlines) -> str:
    text = ""
    async for batch in p.stream(ChatRequest(model=model, messages=[Message.of("user", "x")]), deadline=d):
        text += "".join(e.delta for e in batch if e.type == "text-delta")
    return text


# first-token and idle deadlines are in the provider contract (tests/providers); the total
# deadline of a task that keeps growing is the polling loop's own
@pytest.mark.parametrize(("model", "steps", "deadline", "kind"), [
    ("drags", [running("a" * n) for n in range(1, 200)], Deadlines(first_token=5, idle=5, total=0.4), "total"),
])
async def test_deadlines_stop_polling_and_cancel(api, model, steps, deadline, kind):
    api.scripts[model] = steps
    p = PollingProvider("task", PollingSettings(**settings(api)))
    t0 = time.monotonic()
    try:
        with pytest.raises(Timeout) as info:
            await _drain(p, model, deadline)
    finally:
        await p.aclose()  # waits for the fire-and-forget cancel
    assert kind in info.value.message
    assert time.monotonic() - t0 < 1.5
    assert any(t.startswith(f"task-{model}-") for t in api.cancelled)


async def test_answer_in_submit_response_needs_no_poll(api):
    # an API that answers synchronously still works: the submit response is the first snapshot
    p = PollingProvider("task", PollingSettings(**settings(api, task_id_path="status", text_path="task_id",
                                                           done_path="status", done_values=["queued"])))
    try:
        text = await _drain(p, "sync", Deadlines())
    finally:
        await p.aclose()
    assert text == "task-sync-" + str(len(api.tasks) - 1)
    assert api.polls("sync") == []


# ------------------------------------------------------------- pure part

@pytest.mark.parametrize(("snapshot", "emit"), [
    ("Hello", "Hell"),  # the last character may still take a combining mark
    ("cafe\u0301", "caf"),  # base + combining acute held together
    ("a 👨\u200d👩", "a "),  # a ZWJ sequence is held back whole
    ("a 👍🏽", "a "),  # emoji + skin tone modifier
    ("x 🇳🇴", "x "),  # a complete flag is the last cluster
    ("x 🇳🇴🇸", "x 🇳🇴"),  # half of the next flag
    ("ab\ud83d", "a"),  # a high surrogate waiting for its pair
    ("", ""),
])
def test_fixture_safe_cut_holds_back_the_last_cluster(snapshot, emit):
    assert snapshot[:safe_cut(snapshot, 0)] == emit


def test_fixture_snapshot_diff_final_flushes_and_cleans_lone_surrogates():
    d = SnapshotDiff()
    assert d.feed("ab") == "a"
    assert d.feed("ab") == ""
    assert d.feed("ab\ud83d", final=True) == "b\ufffd"


def test_fixture_snapshot_diff_rejects_rewrites_but_not_stale_reads():
    d = SnapshotDiff()
    d.feed("hello world")
    assert d.feed("hello") == ""
    with pytest.raises(UpstreamError):
        d.feed("help")


def test_fixture_dig_paths():
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert dig(doc, "a.b.1.c") == 2 and dig(doc, "a.b.-1.c") == 2
    assert dig(doc, "a.x.c") is None and dig(doc, "a.b.5") is None and dig(doc, "") is None


def test_submit_body_styles_and_extra_params():
    base = {"submit_url": "http://x/t", "status_url": "http://x/t/{task_id}"}
    req = ChatRequest(model="m", messages=[Message.of("system", "be brief"), Message.of("user", "hi")],
                      stop=["END"], seed=1, extra={"priority": "low"})
    p = PollingProvider("t", PollingSettings(**base, params={"stream": False, "seed": 99}))
    assert p.submit_body(req) == {"stream": False, "model": "m", "seed": 1, "stop": ["END"], "priority": "low",
                                  "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": "hi"}]}
    q = PollingProvider("t", PollingSettings(**base, body_style="prompt"))
    assert q.submit_body(req)["prompt"] == "system: be brief\n\nuser: hi"
    assert q.task_url("http://x/t/{task_id}/cancel", "42") == "http://x/t/42/cancel"


def test_parse_status_states_case_insensitive():
    p = PollingProvider("t", PollingSettings(submit_url="u", status_url="s", done_path="state",
                                             done_values=["SUCCEEDED"], error_values=["FAILED"]))
    assert p.parse_status({"state": "succeeded", "output": {"text": "x"}}) == ("x", None, "done")
    assert p.parse_status({"state": "FAILED"})[2] == "failed"
    assert p.parse_status({"state": "RUNNING", "output": {"text": 5}}) == (None, None, "running")
