"""Persistence and run-log overhead: the same gateway process, the same fake
upstream, the same stream, with the store and runs service off (``/v1/chat/completions``)
and on (``/chat/stream``: user turn committed, run task, run log, recorder
checkpoints, final save and trace), on SQLite and on PostgreSQL + Redis.

    python -m bench.chat_overhead            # ~1 minute
    python -m bench.chat_overhead --quick

Prints TTFT (median, p95) over sequential requests; for long streams (a few
concurrent, the upstream as fast as it can), the gateway's CPU time per 1000
chunks relayed (CPU time, unlike wall time, holds up on a busy machine) and
the median time of a whole request (the fixed costs show there: the user
turn's commit, the final save and the trace); and on/off ratios. Results also go
to ``bench/results/chat_overhead.json``. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import yaml

from .load import cpu_seconds
from .stack import wait_http

HERE = Path(__file__).resolve().parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def one(s: aiohttp.ClientSession, url: str, body: bytes, marker: bytes) -> tuple[float, int, float]:
    """(ttft s, frames, total s) of one stream; ttft = first frame with ``marker``;
    total = until the server closed the stream."""
    t0 = time.perf_counter()
    ttft = None
    frames = 0
    async with s.post(url, data=body, headers={"content-type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        carry = b""
        while True:
            data = await resp.content.readany()
            if not data:
                break
            if ttft is None and marker in carry + data:
                ttft = time.perf_counter() - t0
            buf = carry + data
            frames += buf.count(b"data:") - carry.count(b"data:")
            carry = buf[-8:]
    return ttft or 0.0, frames, time.perf_counter() - t0


def bodies(side: str, model: str) -> tuple[str, bytes, bytes]:
    if side == "off":
        return ("/v1/chat/completions",
                orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}),
                b'"content":"')
    return "/chat/stream", orjson.dumps({"model": model, "message": "go"}), b'"text-delta"'


async def measure(base: str, pid: int, side: str, requests: int, long_chunks: int, concurrent: int) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        path, body, marker = bodies(side, "up/bench-n20-s16-i0")
        for _ in range(3):  # warm up
            await one(s, base + path, body, marker)
        ttfts = []
        for _ in range(requests):
            ttfts.append((await one(s, base + path, body, marker))[0])
        path, body, marker = bodies(side, f"up/bench-n{long_chunks}-s16-i0")
        totals = []
        cpu0 = cpu_seconds(pid)
        rounds = 3
        for _ in range(rounds):
            results = await asyncio.gather(*(one(s, base + path, body, marker) for _ in range(concurrent)))
            totals += [total for _, _, total in results]
        cpu = cpu_seconds(pid) - cpu0
    ttfts.sort()
    return {"ttft_ms_p50": 1000 * statistics.median(ttfts), "ttft_ms_p95": 1000 * ttfts[int(0.95 * (len(ttfts) - 1))],
            "cpu_ms_per_1000_chunks": 1000 * cpu / (rounds * concurrent * long_chunks / 1000),
            "long_stream_ms_p50": 1000 * statistics.median(totals)}


def gateway(tmp: Path, up_port: int, store_url: str, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cfg = {"embedded": False, "server": {"keepalive": 0},
           "providers": {"up": {"kind": "openai", "base_url": f"http://127.0.0.1:{up_port}/v1", "api_key": "x"}},
           "store": {"url": store_url},
           "runs": {"redis_url": redis_url, "shutdown_grace": 0}}
    path = tmp / f"gw-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "sluiceway.cli", "serve", "--config", str(path), "--port",
                             str(port), "--log-level", "warning"], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", proc)
    return proc, base


async def pg_db(name: str | None = None, drop: bool = False) -> str:
    import asyncpg

    c = await asyncpg.connect(PG_ADMIN)
    try:
        if drop:
            await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return ""
        name = "swbench_" + uuid.uuid4().hex[:10]
        await c.execute(f'CREATE DATABASE "{name}"')
        return name
    finally:
        await c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    requests, long_chunks, concurrent = (30, 500, 4) if args.quick else (200, 3000, 8)
    tmp = Path(tempfile.mkdtemp(prefix="sluiceway-chatbench-"))
    up_port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [up]
    backends: list[tuple[str, str, str | None]] = [("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", None)]
    pg_name = None
    if reachable(5432) and reachable(6379):
        pg_name = asyncio.run(pg_db())
        backends.append(("postgresql+redis", f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}",
                         "redis://127.0.0.1:6379/0"))
    out: dict = {"requests": requests, "long_chunks": long_chunks, "concurrent": concurrent, "results": {}}
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", up)
        for name, store_url, redis_url in backends:
            proc, base = gateway(tmp, up_port, store_url, redis_url)
            procs.append(proc)
            res = {side: asyncio.run(measure(base, proc.pid, side, requests, long_chunks, concurrent))
                   for side in ("off", "on")}
            proc.terminate()
            proc.wait(20)
            keys = ("ttft_ms_p50", "ttft_ms_p95", "cpu_ms_per_1000_chunks", "long_stream_ms_p50")
            res["ratio"] = {k: res["on"][k] / res["off"][k] for k in keys}
            out["results"][name] = res
            print(f"{name:18} {'off':>10} {'on':>10} {'on/off':>8}")
            for k in keys:
                print(f"  {k:16} {res['off'][k]:10.1f} {res['on'][k]:10.1f} {res['ratio'][k]:8.2f}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if pg_name:
            asyncio.run(pg_db(pg_name, drop=True))
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "chat_overhead.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
