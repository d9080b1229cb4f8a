"""Two sluiceway servers (two uvicorn instances on different ports) sharing
one PostgreSQL database and one Redis: a run started on A is watched from the
right event and stopped from B."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator

import httpx
import pytest

from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config, require_service
from .test_runs_resume import reattach, start_stream
from .test_sessions_chat import messages, no_env_store_overrides, text_of, wait_for  # noqa: F401 (autouse fixture)
from .test_sessions_store import pg_database
from .upstream import HANG, chat_chunk, chat_text_stream, sse


@pytest.fixture(scope="module")
def replicas(upstream) -> Iterator[tuple[ServerThread, ServerThread]]:
    require_service("Redis", "127.0.0.1", 6379)
    url, drop = asyncio.run(pg_database())
    cfg = make_config(upstream, store={"url": url, "checkpoint_interval": 0.1},
                      runs={"redis_url": "redis://127.0.0.1:6379/0", "shutdown_grace": 0})
    a = ServerThread(create_app(cfg)).start()
    b = ServerThread(create_app(cfg.model_copy(deep=True))).start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
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
