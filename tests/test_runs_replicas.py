"""Two sluiceway replicas — two ``sluiceway serve`` OS processes on different
ports — sharing one PostgreSQL database and one Redis: a run started on A is
watched from the right event and stopped from B, and an AI SDK chat started
on A is resumed from B."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import require_service
from .test_runs_crash import Proc
from .test_runs_resume import reattach, start_stream
from .test_sessions_chat import messages, no_env_store_overrides, text_of, wait_for  # noqa: F401 (autouse fixture)
from .test_sessions_store import pg_database
from .upstream import HANG, chat_chunk, chat_text_stream, free_port, sse

REDIS = "redis://127.0.0.1:6379/0"


def stop(proc: Proc) -> None:
    """SIGTERM (graceful: active runs are saved), then SIGKILL if it lingers."""
    if proc.p.poll() is None:
        os.kill(proc.p.pid, signal.SIGTERM)
        try:
            proc.p.wait(15)
        except Exception:
            proc.kill()


@pytest.fixture(scope="module")
def replicas(upstream, tmp_path_factory) -> Iterator[tuple[Proc, Proc]]:
    require_service("Redis", "127.0.0.1", 6379)
    url, drop = asyncio.run(pg_database())
    config: Path = tmp_path_factory.mktemp("replicas") / "sluiceway.yaml"
    config.write_text(yaml.safe_dump({
        "embedded": False,
        "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x"}},
        "timeouts": {"connect": 2, "first_token": 5, "idle": 5, "total": 60},
        "resilience": {"retries": 0},
        "store": {"url": url, "checkpoint_interval": 0.1},
        "runs": {"redis_url": REDIS, "shutdown_grace": 0},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    procs: list[Proc] = []
    try:
        procs.append(Proc(config, free_port(), env))
        procs.append(Proc(config, free_port(), env))
        assert procs[0].p.pid != procs[1].p.pid
        yield procs[0], procs[1]
    finally:
        for p in procs:
            stop(p)
        asyncio.run(drop())


def test_start_on_a_reattach_and_stop_on_b(upstream, replicas):
    a, b = replicas
    model = f"rep-stop-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "from "})), 0.05, sse(chat_chunk({"content": "replica A"})),
                         HANG])
    run, got = start_stream(a, f"up/{model}", limit=2)  # text-start, "from "; then the client leaves A
    assert [i for i, _ in got] == [1, 2]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(reattach, b, run["run_id"], 2)
        wait_for(lambda: messages(b, run["session_id"])[1]["text"] == "from replica A")
        r = httpx.post(f"{b.url}/runs/{run['run_id']}/stop", timeout=15)
        rest = watcher.result(10)
    assert r.status_code == 200 and r.json()["stopped"] is True
    msg = r.json()["message"]
    assert (msg["status"], msg["text"]) == ("interrupted", "from replica A")
    assert [i for i, _ in rest] == list(range(3, 3 + len(rest)))  # exactly the events after 2
    assert text_of(got + rest) == "from replica A"
    assert rest[-1][1] == {"type": "abort", "reason": "stopped"}
    assert upstream.last(model).wait_closed(1.0), "A did not close the upstream"
    assert messages(a, run["session_id"]) == messages(b, run["session_id"])


def test_run_on_a_completes_while_watched_from_b(upstream, replicas):
    a, b = replicas
    model = f"rep-full-{uuid.uuid4().hex[:8]}"
    pieces = [f"p{i} " for i in range(10)]
    upstream.add(model, chat_text_stream(pieces, delay=0.02))
    run, got = start_stream(a, f"up/{model}", limit=1)
    events = reattach(b, run["run_id"], 0)
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1]["type"] == "finish" and text_of(events) == "".join(pieces)
    stored = messages(b, run["session_id"])[1]
    assert (stored["status"], stored["text"]) == ("complete", "".join(pieces))
    info = httpx.get(f"{b.url}/runs/{run['run_id']}").json()
    assert info["live"] is False and info["session_id"] == run["session_id"]


def test_a_watcher_on_b_outlasts_a_long_silence_of_the_run_on_a(upstream, replicas):
    a, b = replicas
    model = f"rep-quiet-{uuid.uuid4().hex[:8]}"
    upstream.add(model, chat_text_stream(["before ", "the pause ", "after"], delay=0.0)[:3] + [2.5]
                 + chat_text_stream(["before ", "the pause ", "after"])[3:])
    run, got = start_stream(a, f"up/{model}", limit=1)
    events = reattach(b, run["run_id"], 1)  # blocks through the silence, across several Redis reads
    assert text_of(got + events) == "before the pause after"
    assert events[-1][1]["type"] == "finish"


def test_ai_sdk_chat_started_on_a_resumes_on_b(upstream, replicas):
    a, b = replicas
    model = f"rep-ui-{uuid.uuid4().hex[:8]}"
    pieces = [f"u{i} " for i in range(8)]
    upstream.add(model, chat_text_stream(pieces, delay=0.05))
    chat_id = f"rep-chat-{uuid.uuid4().hex[:8]}"
    body = {"id": chat_id, "trigger": "submit-message", "model": f"up/{model}",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}]}
    seen = b""
    with httpx.stream("POST", f"{a.url}/api/chat", json=body, timeout=10) as r:
        for chunk in r.iter_raw():
            seen += chunk
            if b"u1 " in seen:
                break  # the client drops; the run goes on on A
    r = httpx.get(f"{b.url}/api/chat/{chat_id}/stream", timeout=10)
    assert r.status_code == 200
    chunks = [json.loads(line[6:]) for line in r.text.split("\n")
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "".join(pieces)
    assert chunks[-1]["type"] == "finish"
    assert httpx.get(f"{a.url}/api/chat/{chat_id}/stream", timeout=10).status_code == 204  # delivered


def test_background_response_on_a_is_reattached_and_cancelled_on_b(upstream, replicas):
    import openai

    a, b = replicas
    model = f"rep-bg-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "made on A"})), HANG])
    with (openai.OpenAI(base_url=f"{a.url}/v1", api_key="x", max_retries=0, timeout=20) as ca,
          openai.OpenAI(base_url=f"{b.url}/v1", api_key="x", max_retries=0, timeout=20) as cb):
        first = ca.responses.create(model=f"up/{model}", input="go", background=True, stream=True)
        got = []
        for ev in first:
            got.append(ev)
            if ev.type == "response.output_text.delta":
                break
        first.close()
        rid = got[0].response.id
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            watcher = pool.submit(lambda: list(cb.responses.retrieve(rid, stream=True,
                                                                     starting_after=got[-1].sequence_number)))
            wait_for(lambda: cb.responses.retrieve(rid).status == "in_progress")
            cancelled = cb.responses.cancel(rid)
            rest = watcher.result(10)
        assert cancelled.status == "cancelled" and cancelled.output[0].content[0].text == "made on A"
        assert all(e.sequence_number > got[-1].sequence_number for e in rest)
        assert ca.responses.retrieve(rid).status == "cancelled"  # one database
        assert upstream.last(model).wait_closed(1.0), "A did not close the upstream"
