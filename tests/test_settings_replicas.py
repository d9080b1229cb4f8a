"""Two replicas — two ``sluiceway serve`` processes sharing one config file,
one .env, PostgreSQL and Redis — and a provider added, edited and removed
through A: B serves the change after A's Redis notice. B's file poll is set
to an hour, so only the notice can have told it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import require_service
from .test_runs_crash import Proc
from .test_sessions_store import pg_database
from .upstream import chat_text_stream, free_port

REDIS = "redis://127.0.0.1:6379/0"
pytestmark = pytest.mark.timeout(120)


def stop(proc: Proc) -> None:
    if proc.p.poll() is None:
        os.kill(proc.p.pid, signal.SIGTERM)
        try:
            proc.p.wait(15)
        except Exception:
            proc.kill()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[tuple[Proc, Proc, Path]]:
    require_service("Redis", "127.0.0.1", 6379)
    url, drop = asyncio.run(pg_database())
    config: Path = tmp_path_factory.mktemp("settings-replicas") / "sluiceway.yaml"
    config.write_text("# shared by both replicas\n" + yaml.safe_dump({
        "embedded": False,
        "providers": {},
        "timeouts": {"connect": 2, "first_token": 5, "idle": 5, "total": 60},
        "resilience": {"retries": 0},
        "store": {"url": url},
        "runs": {"redis_url": REDIS, "shutdown_grace": 0},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["SLUICEWAY_SETTINGS_POLL"] = "3600"  # no file poll: the change must come through Redis
    procs: list[Proc] = []
    try:
        procs.append(Proc(config, free_port(), env))
        procs.append(Proc(config, free_port(), env))
        yield procs[0], procs[1], config
    finally:
        for p in procs:
            stop(p)
        asyncio.run(drop())


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def names(proc: Proc) -> dict[str, dict]:
    r = httpx.get(f"{proc.url}/settings/providers?models=0", timeout=10)
    assert r.status_code == 200, r.text
    return {p["name"]: p for p in r.json()["data"]}


def ask(proc: Proc, model: str) -> httpx.Response:
    return httpx.post(f"{proc.url}/v1/chat/completions", timeout=15,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_a_change_on_a_reaches_b(upstream, replicas):
    a, b, config = replicas
    model = upstream.add(f"rep-set-{uuid.uuid4().hex[:6]}", chat_text_stream(["from ", "B"]))
    name = f"shared{uuid.uuid4().hex[:4]}"
    secret = "sk-replica-" + uuid.uuid4().hex
    r = httpx.post(f"{a.url}/settings/providers", timeout=15, json={
        "name": name, "kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": secret})
    assert r.status_code == 201, r.text
    started = time.monotonic()
    wait_for(lambda: name in names(b))
    took = time.monotonic() - started
    print(f"B saw the new provider {took * 1000:.0f} ms after A answered")
    r = ask(b, f"{name}/{model}")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from B"
    assert upstream.last(model).headers["Authorization"] == f"Bearer {secret}"  # B read the key from .env
    # an edit and a removal travel the same way
    r = httpx.patch(f"{a.url}/settings/providers/{name}", json={"display_name": "Edited on A"}, timeout=15)
    assert r.status_code == 200
    wait_for(lambda: names(b).get(name, {}).get("display_name") == "Edited on A")
    assert httpx.delete(f"{a.url}/settings/providers/{name}", timeout=15).status_code == 200
    wait_for(lambda: name not in names(b))
    assert ask(b, f"{name}/{model}").status_code == 404
    assert "# shared by both replicas" in config.read_text()
