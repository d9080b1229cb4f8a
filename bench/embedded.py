"""The embedded model through sluiceway beside llama.cpp's own servers, on the same GGUF file.

    .venv/bin/python -m bench.embedded [--rounds 5] [--llama-server PATH | --no-llama-server]

Sides, each an OpenAI-compatible server streaming SmolLM2-135M-Instruct (greedy, 128 tokens):
- ``llama_cpp.server``: llama-cpp-python's own server (same library build as sluiceway's worker), run from
  a scratch venv ``.bench-venv`` that this script makes once (the server extra pulls FastAPI, which the
  project does not need);
- ``llama-server``: llama.cpp's C++ server with 4 parallel slots (continuous batching), if built
  (``bench/build_llama_server.sh``, found in its cache by default);
- ``sluiceway``: ``sluiceway serve`` (the model in its supervised worker process, one generation at a time).

Figures: TTFT p50 and decode tokens/s (median) at 1 stream, requests interleaved across sides so drift
hits all alike; aggregate tokens/s with 4 concurrent streams. Ratios are sluiceway / the best other side.
Not a test: the machine's load moves every figure, the ratios less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from sluiceway.providers.llamacpp import embedded_model_path

from .stack import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a long story about a dragon who learns to fly."
MAX_TOKENS = 128
THREADS = os.cpu_count() or 2
QUIET = 1.0  # seconds between requests to different sides (see measure)


def bench_venv() -> Path:
    """A scratch venv with llama-cpp-python[server], reusing the portable wheel setup built."""
    venv = ROOT / ".bench-venv"
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import llama_cpp.server"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(["bash", str(ROOT / "scripts" / "llama-wheel.sh"), str(venv)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "llama-cpp-python[server]"], check=True)
    return py


def default_llama_server() -> str | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluiceway"
    found = sorted(cache.glob("llama-server-*/bin/llama-server"))
    return str(found[-1]) if found else None


class Side:
    def __init__(self, name: str, cmd: list[str], port: int, model: str, cwd: str | None = None) -> None:
        self.name, self.cmd, self.port, self.model, self.cwd = name, cmd, port, model, cwd
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        health = "/health" if self.name == "llama-server" else "/v1/models"
        wait_http(f"http://127.0.0.1:{self.port}{health}", self.proc, timeout=120)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def one(client: httpx.AsyncClient, side: Side, prompt: str = PROMPT) -> tuple[float, float, int]:
    """(ttft s, whole stream s, tokens) for one streamed answer; a token is one content chunk."""
    body = {"model": side.model, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0, "seed": 1,
            "messages": [{"role": "user", "content": prompt}]}
    t0 = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.stream("POST", side.url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    tokens += 1
                    if not first:
                        first = time.perf_counter() - t0
    return first, time.perf_counter() - t0, tokens


async def measure(sides: list[Side], rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for s in sides:  # warm: model loaded, caches hot
            await one(client, s)
        samples: dict[str, list[tuple[float, float, int]]] = {s.name: [] for s in sides}
        for r in range(rounds):
            # rotate who goes first, and let the last side's threads go idle: llama.cpp's worker
            # threads spin for a while after their work, which slows whoever runs next
            for s in sides[r % len(sides):] + sides[:r % len(sides)]:
                await asyncio.sleep(QUIET)
                samples[s.name].append(await one(client, s))
        for s in sides:
            ttft = [x[0] for x in samples[s.name]]
            rate = [(n - 1) / (total - first) for first, total, n in samples[s.name] if n > 1 and total > first]
            out[s.name] = {"ttft_ms": statistics.median(ttft) * 1000, "tok_s": statistics.median(rate),
                           "tokens": statistics.median(x[2] for x in samples[s.name])}
        for s in sides:
            await asyncio.sleep(QUIET)
            best = 0.0
            errors = 0
            for _ in range(2):
                t0 = time.perf_counter()
                got = await asyncio.gather(*(one(client, s, f"{PROMPT} Chapter {i}.") for i in range(4)),
                                           return_exceptions=True)
                ok = [g for g in got if not isinstance(g, BaseException)]
                errors += len(got) - len(ok)
                best = max(best, sum(g[2] for g in ok) / (time.perf_counter() - t0))
            out[s.name]["agg4_tok_s"] = best
            out[s.name]["errors"] = errors
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--llama-server", default=None, help="path to llama-server (default: the cached build)")
    ap.add_argument("--no-llama-server", action="store_true")
    args = ap.parse_args(argv)
    gguf = str(embedded_model_path())
    tmp = tempfile.mkdtemp(prefix="sw-bench-embedded-")
    sides: list[Side] = []
    p = free_port()
    sides.append(Side("llama_cpp.server", [str(bench_venv()), "-m", "llama_cpp.server", "--model", gguf,
                                           "--n_ctx", "4096", "--n_threads", str(THREADS), "--port", str(p),
                                           # its default cuts a stream off when the next request arrives
                                           "--interrupt_requests", "False"],
                      p, "smollm2"))
    server = None if args.no_llama_server else (args.llama_server or default_llama_server())
    if server:
        p = free_port()
        sides.append(Side("llama-server", [server, "-m", gguf, "-c", "16384", "-np", "4", "-t", str(THREADS),
                                           "--port", str(p), "--log-disable"], p, "smollm2"))
    p = free_port()
    sw = shutil.which("sluiceway", path=str(Path(sys.executable).parent)) or "sluiceway"
    sides.append(Side("sluiceway", [sw, "serve", "--port", str(p)], p, "smollm2", cwd=tmp))
    try:
        for s in sides:
            s.start()
        r = asyncio.run(measure(sides, args.rounds))
    finally:
        for s in sides:
            s.stop()
    others = [n for n in r if n != "sluiceway"]
    sw_r = r["sluiceway"]
    print(f"SmolLM2-135M Q4_1, greedy, {MAX_TOKENS} tokens max, {THREADS} threads, {args.rounds} rounds")
    print(f"{'side':<18}| {'TTFT p50 ms':>11} | {'tok/s, 1 stream':>15} | {'tok/s, 4 streams':>16} | tokens | errors")
    for name, x in r.items():
        print(f"{name:<18}| {x['ttft_ms']:11.1f} | {x['tok_s']:15.1f} | {x['agg4_tok_s']:16.1f} | {x['tokens']:6.0f} |"
              f" {x['errors']}")
    best_rate = max(others, key=lambda n: r[n]["tok_s"])
    best_ttft = min(others, key=lambda n: r[n]["ttft_ms"])
    best_agg = max(others, key=lambda n: r[n]["agg4_tok_s"])
    ok_rate = sw_r["tok_s"] >= 0.95 * r[best_rate]["tok_s"]
    ok_ttft = sw_r["ttft_ms"] <= 1.1 * r[best_ttft]["ttft_ms"]
    print(f"sluiceway / {best_rate}: tok/s at 1 stream {sw_r['tok_s'] / r[best_rate]['tok_s']:.2f}x "
          f"(target >= 0.95x) {'PASS' if ok_rate else 'FAIL'}")
    print(f"sluiceway / {best_ttft}: TTFT {sw_r['ttft_ms'] / r[best_ttft]['ttft_ms']:.2f}x "
          f"(target <= 1.1x) {'PASS' if ok_ttft else 'FAIL'}")
    print(f"sluiceway / {best_agg}: tok/s at 4 streams {sw_r['agg4_tok_s'] / r[best_agg]['agg4_tok_s']:.2f}x (report)")
    return 0 if ok_rate and ok_ttft else 1


if __name__ == "__main__":
    sys.exit(main())
