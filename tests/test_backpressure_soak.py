"""Slow and vanishing clients: memory stays bounded, stalled clients are
dropped, and a soak of many streams with random disconnects leaks nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from .upstream import HANG, chat_chunk, free_port, sse


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def gateway_process(upstream, tmp_path):
    """sluiceway serve as its own process, so its memory can be measured alone."""
    port = free_port()
    cfg = {"embedded": False, "server": {"stall_timeout": 1.5, "keepalive": 0},
           "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1"}},
           "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/s.db"}}
    path = tmp_path / "sluiceway.yaml"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "sluiceway.cli", "serve", "--config", str(path), "--port",
                             str(port), "--log-level", "warning"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "no start") from None
            time.sleep(0.1)
    yield proc, port
    proc.terminate()
    proc.wait(10)


def big_answer(total_mb: int) -> list:
    piece = "x" * 1000
    frame = sse(chat_chunk({"content": piece}))
    block = frame * 100  # ~100 KB per upstream write
    steps = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    steps += [block] * (total_mb * 10)
    steps += [sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"]
    return steps


def raw_request(port: int, model: str) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.connect(("127.0.0.1", port))
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
              b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return s


def test_slow_reader_of_a_30mb_answer_keeps_server_memory_bounded(upstream, gateway_process):
    proc, port = gateway_process
    upstream.add("bp-big", big_answer(30))
    base = rss_mb(proc.pid)
    s = raw_request(port, "up/bp-big")
    peak, received, tail = base, 0, b""
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end:
        data = s.recv(64 * 1024)
        if not data:
            break
        received += len(data)
        tail = (tail + data)[-64:]
        if b"data: [DONE]" in tail:
            break
        time.sleep(0.002)  # a slow reader: the server must wait, not buffer
        if received % (1 << 20) < 65536:
            peak = max(peak, rss_mb(proc.pid))
    s.close()
    assert b"data: [DONE]" in tail, f"stream incomplete after {received} bytes"
    assert received > 30_000_000
    growth = peak - base
    print(f"RSS growth {growth:.1f} MB relaying {received / 1e6:.0f} MB")
    assert growth < 20, f"server RSS grew {growth:.1f} MB while relaying 30 MB to a slow reader"


def test_client_that_stops_reading_is_dropped_and_upstream_closed(upstream, gateway_process):
    proc, port = gateway_process
    upstream.add("bp-stall", big_answer(50) + [HANG])
    s = raw_request(port, "up/bp-stall")
    s.recv(1024)  # headers arrive, then we never read again
    time.sleep(0.2)
    rec = upstream.last("bp-stall")
    assert rec.wait_closed(10), "upstream still open long after the client stopped reading"
    assert rec.client_closed
    s.close()


def test_soak_many_streams_random_disconnects_leak_nothing(upstream, make_server):
    steps = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for i in range(20):
        steps += [0.005, sse(chat_chunk({"content": f"t{i} "}))]
    upstream.add("soak-hang", [*steps, HANG])  # streams the client will abandon never end by themselves
    steps += [sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"]
    upstream.add("soak", steps)
    srv = make_server(server={"keepalive": 0})
    def fd_count() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def server_tasks() -> int:
        return len(asyncio.all_tasks())

    def count_server_tasks() -> int:
        return asyncio.run_coroutine_threadsafe(server_tasks(), srv.loop).result(5)

    before_records = len(upstream.records)
    fds_before = fd_count()
    tasks_before = count_server_tasks()
    rng = random.Random(7)
    outcomes = {"complete": 0, "abandoned": 0, "errors": 0}

    async def one(session: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
        leave_after = rng.choice([None, None, 0, 1, 3, 8])
        async with sem:
            try:
                model = "up/soak" if leave_after is None else "up/soak-hang"
                async with session.post(f"{srv.url}/v1/chat/completions", json={
                        "model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
                    assert r.status == 200
                    n = 0
                    async for line in r.content:
                        if line.startswith(b"data: [DONE]"):
                            outcomes["complete"] += 1
                            return
                        if line.startswith(b"data:"):
                            n += 1
                            if leave_after is not None and n > leave_after + 1:
                                outcomes["abandoned"] += 1
                                r.close()
                                return
            except (aiohttp.ClientError, AssertionError):
                outcomes["errors"] += 1

    async def soak() -> None:
        sem = asyncio.Semaphore(100)
        conn = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=conn) as session:
            await asyncio.gather(*(one(session, sem) for _ in range(1000)))

    asyncio.run(soak())
    assert outcomes["errors"] == 0, outcomes
    assert outcomes["complete"] + outcomes["abandoned"] == 1000
    assert outcomes["abandoned"] > 100
    # every upstream request finished or was closed, none is left hanging
    recs = upstream.records[before_records:]
    assert len(recs) == 1000
    deadline = time.monotonic() + 5
    while not all(r.done.is_set() for r in recs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(r.done.is_set() for r in recs), sum(not r.done.is_set() for r in recs)
    hung = [r for r in recs if r.body["model"] == "soak-hang"]
    assert len(hung) == outcomes["abandoned"] and all(r.client_closed for r in hung)
    # no tasks and no sockets left behind (pooled upstream keep-alives are closed when idle)
    deadline = time.monotonic() + 5
    while count_server_tasks() > tasks_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count_server_tasks() <= tasks_before
    while fd_count() > fds_before + 110 and time.monotonic() < deadline + 5:
        time.sleep(0.1)
    # at most the gateway's idle keep-alive pool to the upstream remains
    assert fd_count() <= fds_before + 110, (fds_before, fd_count())


def test_stalled_reader_of_a_run_stream_is_dropped_and_the_run_still_completes(upstream, gateway_process):
    """Session-chat streams come from the run hub, not SSEResponse: the same
    stall policy holds there, and (runs.disconnect: continue) the answer is
    still generated and saved in full."""
    proc, port = gateway_process
    upstream.add("bp-run", big_answer(30))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.connect(("127.0.0.1", port))
    body = json.dumps({"message": "x", "model": "up/bp-run"}).encode()
    s.sendall(b"POST /chat/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
              b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = s.recv(4096)
    session_id = next(line.split(b": ", 1)[1].strip().decode() for line in head.split(b"\r\n")
                      if line.lower().startswith(b"x-session-id"))
    time.sleep(4)  # stall well past stall_timeout (1.5 s)
    s.settimeout(10)
    received = 0
    while True:  # what was already buffered drains, then the server has closed the connection
        data = s.recv(1 << 20)
        if not data:
            break
        received += len(data)
    s.close()
    assert received < 30_000_000, "the stalled client was not dropped"
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msgs = httpx.get(f"http://127.0.0.1:{port}/sessions/{session_id}/messages").json()
        items = msgs["data"] if isinstance(msgs, dict) else msgs
        if items[-1]["status"] != "streaming":
            break
        time.sleep(0.2)
    assert items[-1]["status"] == "complete" and len(items[-1]["text"]) == 30 * 10 * 100 * 1000
