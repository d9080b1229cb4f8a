"""Shared fixtures: the scripted fake upstream and sluiceway servers under
uvicorn on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from sluiceway.engine.config import Config
from sluiceway.server.app import create_app

from .upstream import FakeUpstream, free_port

IN_CI = os.environ.get("CI") == "true"
UPSTREAM_KEY = "sk-upstream-secret-do-not-leak"


class ServerThread:
    """sluiceway (or any ASGI app) under uvicorn in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def make_config(upstream: FakeUpstream | None, **overrides: Any) -> Config:
    """Config with provider ``up`` pointing at the fake upstream; no embedded model."""
    raw: dict[str, Any] = {"embedded": False, "server": {"keepalive": 15},
                           "resilience": {"retries": 0},  # retry tests opt in
                           # every server gets its own SQLite file, never the repo's ./sluiceway.db
                           "store": {"url": f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sw-test-')}/s.db"}}
    if upstream is not None:
        raw["providers"] = {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": UPSTREAM_KEY}}
        raw["timeouts"] = {"connect": 2, "first_token": 5, "idle": 5, "total": 60}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return Config.model_validate(raw)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_server(upstream: FakeUpstream):
    """Factory: start a sluiceway server with config overrides; stopped after the test."""
    started: list[ServerThread] = []

    def factory(config: Config | None = None, **overrides: Any) -> ServerThread:
        cfg = config or make_config(upstream, **overrides)
        srv = ServerThread(create_app(cfg)).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@contextlib.contextmanager
def running(cfg: Config, *, replicas: bool = False) -> Iterator[tuple[ServerThread, ServerThread]]:
    """(where runs start, where clients reattach): one server, or with
    ``replicas`` two sharing ``cfg``'s database and run logs. For module
    fixtures with a config of their own."""
    a = ServerThread(create_app(cfg)).start()
    b = ServerThread(create_app(cfg.model_copy(deep=True))).start() if replicas else a
    try:
        yield a, b
    finally:
        a.stop()
        if b is not a:
            b.stop()


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream) -> Iterator[ServerThread]:
    """A default sluiceway in front of the fake upstream, shared by a module."""
    srv = ServerThread(create_app(make_config(upstream))).start()
    yield srv
    srv.stop()


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a local service is absent, except in CI where it must be there."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        if IN_CI:
            pytest.fail(f"{name} at {host}:{port} is required in CI but is not reachable")
        pytest.skip(f"{name} at {host}:{port} is not running")
