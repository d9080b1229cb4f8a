"""Crash: ``kill -9`` the real ``sluiceway serve`` process mid-stream, start it
again, and nothing is lost or stuck: the user message is there, the answer is
``interrupted`` with the text checkpointed before the kill, nothing is left
``streaming``. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from .test_sessions_chat import messages, no_env_store_overrides, read_sse, wait_for  # noqa: F401 (autouse fixture)
from .test_sessions_store import pg_database
from .upstream import HANG, chat_chunk, free_port, sse


class Proc:
    def __init__(self, config: Path, port: int, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.p = subprocess.Popen([sys.executable, "-m", "sluiceway.cli", "serve", "--config", str(config),
                                   "--port", str(port), "--log-level", "warning"],
                                  env=env, cwd=config.parent, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.p.poll() is not None:
                raise RuntimeError(f"server exited: {self.p.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/crash.db"
        return
    url, drop = asyncio.run(pg_database())
    try:
        yield url
    finally:
        asyncio.run(drop())


def test_kill_9_mid_stream_then_restart(upstream, tmp_path, database_url):
    model = f"crash-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "persisted "})), sse(chat_chunk({"content": "text"})), HANG])
    config = tmp_path / "sluiceway.yaml"
    config.write_text(yaml.safe_dump({
        "embedded": False,
        "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x"}},
        "store": {"url": "sqlite+aiosqlite:///unused.db", "checkpoint_interval": 0.1},
    }))
    env = {**os.environ, "DATABASE_URL": database_url}  # the environment overrides the file
    env.pop("REDIS_URL", None)
    port = free_port()
    srv = Proc(config, port, env)
    try:
        with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "tell me", "model": f"up/{model}"},
                          timeout=10) as resp:
            run, events = read_sse(resp, limit=3)
            # wait until the partial answer has been checkpointed, then crash hard
            wait_for(lambda: messages(srv, run["session_id"])[1]["text"] == "persisted text")
            assert messages(srv, run["session_id"])[1]["status"] == "streaming"
            srv.kill()
    finally:
        srv.kill()
    assert not (tmp_path / "unused.db").exists()
    srv = Proc(config, port, env)
    try:
        stored = messages(srv, run["session_id"])
        assert [(m["role"], m["status"], m["text"]) for m in stored] == [
            ("user", "complete", "tell me"), ("assistant", "interrupted", "persisted text")]
        sessions = httpx.get(f"{srv.url}/sessions").json()["data"]
        for s in sessions:
            assert all(m["status"] != "streaming" for m in messages(srv, s["id"]))
        # the run died with the process: its log is gone, the stored answer is the truth
        assert httpx.get(f"{srv.url}/runs/{run['run_id']}/stream").status_code == 404
    finally:
        srv.kill()


def test_kill_9_of_a_replica_another_replica_cleans_up(upstream, tmp_path):
    """Replicas share SQLite-on-disk here (PostgreSQL is the same code path,
    tested above) and Redis: when A dies mid-run, B serves what A had streamed
    and, once A's heartbeat lapses, marks the answer interrupted."""
    from sluiceway.server.app import create_app

    from .conftest import ServerThread, make_config, require_service

    require_service("Redis", "127.0.0.1", 6379)
    model = f"crash-rep-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": "persisted "})), sse(chat_chunk({"content": "text"})), HANG])
    db = f"sqlite+aiosqlite:///{tmp_path}/replicas.db"
    runs = {"redis_url": "redis://127.0.0.1:6379/0", "live_ttl": 1.0, "shutdown_grace": 0}
    config = tmp_path / "sluiceway.yaml"
    config.write_text(yaml.safe_dump({
        "embedded": False,
        "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x"}},
        "store": {"url": db, "checkpoint_interval": 0.1}, "runs": runs}))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    a = Proc(config, free_port(), env)
    b = ServerThread(create_app(make_config(upstream, store={"url": db}, runs=runs))).start()
    try:
        with httpx.stream("POST", f"{a.url}/chat/stream", json={"message": "hi", "model": f"up/{model}"},
                          timeout=10) as resp:
            run, events = read_sse(resp, limit=3)
            wait_for(lambda: messages(b, run["session_id"])[1]["text"] == "persisted text")
            assert httpx.get(f"{b.url}/runs/{run['run_id']}").json()["live"] is True
            a.kill()
        # B replays what A streamed, then ends the stream: the owner is gone
        with httpx.stream("GET", f"{b.url}/runs/{run['run_id']}/stream", timeout=15) as resp:
            _, replay = read_sse(resp)
        assert [i for i, _ in replay] == list(range(1, len(replay) + 1))
        assert "".join(e["delta"] for _, e in replay if e["type"] == "text-delta") == "persisted text"
        msg = wait_for(lambda: [m for m in messages(b, run["session_id"]) if m["status"] == "interrupted"],
                       timeout=10)[0]
        assert (msg["role"], msg["text"]) == ("assistant", "persisted text")
        stop = httpx.post(f"{b.url}/runs/{run['run_id']}/stop", timeout=10)
        assert stop.status_code == 200 and stop.json()["stopped"] is False
    finally:
        a.kill()
        b.stop()
