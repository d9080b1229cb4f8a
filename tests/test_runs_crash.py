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

from .test_sessions_chat import messages, read_sse, wait_for
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
