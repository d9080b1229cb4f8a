"""The benchmark suite: sluiceway against a direct connection to the same
fake upstream, for the performance bar of issue 2.

    python -m bench.run            # the full run (a few minutes)
    python -m bench.run --quick    # a small version, under a minute

The fake upstream and this process (the load client) share one core; the
gateway (``sluiceway serve``, one uvicorn worker, embedded model off) gets
the other. Every figure is taken twice, straight to the upstream and through
the gateway, and printed side by side with their ratio, so that a noisy
machine shows up in both columns instead of lying. Results also go to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import load
from .fake_upstream import run_fast

HERE = Path(__file__).resolve().parent
SIDES = ("direct", "passthrough", "gateway")
RESULTS = HERE / "results"


@dataclass
class Sizes:
    ttft_requests: int  # sequential requests per side
    cpu_streams: int  # paced CPU workload: streams × chunks at cpu_interval ms
    cpu_chunks: int
    cpu_interval: int
    tput_streams: int
    tput_chunks: int  # chunks per stream, as fast as possible
    tput_seconds: float  # per round; sides alternate and each figure is the median of the rounds
    rounds: int
    slow_streams: int
    slow_chunks: int  # one every slow_interval ms
    slow_interval: int
    abandoned: int
    chunk_chars: int = 16


FULL = Sizes(ttft_requests=1000, cpu_streams=50, cpu_chunks=400, cpu_interval=5, tput_streams=50,
             tput_chunks=500, tput_seconds=4.0, rounds=3, slow_streams=1000, slow_chunks=100, slow_interval=100,
             abandoned=50)
QUICK = Sizes(ttft_requests=150, cpu_streams=20, cpu_chunks=200, cpu_interval=5, tput_streams=50,
              tput_chunks=200, tput_seconds=2.0, rounds=1, slow_streams=300, slow_chunks=30, slow_interval=100,
              abandoned=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def get_json(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read())


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def pinned(core: int | None):
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})


class Bench:
    def __init__(self, sizes: Sizes, profile: float = 0.0, only: set[str] | None = None,
                 gateway_cmd: list[str] | None = None) -> None:
        self.z = sizes
        self.gateway_cmd = gateway_cmd
        self.profile = profile
        self.only = only or set()
        cores = sorted(os.sched_getaffinity(0))
        self.cores = cores[:2]
        self.client_core = cores[0] if len(cores) >= 2 else None
        self.gateway_core = cores[1] if len(cores) >= 2 else None
        self.up_port, self.gw_port, self.pt_port = free_port(), free_port(), free_port()
        self.up_url = f"http://127.0.0.1:{self.up_port}"
        self.urls = {side: f"http://127.0.0.1:{port}/v1/chat/completions" for side, port in
                     (("direct", self.up_port), ("passthrough", self.pt_port), ("gateway", self.gw_port))}
        self.tmp = Path(tempfile.mkdtemp(prefix="sluiceway-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.results: dict = {"sizes": sizes.__dict__, "cores": {"client+upstream": self.client_core,
                                                                 "gateway+passthrough": self.gateway_core}}

    # -- processes ----------------------------------------------------------
    def start(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
        if self.client_core is not None:
            os.sched_setaffinity(0, {self.client_core})
        self.up = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(self.up_port)],
                                   cwd=HERE.parent, preexec_fn=pinned(self.client_core),
                                   stdout=subprocess.DEVNULL)
        self.procs.append(self.up)
        wait_http(f"{self.up_url}/stats", self.up)
        cfg = self.tmp / "sluiceway.yaml"
        cfg.write_text("embedded: false\n")
        exe = Path(sys.executable).with_name("sluiceway")
        cmd = self.gateway_cmd or ([str(exe)] if exe.exists() else [sys.executable, "-m", "sluiceway.cli"])
        self.gw_cmd = [*cmd, "serve", "--config", str(cfg), "--port", str(self.gw_port),
                       "--provider", f"up=openai,base_url={self.up_url}/v1", "--log-level", "warning"]
        self.gw_log = self.tmp / "gateway.log"
        self.gw = subprocess.Popen(self.gw_cmd, cwd=self.tmp, preexec_fn=pinned(self.gateway_core),
                                   stdout=self.gw_log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append(self.gw)
        self.pt = subprocess.Popen([sys.executable, "-m", "bench.passthrough", "--port", str(self.pt_port),
                                    "--upstream", self.up_url], cwd=HERE.parent,
                                   preexec_fn=pinned(self.gateway_core), stdout=subprocess.DEVNULL)
        self.procs.append(self.pt)
        wait_http(f"http://127.0.0.1:{self.gw_port}/v1/models", self.gw)
        wait_http(f"http://127.0.0.1:{self.pt_port}/v1/models", self.pt)
        self.pids = {"gateway": self.gw.pid, "passthrough": self.pt.pid}

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        log = self.gw_log.read_text(errors="replace") if hasattr(self, "gw_log") and self.gw_log.exists() else ""
        self.results["gateway_log_errors"] = [ln for ln in log.splitlines()
                                              if "ERROR" in ln or "Traceback" in ln][:20]
        shutil.rmtree(self.tmp, ignore_errors=True)

    def model(self, side: str, n: int, interval: int = 0, sid: str = "") -> str:
        m = f"bench-n{n}-s{self.z.chunk_chars}-i{interval}" + (f"-id{sid}" if sid else "")
        return m if side == "direct" else f"up/{m}"

    def url(self, side: str) -> str:
        return self.urls[side]

    def proxy_cpu(self, side: str) -> float:
        """CPU of whatever sits between client and upstream (nothing, for direct)."""
        return load.cpu_seconds(self.pids[side]) if side in self.pids else 0.0

    async def upstream_leftover(self) -> int:
        """Streams the upstream is still serving once the clients are done."""
        for _ in range(40):
            st = await asyncio.to_thread(get_json, f"{self.up_url}/stats")
            if st["active_streams"] == 0:
                return 0
            await asyncio.sleep(0.05)
        return st["active_streams"]

    # -- scenarios ------------------------------------------------------------
    async def check(self, s) -> None:
        """Both sides must deliver the same text and usage before we time them."""
        out = {}
        for side in SIDES:
            text, usage, done = await load.full_text(s, self.url(side), self.model(side, 20))
            out[side] = (text, (usage or {}).get("completion_tokens"), done)
        if len(set(out.values())) != 1 or not out["direct"][2]:
            raise SystemExit(f"sanity check failed: the sides disagree: {out!r}")

    async def ttft(self, s) -> None:
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        errors = dict.fromkeys(times, 0)
        cpu0 = {side: self.proxy_cpu(side) for side in SIDES}
        for i in range(self.z.ttft_requests + 20):
            for side in SIDES:  # interleaved, so drift hits both sides alike
                r = await load.stream(s, self.url(side), self.model(side, 5), min_frames=5)
                if not r.ok or r.ttft is None:
                    errors[side] += 1
                elif i >= 20:  # warm-up
                    times[side].append(r.ttft * 1000)
        n = self.z.ttft_requests + 20
        res = {side: {"p50": pct(v, 50), "p99": pct(v, 99), "mean": statistics.fmean(v) if v else None,
                      "errors": errors[side], "proxy_cpu_ms_per_request": (self.proxy_cpu(side) - cpu0[side]) / n * 1000}
               for side, v in times.items()}
        for side in ("passthrough", "gateway"):
            res[side]["added_p50"] = res[side]["p50"] - res["direct"]["p50"]
            res[side]["added_p99"] = res[side]["p99"] - res["direct"]["p99"]
        self.results["ttft_ms"] = res

    async def many(self, s, side: str, streams: int, n: int, interval: int, seconds: float = 0.0,
                   min_frames: int | None = None) -> dict:
        """``streams`` concurrent workers; each streams once, or keeps streaming
        for ``seconds``. Returns chunks relayed (upstream content chunks of
        completed streams), errors and timings."""
        ok = errors = 0
        samples: list[str] = []
        durations: list[float] = []
        ttfts: list[float] = []
        start = time.perf_counter()
        stop_at = start + seconds

        async def worker() -> None:
            nonlocal ok, errors
            while True:
                r = await load.stream(s, self.url(side), self.model(side, n, interval),
                                      min_frames=n if min_frames is None else min_frames)
                durations.append(r.seconds)
                if r.ttft is not None:
                    ttfts.append(r.ttft)
                if r.ok:
                    ok += 1
                else:
                    errors += 1
                    if len(samples) < 5:
                        samples.append(r.error)
                if time.perf_counter() >= stop_at:
                    return

        await asyncio.gather(*(worker() for _ in range(streams)))
        wall = time.perf_counter() - start
        return {"streams_ok": ok, "errors": errors, "chunks": ok * n, "seconds": wall,
                "chunks_per_s": ok * n / wall, "error_samples": samples,
                "stream_seconds_p50": pct(durations, 50), "stream_seconds_p90": pct(durations, 90),
                "stream_seconds_max": max(durations, default=0.0), "ttft_seconds_p50": pct(ttfts, 50),
                "ttft_seconds_p90": pct(ttfts, 90), "ttft_seconds_max": max(ttfts, default=0.0)}

    async def cpu(self, s) -> None:
        """CPU per 1000 chunks on a paced workload (one chunk per upstream
        read, as real token streams arrive)."""
        z = self.z
        res = {}
        for side in SIDES:
            c0, g0, u0 = time.process_time(), self.proxy_cpu(side), load.cpu_seconds(self.up.pid)
            run = await self.many(s, side, z.cpu_streams, z.cpu_chunks, z.cpu_interval)
            c1, g1, u1 = time.process_time(), self.proxy_cpu(side), load.cpu_seconds(self.up.pid)
            k = max(run["chunks"], 1) / 1000
            res[side] = {**run, "client_cpu_per_1k": (c1 - c0) / k, "proxy_cpu_per_1k": (g1 - g0) / k,
                         "upstream_cpu_per_1k": (u1 - u0) / k}
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["cpu_paced"] = res

    async def throughput(self, s) -> None:
        z = self.z
        rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
        for i in range(z.rounds):
            for side in SIDES:
                c0, g0 = time.process_time(), self.proxy_cpu(side)
                prof = self.start_profile() if side == "gateway" and self.profile and i == 0 else None
                run = await self.many(s, side, z.tput_streams, z.tput_chunks, 0, seconds=z.tput_seconds)
                c1, g1 = time.process_time(), self.proxy_cpu(side)
                k = max(run["chunks"], 1) / 1000
                rounds[side].append({**run, "client_cpu_per_1k": (c1 - c0) / k, "proxy_cpu_per_1k": (g1 - g0) / k})
                if prof is not None:
                    self.finish_profile(prof)
        res: dict = {}
        for side, runs in rounds.items():
            res[side] = {key: statistics.median(r[key] for r in runs) for key in
                         ("chunks_per_s", "client_cpu_per_1k", "proxy_cpu_per_1k")}
            res[side]["errors"] = sum(r["errors"] for r in runs)
            res[side]["error_samples"] = [e for r in runs for e in r["error_samples"]][:5]
            res[side]["rounds"] = [round(r["chunks_per_s"]) for r in runs]
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["throughput"] = res

    async def slow(self, s) -> None:
        z = self.z
        res = {}
        for side in SIDES:
            pid = self.pids.get(side, os.getpid())  # the process holding the streams' state
            base = load.rss_mb(pid)
            c0, g0 = time.process_time(), self.proxy_cpu(side)
            with load.RSSSampler(pid) as rss:
                run = await self.many(s, side, z.slow_streams, z.slow_chunks, z.slow_interval)
            c1, g1 = time.process_time(), self.proxy_cpu(side)
            k = max(run["chunks"], 1) / 1000
            res[side] = {**run, "rss_before_mb": base, "peak_rss_mb": rss.peak[pid], "client_cpu_s": c1 - c0,
                         "proxy_cpu_s": g1 - g0,
                         "cpu_per_1k": ((g1 - g0) if side in self.pids else (c1 - c0)) / k}
        res["gateway_vmhwm_mb"] = load.rss_mb(self.gw.pid, "VmHWM")
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["slow"] = res

    async def abandoned(self, s) -> None:
        res = {}
        for side in ("direct", "gateway"):
            await asyncio.to_thread(get_json, f"{self.up_url}/reset", "POST")
            ids = [f"{side[0]}{i}" for i in range(self.z.abandoned)]
            barrier = load.Barrier(len(ids))
            runs = await asyncio.gather(*(load.stream(s, self.url(side), self.model(side, 100000, 20, sid),
                                                      abandon_after=3, barrier=barrier) for sid in ids))
            for _ in range(100):  # up to 10 s for the stragglers, so their delay is measured too
                await asyncio.sleep(0.1)
                st = (await asyncio.to_thread(get_json, f"{self.up_url}/stats"))["streams"]
                if all(st.get(sid, {}).get("closed_at") for sid in ids):
                    break
            delays, missing, errors = [], 0, []
            for sid, r in zip(ids, runs, strict=True):
                rec = st.get(sid)
                if not r.ok or r.closed_at is None:
                    errors.append(r.error)
                elif rec is None or rec["closed_at"] is None or rec["closed_at"] - r.closed_at > 1.0:
                    missing += 1
                    if rec is not None and rec["closed_at"] is not None:
                        delays.append((rec["closed_at"] - r.closed_at) * 1000)
                else:
                    delays.append((rec["closed_at"] - r.closed_at) * 1000)
            res[side] = {"p50_ms": pct(delays, 50), "max_ms": max(delays) if delays else float("nan"),
                         "not_cancelled_after_1s": missing, "not_cancelled_after_10s": len(ids) - len(delays), "errors": len(errors), "error_samples": errors[:3]}
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["abandoned"] = res

    # -- profiling (optional: needs py-spy) -----------------------------------
    def start_profile(self) -> subprocess.Popen | None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            print("(py-spy not found; skipping the profile)", file=sys.stderr)
            return None
        RESULTS.mkdir(exist_ok=True)
        return subprocess.Popen([spy, "record", "--pid", str(self.gw.pid), "--duration", str(int(self.profile)),
                                 "--rate", "500", "--format", "raw", "--nonblocking",
                                 "--output", str(RESULTS / "gateway-profile.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=pinned(self.client_core))

    def finish_profile(self, prof: subprocess.Popen) -> None:
        try:
            prof.wait(self.profile + 30)
        except subprocess.TimeoutExpired:
            prof.kill()

    async def run(self) -> None:
        async with load.session() as s:
            await self.check(s)
            steps = [("time to first token", "ttft", self.ttft), ("CPU per 1000 chunks", "cpu", self.cpu),
                     ("throughput at 50 streams", "throughput", self.throughput),
                     ("slow streams", "slow", self.slow), ("abandoned streams", "abandoned", self.abandoned)]
            for name, key, step in steps:
                if self.only and key not in self.only:
                    continue
                t = time.perf_counter()
                print(f"… {name}", file=sys.stderr, flush=True)
                with load.Noise(self.cores, [os.getpid(), self.up.pid, *self.pids.values()]) as noise:
                    await step(s)
                self.results.setdefault("foreign_cpu_cores", {})[name] = round(noise.foreign, 3)
                print(f"  done in {time.perf_counter() - t:.1f} s; other processes used {noise.foreign:.2f} "
                      f"of our cores meanwhile", file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------

def profile_summary(path: Path, top: int = 15) -> str:
    """The hottest functions of a py-spy raw (folded) profile: by own time and
    including callees, as shares of the event loop thread's samples. Other
    threads (the aiohttp/aiosqlite workers) mostly sleep in a queue.get that
    py-spy does not always recognise as idle, so they are left out."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or "asyncio/runners.py" not in stack:
            continue
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        for f in set(frames):
            incl[f] = incl.get(f, 0) + int(n)
    if not total:
        return "(empty profile)"
    out = [f"gateway profile under the throughput run ({total} samples of the event loop thread; "
           "the loop's own C code and syscalls show as Runner.run)", "  own time:"]
    out += [f"    {n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    out.append("  including callees:")
    out += [f"    {n / total:6.1%}  {f}" for f, n in sorted(incl.items(), key=lambda x: -x[1])[:top + 8]]
    return "\n".join(out)


def fmt(x: float | int | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if x != x:
        return "nan"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(d: float | None, g: float | None) -> str:
    if d is None or g is None or d != d or g != g or d <= 0 or g < 0:
        return "-"
    return f"{g / d:.2f}x"


def table(r: dict) -> tuple[str, bool]:
    """metric | direct | passthru | gateway | gateway/direct | gateway/passthru | target | verdict"""
    rows: list[tuple[str, ...]] = []
    all_ok = True

    def row(metric: str, d, p, g, target: str = "", ok: bool | None = None, digits: int = 2,
            ratios: bool = True) -> None:
        nonlocal all_ok
        if ok is False:
            all_ok = False
        rows.append((metric, fmt(d, digits), fmt(p, digits), fmt(g, digits),
                     ratio(d, g) if ratios else "-", ratio(p, g) if ratios else "-", target,
                     "" if ok is None else ("PASS" if ok else "FAIL")))

    if "ttft_ms" in r:
        t = r["ttft_ms"]
        row("TTFT p50, 1 stream (ms)", t["direct"]["p50"], t["passthrough"]["p50"], t["gateway"]["p50"], digits=3)
        row("TTFT p99, 1 stream (ms)", t["direct"]["p99"], t["passthrough"]["p99"], t["gateway"]["p99"], digits=3)
        added = t["gateway"]["added_p50"]
        row("  added TTFT p50 (ms)", None, t["passthrough"]["added_p50"], added, "<= 1 ms", added <= 1.0, 3, False)
        row("  added TTFT p99 (ms)", None, t["passthrough"]["added_p99"], t["gateway"]["added_p99"], digits=3,
            ratios=False)
        row("  proxy CPU per request (ms) *", None, t["passthrough"]["proxy_cpu_ms_per_request"],
            t["gateway"]["proxy_cpu_ms_per_request"], "(info)", None, 3)
    errs: dict[str, int] = {side: 0 for side in SIDES}
    if "throughput" in r:
        tp = r["throughput"]
        cpu = tp["gateway"]["proxy_cpu_per_1k"]
        row("CPU-s/1000 chunks, 50 streams flat out *", tp["direct"]["client_cpu_per_1k"],
            tp["passthrough"]["proxy_cpu_per_1k"], cpu, "<= 0.03", cpu <= 0.03, 4)
    if "cpu_paced" in r:
        c = r["cpu_paced"]
        row(f"CPU-s/1000 chunks, paced {r['sizes']['cpu_interval']} ms *", c["direct"]["client_cpu_per_1k"],
            c["passthrough"]["proxy_cpu_per_1k"], c["gateway"]["proxy_cpu_per_1k"], digits=4)
        errs = {side: errs[side] + c[side]["errors"] for side in SIDES}
    if "throughput" in r:
        cps = tp["gateway"]["chunks_per_s"]
        row("chunks/s at 50 streams", tp["direct"]["chunks_per_s"], tp["passthrough"]["chunks_per_s"], cps,
            ">= 25,000", cps >= 25000, 0)
        ceiling = [1000 / x if x else None for x in (tp["passthrough"]["proxy_cpu_per_1k"], cpu)]
        row("  chunks per CPU-second (free-core ceiling)", None, ceiling[0], ceiling[1], "(info)", None, 0)
        errs = {side: errs[side] + tp[side]["errors"] for side in SIDES}
    if "throughput" in r or "cpu_paced" in r:
        row("  errors (the runs above)", errs["direct"], errs["passthrough"], errs["gateway"], "0",
            errs["gateway"] == 0, 0, False)
    if "slow" in r:
        s = r["slow"]
        n = r["sizes"]["slow_streams"]

        def slow_row(metric: str, key: str, target: str = "", ok: bool | None = None, digits: int = 1) -> None:
            row(f"{n} slow streams: {metric}", s["direct"][key], s["passthrough"][key], s["gateway"][key],
                target, ok, digits)

        slow_row("errors", "errors", "0", s["gateway"]["errors"] == 0, 0)
        ideal = r["sizes"]["slow_chunks"] * r["sizes"]["slow_interval"] / 1000
        slow_row(f"stream time p50 (ideal {ideal:.0f} s)", "stream_seconds_p50")
        slow_row("stream time max (s)", "stream_seconds_max")
        slow_row("first token p50 (s)", "ttft_seconds_p50", digits=3)
        slow_row("first token max (s)", "ttft_seconds_max", digits=2)
        slow_row("CPU-s/1000 chunks (with admission) *", "cpu_per_1k", digits=4)
        rss = s["gateway"]["peak_rss_mb"]
        slow_row("peak RSS MB **", "peak_rss_mb", "< 300", rss < 300)
    if "abandoned" in r:
        a = r["abandoned"]
        m = r["sizes"]["abandoned"]
        row(f"{m} abandoned: upstream sees close p50 (ms)", a["direct"]["p50_ms"], None, a["gateway"]["p50_ms"])
        row(f"{m} abandoned: upstream sees close max (ms)", a["direct"]["max_ms"], None, a["gateway"]["max_ms"],
            "<= 100", a["gateway"]["max_ms"] <= 100 and a["gateway"]["not_cancelled_after_1s"] == 0)
        row(f"{m} abandoned: still open upstream after 1 s", a["direct"]["not_cancelled_after_1s"], None,
            a["gateway"]["not_cancelled_after_1s"], "0", a["gateway"]["not_cancelled_after_1s"] == 0, 0, False)
    left = sum(r[k]["leftover_upstream_streams"] for k in ("cpu_paced", "throughput", "slow", "abandoned") if k in r)
    row("upstream streams left running at the end", None, None, left, "0", left == 0, 0, False)

    head = ("metric", "direct", "passthru", "gateway", "gw/direct", "gw/passthru", "target", "")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    notes = ["*  CPU of the process in the middle; the direct column is the load client's own CPU, for scale.",
             "   Flat out, one upstream read carries several chunks; paced, every chunk is its own read and write.",
             "** the direct column is the load client holding the same streams itself (its RSS includes the runner)."]
    notes.append("The ceiling row is 1 / CPU per chunk: what one otherwise idle core would relay; it is "
                 "informational (the bar is the measured row), but it survives a busy machine.")
    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *(line(x) for x in rows), "", *notes]), all_ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="sluiceway vs a direct connection to a fake upstream")
    ap.add_argument("--quick", action="store_true", help="a small version, under a minute")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="record a py-spy profile of the gateway during the throughput run "
                         "(raw folded stacks in bench/results/gateway-profile.txt)")
    ap.add_argument("--only", default="", metavar="NAMES",
                    help="comma-separated scenarios to run: ttft,cpu,throughput,slow,abandoned (default: all)")
    ap.add_argument("--abandoned", type=int, default=0, metavar="N", help="streams for the abandoned scenario")
    ap.add_argument("--gateway-cmd", default="", metavar="CMD",
                    help="run the gateway with this command instead of `sluiceway` (it gets `serve --config …`); "
                         "e.g. a launcher that patches a proposed change in, for an A/B comparison")
    ap.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write the results")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.profile:
        sizes.tput_seconds = max(sizes.tput_seconds, args.profile + 1)
    if args.abandoned:
        sizes.abandoned = args.abandoned
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - {"ttft", "cpu", "throughput", "slow", "abandoned"}
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    bench = Bench(sizes, args.profile, only, shlex.split(args.gateway_cmd) or None)
    t0 = time.perf_counter()
    try:
        bench.start()
        run_fast(bench.run())
    finally:
        bench.stop()
    r = bench.results
    r["wall_seconds"] = time.perf_counter() - t0
    r["command"] = shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])])
    text, ok = table(r)
    r["passed"] = ok
    print(f"sluiceway benchmark ({'quick' if args.quick else 'full'}; client+upstream on core "
          f"{bench.client_core}, gateway on core {bench.gateway_core}; {r['wall_seconds']:.0f} s)")
    print(text)
    foreign = r.get("foreign_cpu_cores", {})
    if foreign:
        print("other processes' CPU on our two cores (in cores; the less the better): "
              + ", ".join(f"{k} {v:.2f}" for k, v in foreign.items()))
    if r["gateway_log_errors"]:
        print("\ngateway log errors:\n  " + "\n  ".join(r["gateway_log_errors"]))
    prof = RESULTS / "gateway-profile.txt"
    if args.profile and prof.exists():
        print("\n" + profile_summary(prof))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nresults: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
