"""Voice mode benchmark: how soon the embedded voice starts talking, how fast
it synthesises, and what voice adds to a stream.

    .venv/bin/python -m bench.voice            # about 30 s
    .venv/bin/python -m bench.voice --runs 5   # quicker

1. **first text delta → first audio chunk**, two ways:
   - *pipeline*: the engine's chunker + eSpeak NG, fed tokens every 20 ms
     (a 50 tokens/s model) in this process;
   - *end to end*: a paced fake upstream → sluiceway ``/chat/stream`` (the
     text, read by one client) and the ``/v1/voice`` WebSocket following the
     same run (the audio, read by a second client); the time between the first
     text-delta and the first audio frame arriving at the clients.
   Target: ≤ 300 ms with the embedded voice.
2. **real-time factor** of the embedded voice: synthesis time / audio length.
3. **added cost per stream**: the gateway thread's CPU plus the speech child
   processes' CPU, with voice following the stream against without.
4. **barge-in**: ``stop`` right after the first audio frame → the session's
   ``stopped`` (synthesis killed, run stopped, partial answer saved), and any
   audio frame that still came after it (there must be none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import threading
import time
from typing import Any

import httpx
import orjson
import uvicorn
from aiohttp import web
from websockets.sync.client import connect

from sluiceway.engine.config import Config
from sluiceway.engine.voice.config import ChunkerConfig
from sluiceway.engine.voice.pipeline import Audio, chunker_for, pieces, speak
from sluiceway.providers.speech.espeak import EspeakProvider, EspeakSettings
from sluiceway.server.app import create_app

ANSWER = ("Rivers have always found the lowest path to the sea. Engineers learned to guide them "
          "with gates and sluices, holding water back in the dry months. When the rain returns, "
          "the gates open a little at a time, so the towns below stay safe. That is the whole idea.")
TOKENS = [w + " " for w in ANSWER.split(" ")]
TOKEN_GAP = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# ------------------------------------------------------------ 1a. pipeline
async def pipeline_latency(runs: int) -> list[float]:
    speaker = EspeakProvider("espeak", EspeakSettings())
    out = []

    async def deltas(first: list[float]):
        for t in TOKENS:
            if not first:
                first.append(time.perf_counter())
            yield t
            await asyncio.sleep(TOKEN_GAP)

    for _ in range(runs):
        first_delta: list[float] = []
        async for ev in speak(pieces(deltas(first_delta), chunker_for(ChunkerConfig())), speaker):
            if isinstance(ev, Audio):
                out.append(time.perf_counter() - first_delta[0])
                break
    return out


# ------------------------------------------------------------ 2. RTF
async def real_time_factor() -> tuple[float, float, float]:
    speaker = EspeakProvider("espeak", EspeakSettings())
    t0 = time.perf_counter()
    n = 0
    sentences = [s.strip() + "." for s in ANSWER.split(".") if s.strip()]
    for s in sentences:
        speech = await speaker.speak(s)
        async for chunk in speech.audio:
            n += len(chunk)
    took = time.perf_counter() - t0
    audio = n / 2 / 22050
    return took, audio, took / audio


# ------------------------------------------------------------ servers
class Upstream:
    """A paced OpenAI-compatible stream: one token every TOKEN_GAP seconds."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._run, daemon=True).start()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.02)

    def _run(self) -> None:
        async def chat(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            for t in TOKENS:
                await resp.write(b"data: " + orjson.dumps({**base, "choices": [
                    {"index": 0, "delta": {"content": t}, "finish_reason": None}]}) + b"\n\n")
                await asyncio.sleep(TOKEN_GAP)
            await resp.write(b"data: " + orjson.dumps({**base, "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\ndata: [DONE]\n\n")
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        web.run_app(app, host="127.0.0.1", port=self.port, print=None, handle_signals=False)


class Gateway:
    def __init__(self, upstream: Upstream, db: str) -> None:
        cfg = Config.model_validate({"embedded": False, "store": {"url": f"sqlite+aiosqlite:///{db}"},
                                     "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1"}}})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.clock = time.pthread_getcpuclockid(self.thread.ident)

    def cpu(self) -> float:
        return time.clock_gettime(self.clock)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_stream(gw: Gateway, voice: bool) -> dict[str, Any]:
    """Start a chat; with voice, follow it over the WebSocket. Times at the clients."""
    got: dict[str, Any] = {"audio_bytes": 0}
    with httpx.stream("POST", f"{gw.url}/chat/stream", json={"message": "go", "model": "up/m"}, timeout=30) as r:
        lines = r.iter_lines()
        run = None
        for line in lines:
            if line.startswith("data: "):
                run = json.loads(line[6:])
                break
        assert run is not None
        follower = None
        if voice:
            def follow() -> None:
                with connect(gw.url.replace("http", "ws") + "/v1/voice") as ws:
                    ws.send(json.dumps({"type": "follow", "run_id": run["run_id"]}))
                    while True:
                        msg = ws.recv(timeout=60)
                        if isinstance(msg, bytes):
                            got.setdefault("first_audio", time.perf_counter())
                            got["audio_bytes"] += len(msg) - 12
                        elif json.loads(msg)["type"] in ("done", "error"):
                            return
            follower = threading.Thread(target=follow)
            follower.start()
        for line in lines:
            if line.startswith("data: ") and '"text-delta"' in line:
                got.setdefault("first_text", time.perf_counter())
    if follower is not None:
        follower.join(60)
    return got


def barge_in(gw: Gateway) -> tuple[float, int]:
    """Stop right after the first audio frame: seconds until the session says the
    audio and the run are stopped (the partial answer saved), and frames after it."""
    with httpx.stream("POST", f"{gw.url}/chat/stream", json={"message": "go", "model": "up/m"}, timeout=30) as r:
        run = next(json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: "))
        with connect(gw.url.replace("http", "ws") + "/v1/voice") as ws:
            ws.send(json.dumps({"type": "follow", "run_id": run["run_id"]}))
            while not isinstance(ws.recv(timeout=60), bytes):
                pass
            t0 = time.perf_counter()
            ws.send(json.dumps({"type": "stop"}))
            while True:
                msg = ws.recv(timeout=60)
                if isinstance(msg, str) and json.loads(msg)["type"] == "stopped":
                    took = time.perf_counter() - t0
                    break
            ws.send(json.dumps({"type": "hello"}))
            late = 0
            while isinstance(msg := ws.recv(timeout=60), bytes) or json.loads(msg)["type"] != "ready":
                late += isinstance(msg, bytes)
    return took, late


def end_to_end(runs: int) -> dict[str, Any]:
    import tempfile

    up = Upstream()
    gw = Gateway(up, os.path.join(tempfile.mkdtemp(prefix="sw-bench-voice-"), "b.db"))
    try:
        one_stream(gw, True)  # warm-up: imports, first connections
        latencies, cost = [], {}
        for voice in (False, True):
            cpu0, ch0, audio = gw.cpu(), children_cpu(), 0
            for _ in range(runs):
                got = one_stream(gw, voice)
                if voice:
                    latencies.append(got["first_audio"] - got["first_text"])
                    audio += got["audio_bytes"] / 2 / 22050
            cost[voice] = {"gateway_cpu": (gw.cpu() - cpu0) / runs, "speech_cpu": (children_cpu() - ch0) / runs,
                           "audio_s": audio / runs}
        stops = [barge_in(gw) for _ in range(runs)]
        return {"latencies": latencies, "cost": cost, "barge": [t for t, _ in stops],
                "late_frames": sum(n for _, n in stops)}
    finally:
        gw.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    pipe = asyncio.run(pipeline_latency(args.runs))
    took, audio, rtf = asyncio.run(real_time_factor())
    e2e = end_to_end(args.runs)
    lat = e2e["latencies"]
    off, on = e2e["cost"][False], e2e["cost"][True]
    added = on["gateway_cpu"] - off["gateway_cpu"] + on["speech_cpu"] - off["speech_cpu"]
    print(f"tokens every {TOKEN_GAP * 1000:.0f} ms; {len(TOKENS)} tokens, {args.runs} runs each")
    print(f"first text delta → first audio, pipeline:    p50 {statistics.median(pipe) * 1000:6.1f} ms"
          f"   p95 {pct(pipe, 0.95) * 1000:6.1f} ms   (target ≤ 300)")
    print(f"first text delta → first audio, end to end:  p50 {statistics.median(lat) * 1000:6.1f} ms"
          f"   p95 {pct(lat, 0.95) * 1000:6.1f} ms   (target ≤ 300)")
    barge = e2e["barge"]
    print(f"barge-in → audio and run stopped, answer saved: p50 {statistics.median(barge) * 1000:6.1f} ms"
          f"   p95 {pct(barge, 0.95) * 1000:6.1f} ms   (target ≤ 200); "
          f"audio frames after it: {e2e['late_frames']}")
    print(f"embedded voice real-time factor: {rtf:.3f}  ({took * 1000:.0f} ms for {audio:.1f} s of speech)")
    print(f"gateway CPU per stream: {off['gateway_cpu'] * 1000:.1f} ms without voice → "
          f"{on['gateway_cpu'] * 1000:.1f} ms with; speech processes {on['speech_cpu'] * 1000:.1f} ms")
    print(f"added cost per stream: {added * 1000:.1f} ms CPU for {on['audio_s']:.1f} s of audio "
          f"({added / max(on['audio_s'], 1e-9) * 1000:.1f} ms CPU per audio second)")


if __name__ == "__main__":
    main()
