"""Slow clients are dropped; cross-site "simple" requests and DNS-rebinding Host names are refused."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest
import uvicorn

from sluiceway.server.app import create_app
from sluiceway.server.guards import guarded_protocol

from .conftest import ServerThread, make_config
from .test_runs_crash import Proc
from .upstream import chat_text_stream, free_port

CHAT = {"model": "up/g-ok", "messages": [{"role": "user", "content": "hi"}]}


def _guarded(app, header: float, body: float) -> ServerThread:
    srv = ServerThread(app)
    srv.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=srv.port, log_level="warning",
                                              lifespan="on", http=guarded_protocol(header, body)))
    return srv.start()


def _half_requests(port: int, n: int, payload: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(payload)
        socks.append(s)
    return socks


def _closed_with_408(s: socket.socket) -> bool:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    return data.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in data


def test_half_sent_headers_and_bodies_are_dropped(upstream):
    upstream.add("g-ok", chat_text_stream(["fine"]))
    srv = _guarded(create_app(make_config(upstream)), header=0.5, body=0.5)
    try:
        t0 = time.monotonic()
        heads = _half_requests(srv.port, 10, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        bodies = _half_requests(srv.port, 10, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"mo")
        assert all(_closed_with_408(s) for s in heads + bodies)
        assert time.monotonic() - t0 < 5
        # a client that sends its request in time is served as before
        r = httpx.post(f"{srv.url}/v1/chat/completions", json=CHAT, timeout=10)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"
    finally:
        srv.stop()


def test_sluiceway_serve_applies_the_read_timeouts(tmp_path):
    config = tmp_path / "sluiceway.yaml"
    config.write_text("embedded: false\nserver: {header_timeout: 0.5}\n"
                      f"store: {{url: 'sqlite+aiosqlite:///{tmp_path}/s.db'}}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    port = free_port()
    srv = Proc(config, port, env)
    try:
        [s] = _half_requests(port, 1, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_with_408(s)
    finally:
        srv.kill()


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"),
                                             ("/v1/responses", "openai"), ("/chat", "openai")])
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_non_json_writes_are_refused_before_anything_runs(server, path, shape, ctype):
    r = httpx.post(f"{server.url}{path}", content=b'{"model": "up/g-ok", "messages": []}',
                   headers={"content-type": ctype}, timeout=10)
    assert r.status_code == 415
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error" and "application/json" in body["error"]["message"]
    else:
        assert body["error"]["code"] == "unsupported_media_type"


def test_a_loopback_server_in_open_mode_answers_only_loopback_host_names(server):
    for host in ("evil.example", "evil.example:8000", "192.168.1.10"):
        r = httpx.get(f"{server.url}/v1/models", headers={"host": host}, timeout=10)
        assert r.status_code == 421, host
        assert r.json()["error"]["code"] == "host_not_allowed"
    for host in ("localhost", f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]:8000", "app.localhost"):
        assert httpx.get(f"{server.url}/v1/models", headers={"host": host}, timeout=10).status_code == 200, host


def test_with_keys_the_host_is_not_restricted(make_server):
    srv = make_server(server={"api_keys": ["k-123456"]})
    r = httpx.get(f"{srv.url}/v1/models", headers={"host": "gateway.internal", "authorization": "Bearer k-123456"})
    assert r.status_code == 200


def test_with_keys_any_content_type_reaches_the_api(make_server, upstream):
    upstream.add("g-ok", chat_text_stream(["fine"]))
    srv = make_server(server={"api_keys": ["k-123456"]})
    r = httpx.post(f"{srv.url}/v1/chat/completions", content=b'{"model": "up/g-ok", "messages": []}',
                   headers={"content-type": "application/x-www-form-urlencoded", "authorization": "Bearer k-123456"})
    assert r.status_code == 400 and r.json()["error"]["code"] != "unsupported_media_type"


def test_metrics_and_the_api_document_need_a_key_when_keys_are_on(make_server):
    srv = make_server(server={"api_keys": ["k-123456"]})
    for path in ("/metrics", "/openapi.json"):
        assert httpx.get(f"{srv.url}{path}").status_code == 401
        assert httpx.get(f"{srv.url}{path}", headers={"authorization": "Bearer k-123456"}).status_code == 200
    assert httpx.get(f"{srv.url}/healthz").status_code == 200  # liveness stays public
    public = make_server(server={"api_keys": ["k-123456"], "public_metrics": True, "public_docs": True})
    for path in ("/metrics", "/openapi.json"):
        assert httpx.get(f"{public.url}{path}").status_code == 200


def test_in_open_mode_metrics_and_the_document_are_served(server):
    assert httpx.get(f"{server.url}/metrics").status_code == 200
    assert httpx.get(f"{server.url}/openapi.json").json()["openapi"].startswith("3.1")
