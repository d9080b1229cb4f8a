"""Runs survive their client: reattach with Last-Event-ID (or ?after=N) and
get exactly the missed events, then the live tail; stop by id; several
watchers; graceful shutdown. Run logs in memory and in real Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.server.app import create_app
from sluiceway.store import Store

from .conftest import ServerThread, make_config, require_service, running
from .test_sessions_chat import messages, no_env_store_overrides, read_sse, text_of, wait_for  # noqa: F401 (autouse fixture)
from .upstream import HANG, chat_chunk, chat_text_stream, sse

REDIS = "redis://127.0.0.1:6379/0"
PIECES = [f"w{i} " for i in range(12)]
TEXT = "".join(PIECES)


def runs_config(backend: str) -> dict:
    if backend == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        return {"redis_url": REDIS, "shutdown_grace": 0}
    return {"shutdown_grace": 0}


@pytest.fixture(scope="module", params=["memory", "redis"])
def pair(request, upstream, tmp_path_factory) -> Iterator[tuple[ServerThread, ServerThread]]:
    """(where runs start, where clients reattach and stop). With Redis these
    are two servers sharing the run logs and the database, so reattaching
    reads Redis; in memory it is one server."""
    db = tmp_path_factory.mktemp("runs") / "runs.db"
    cfg = make_config(upstream, store={"url": f"sqlite+aiosqlite:///{db}", "checkpoint_interval": 0.1},
                      runs=runs_config(request.param))
    with running(cfg, replicas=request.param == "redis") as pair:
        yield pair


def start_stream(srv: ServerThread, model: str, limit: int | None) -> tuple[dict, list[tuple[int, dict]]]:
    with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "go", "model": model},
                      timeout=10) as resp:
        assert resp.status_code == 200, resp.read()
        return read_sse(resp, limit=limit)


def reattach(srv: ServerThread, run_id: str, after: int, *, header: bool = True,
             limit: int | None = None) -> list[tuple[int, dict]]:
    kw = {"headers": {"last-event-id": str(after)}} if header else {"params": {"after": after}}
    with httpx.stream("GET", f"{srv.url}/runs/{run_id}/stream", timeout=10, **kw) as resp:
        assert resp.status_code == 200, resp.read()
        return read_sse(resp, limit=limit)[1]


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(1, 16), second=st.integers(0, 16), header=st.booleans(), slow=st.booleans())
def test_reattach_gets_the_rest_exactly_once(upstream, pair, first, second, header, slow):
    a, b = pair
    model = f"r-prop-{uuid.uuid4().hex[:8]}"
    upstream.add(model, chat_text_stream(PIECES, delay=0.01 if slow else 0.0))
    run, got = start_stream(a, f"up/{model}", limit=first)
    seen = list(got)
    if seen[-1][1]["type"] != "finish":  # a second disconnect point, part-way through the rest
        seen += reattach(b, run["run_id"], seen[-1][0], header=header, limit=second or None)
    if seen[-1][1]["type"] != "finish":
        seen += reattach(a if header else b, run["run_id"], seen[-1][0], header=not header)
    ids = [i for i, _ in seen]
    assert ids == list(range(1, len(ids) + 1)), "duplicated or missing events"
    assert seen[-1][1]["type"] == "finish"
    assert text_of(seen) == TEXT
    # and from scratch, the whole log again
    assert reattach(b, run["run_id"], 0) == seen
    assert reattach(a, run["run_id"], 0) == seen


def test_stop_keeps_the_partial_answer_and_ends_every_watcher(upstream, pair):
    a, b = pair
    model = f"r-stop-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "so far "})), sse(chat_chunk({"content": "so good"})), HANG])
    run, got = start_stream(a, f"up/{model}", limit=2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        watchers = [pool.submit(reattach, srv, run["run_id"], 0) for srv in (a, b)]
        wait_for(lambda: "so good" in (messages(b, run["session_id"])[1]["text"]))  # checkpointed
        r = httpx.post(f"{b.url}/runs/{run['run_id']}/stop", timeout=10)
        assert r.status_code == 200 and r.json()["stopped"] is True
        msg = r.json()["message"]
        assert (msg["status"], msg["text"]) == ("interrupted", "so far so good")
        ends = [w.result(5) for w in watchers]
    assert ends[0] == ends[1]  # two watchers saw the same events
    assert ends[0][-1][1] == {"type": "abort", "reason": "stopped"}
    assert text_of(ends[0]) == "so far so good"
    assert upstream.last(model).wait_closed(1.0)
    again = httpx.post(f"{b.url}/runs/{run['run_id']}/stop", timeout=10)
    assert again.status_code == 200 and again.json()["stopped"] is False


def test_graceful_shutdown_saves_active_runs_as_interrupted(upstream, tmp_path, request):
    backend = "memory"
    db = f"sqlite+aiosqlite:///{tmp_path}/shutdown.db"
    cfg = make_config(upstream, store={"url": db, "checkpoint_interval": 5}, runs=runs_config(backend))
    s = ServerThread(create_app(cfg)).start()
    model = f"r-shut-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "unfinished"})), HANG])
    try:
        run, _ = start_stream(s, f"up/{model}", limit=2)
    finally:
        s.stop()
    assert upstream.last(model).wait_closed(1.0)

    async def check() -> dict:
        store = await Store.open(db)
        try:
            return await store.get_message(run["message_id"])
        finally:
            await store.close()

    msg = asyncio.run(check())
    # the checkpoint interval (5 s) never fired: the text is there because shutdown saved it
    assert (msg["status"], msg["text"]) == ("interrupted", "unfinished")
