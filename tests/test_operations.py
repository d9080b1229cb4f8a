"""What an operator relies on: /readyz (store, Redis, a usable provider; 503
with the reason when PostgreSQL or Redis is stopped), Prometheus metrics that
count every request with its status and outcome (refused and failed ones too),
a latency histogram and the process collectors, and every setting overridable
from the environment (``SLUICEWAY_SERVER__PORT``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from sluiceway.engine.config import ConfigError, env_overrides, load_config
from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config
from .upstream import chat_text_stream, free_port

# ---------------------------------------------------------------- databases we own (never the shared ones)


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class OwnPostgres:
    """A throwaway cluster run as the postgres user (it refuses root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sw-pg-"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, cmd: str) -> None:
        subprocess.run(["su", "postgres", "-c", cmd], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> OwnPostgres:
        if not (self.dir / "data").exists():
            self._pg(f"initdb -D {self.dir}/data -A trust -U postgres")
        self._pg(f"pg_ctl -D {self.dir}/data -w -l {self.dir}/log "
                 f"-o '-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1' start")
        return self

    def stop(self) -> None:
        self._pg(f"pg_ctl -D {self.dir}/data -m immediate -w stop")


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listening on {port}"
            time.sleep(0.05)


# ---------------------------------------------------------------- readiness


def test_ready_with_a_usable_provider_and_the_store(upstream):
    srv = ServerThread(create_app(make_config(upstream))).start()
    try:
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and body["checks"]["store"] == {"ok": True}
        assert body["checks"]["providers"] == {"ok": True, "usable": ["up"]} and "redis" not in body["checks"]
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    finally:
        srv.stop()


def test_not_ready_without_any_provider():
    srv = ServerThread(create_app(make_config(None))).start()
    try:
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["providers"]["ok"] is False
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # alive all the same
    finally:
        srv.stop()


@pytest.mark.timeout(120)
@pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("pg_ctl")), reason="needs redis and postgres")
def test_readiness_follows_postgres_and_redis(upstream, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    redis, pg = OwnRedis().start(), OwnPostgres().start()
    srv = ServerThread(create_app(make_config(upstream, store={"url": pg.url},
                                              runs={"redis_url": redis.url, "shutdown_grace": 0}))).start()
    try:
        ready = httpx.get(f"{srv.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"] == {"ok": True}

        redis.stop()
        r = httpx.get(f"{srv.url}/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        checks = r.json()["checks"]
        assert checks["redis"]["ok"] is False and checks["store"]["ok"] is True

        pg.stop()
        checks = httpx.get(f"{srv.url}/readyz", timeout=10).json()["checks"]
        assert checks["store"]["ok"] is False and checks["store"]["reason"]

        redis.start()
        pg.start()
        r = httpx.get(f"{srv.url}/readyz", timeout=10)
        assert r.status_code == 200, r.text  # back in rotation once both answer again
    finally:
        srv.stop()
        redis.stop()
        try:
            pg.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(pg.dir, ignore_errors=True)


# ---------------------------------------------------------------- metrics


def series(text: str, name: str, **labels: str) -> float:
    """The value of one series (labels matched as a subset); 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_count_every_request_with_status_and_outcome(upstream):
    upstream.add("ops-ok", chat_text_stream(["fine"]))
    upstream.add("ops-500", [b'{"error": {"message": "boom"}}'], status=500,
                 headers={"content-type": "application/json"})
    srv = ServerThread(create_app(make_config(upstream, server={"keepalive": 15, "api_keys": ["sk-ops"]}))).start()
    try:
        url, auth = f"{srv.url}/v1/chat/completions", {"authorization": "Bearer sk-ops"}
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        assert httpx.post(url, json={**body, "model": "up/ops-ok"}, headers=auth).status_code == 200
        assert httpx.post(url, json={**body, "model": "up/ops-500"}, headers=auth).status_code >= 500
        assert httpx.post(url, json={**body, "model": "up/ops-ok"}).status_code == 401  # no key
        assert httpx.post(url, json={**body, "model": "nope"}, headers=auth).status_code == 404
        assert httpx.get(f"{srv.url}/no/such/path").status_code == 404
        text = httpx.get(f"{srv.url}/metrics", headers=auth).text
    finally:
        srv.stop()
    route = "/v1/chat/completions"
    assert series(text, "sluiceway_http_requests_total", route=route, status="200", outcome="ok") == 1
    assert series(text, "sluiceway_http_requests_total", route=route, outcome="error") == 1  # before any token
    assert series(text, "sluiceway_http_requests_total", route=route, status="401", outcome="client_error") == 1
    assert series(text, "sluiceway_http_requests_total", route=route, status="404", outcome="client_error") == 1
    assert series(text, "sluiceway_http_requests_total", route="unmatched", status="404") == 1
    assert series(text, "sluiceway_http_request_duration_seconds_count", route=route) == 4
    assert series(text, "sluiceway_http_request_duration_seconds_bucket", route=route, status="200", le="+Inf") == 1
    assert series(text, "sluiceway_time_to_first_token_seconds_count", model="up/ops-ok", provider="up") == 1
    assert series(text, "sluiceway_stream_duration_seconds_count", model="up/ops-ok", provider="up",
                  outcome="complete") == 1
    assert "process_resident_memory_bytes" in text and "python_info{" in text and "python_gc_objects_collected_total" in text


# ---------------------------------------------------------------- settings from the environment


def test_every_setting_from_the_environment(tmp_path, monkeypatch):
    cfg_file = tmp_path / "sluiceway.yaml"
    cfg_file.write_text("server:\n  port: 8100\n  host: 0.0.0.0\nembedded: false\n")
    monkeypatch.setenv("SLUICEWAY_SERVER__PORT", "9123")
    monkeypatch.setenv("SLUICEWAY_SERVER__API_KEYS", "[k1, k2]")
    monkeypatch.setenv("SLUICEWAY_PROVIDERS__UP__KIND", "openai")
    monkeypatch.setenv("SLUICEWAY_PROVIDERS__UP__API_KEY", "0123")
    monkeypatch.setenv("SLUICEWAY_DEFAULT_MODEL", "up/fast")
    monkeypatch.setenv("SLUICEWAY_TIMEOUTS__IDLE", "7.5")
    cfg = load_config(cfg_file)
    assert (cfg.server.port, cfg.server.host, cfg.server.api_keys) == (9123, "0.0.0.0", ["k1", "k2"])
    assert cfg.providers["up"] == {"kind": "openai", "api_key": "0123"}  # a secret stays a string
    assert cfg.default_model == "up/fast" and cfg.timeouts.idle == 7.5 and cfg.embedded is False

    monkeypatch.setenv("SLUICEWAY_SERVER__PROT", "1")
    with pytest.raises(ConfigError, match=r"server\.prot.*port"):
        load_config(cfg_file)
    monkeypatch.delenv("SLUICEWAY_SERVER__PROT")
    monkeypatch.chdir(tmp_path / "..")
    assert load_config(None).server.port == 9123  # also without a config file


def test_env_overrides_leave_other_variables_alone():
    env = {"SLUICEWAY_API_KEYS": "a,b", "SLUICEWAY_CONFIG": "x.yaml", "SLUICEWAY_MYPROXY_API_KEY": "s",
           "SLUICEWAY_SERVER": "not a section value", "OTHER__THING": "1"}
    assert env_overrides({"server": {"port": 1}}, env) == {"server": {"port": 1}}
    with pytest.raises(ConfigError, match="server is not a section"):
        env_overrides({"server": "x"}, {"SLUICEWAY_SERVER__PORT": "1"})


# ---------------------------------------------------------------- structured logs


def test_json_logs_from_the_first_line_with_access_fields(upstream, tmp_path):
    upstream.add("ops-log", chat_text_stream(["logged"], usage={"prompt_tokens": 3, "completion_tokens": 1,
                                                                "total_tokens": 4}))
    (tmp_path / "sluiceway.yaml").write_text(
        f"embedded: false\nstore:\n  url: sqlite+aiosqlite:///{tmp_path}/s.db\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "sluiceway"), "serve", "--port", str(port),
                             "--host", "127.0.0.1", "--log-format", "json", "--access-log",
                             "--provider", f"up=openai,base_url={upstream.url}/v1,api_key=k"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_port(port)
        body = {"model": "up/ops-log", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                          headers={"x-request-id": "req-ops-1"}).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/nope").status_code == 404
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line, the banner first, is JSON
    assert any("chat UI at" in d["message"] for d in docs)
    access = [d for d in docs if d["logger"] == "sluiceway.access"]
    chat = next(d for d in access if d["path"] == "/v1/chat/completions")
    assert chat["method"] == "POST" and chat["status"] == 200 and chat["latency_ms"] >= 0
    assert chat["request_id"] == "req-ops-1" and chat["model"] == "up/ops-log" and chat["provider"] == "up"
    assert chat["output_tokens"] == 1 and chat["input_tokens"] == 3 and "key_id" in chat
    assert any(d["path"] == "/nope" and d["status"] == 404 for d in access)
