"""The benchmark suite: sluiceway against a direct connection to the same
fake upstream and against a byte passthrough proxy (the floor), for the
targets of issue 18; the session chat beside the stateless path.

    python -m bench.run            # the full run (about 4 minutes)
    python -m bench.run --quick    # a small version, about a minute
    python -m bench.run --only ttft,throughput --gateway-cmd "…"   # some scenarios, another build

The fake upstream and this process (the load client) share one core; the
passthrough and sluiceway (``sluiceway serve``, one uvicorn worker, embedded
model off, SQLite store) get the other. Every figure is taken on every side
in the same run, sides interleaved and figures the median of rounds, and
printed side by side with the ratio sluiceway / passthrough and the target.
The exit status is 0 when every target passes. Results also go to
``bench/results/latest.json``. For instruction counts, which a noisy
machine cannot blur, see ``bench.callgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import load
from .fake_upstream import run_fast
from .report import profile_summary, report
from .stack import Stack, free_port, get_json, pinned, raise_nofile, two_cores, wait_http

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# direct: the client straight to the upstream; passthrough: through the byte passthrough (the floor);
# sluiceway: POST /v1/chat/completions through the gateway (stateless); session: POST /chat/stream
# through a second gateway process of the same build (user turn stored in SQLite first, the answer a run)
SIDES = ("direct", "passthrough", "sluiceway", "session")
STATELESS = ("direct", "passthrough", "sluiceway")
PROXIES = ("passthrough", "sluiceway", "session")
SCENARIOS = ("ttft", "throughput", "paced", "slow", "abandoned")
ALIASES = {"cpu": "paced", "cancel": "abandoned", "seq": "ttft"}

__all__ = ["free_port", "main", "wait_http"]  # free_port and wait_http: older imports from here


@dataclass
class Sizes:
    seq_requests: int  # sequential requests per side per round (1 stream at a time)
    seq_chunks: int  # chunks per sequential request
    tput_streams: int  # concurrent streams, each seq of tput_chunks as fast as possible
    tput_chunks: int
    tput_seconds: float  # per round per side
    rounds: int  # figures are the median of the rounds; sides alternate within each
    paced_streams: int  # concurrent streams of paced_chunks, one every paced_interval ms
    paced_chunks: int
    paced_interval: int
    slow_streams: int
    slow_chunks: int  # one every slow_interval ms
    slow_interval: int
    abandoned: int
    warmup: int = 20  # requests per side before anything is timed
    chunk_chars: int = 16


FULL = Sizes(seq_requests=400, seq_chunks=50, tput_streams=50, tput_chunks=500, tput_seconds=4.0, rounds=3,
             paced_streams=50, paced_chunks=400, paced_interval=5, slow_streams=1000, slow_chunks=100,
             slow_interval=100, abandoned=50)
QUICK = Sizes(seq_requests=120, seq_chunks=50, tput_streams=50, tput_chunks=500, tput_seconds=2.0, rounds=1,
              paced_streams=20, paced_chunks=200, paced_interval=5, slow_streams=300, slow_chunks=30,
              slow_interval=100, abandoned=20, warmup=10)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def median_of(rounds: list[dict], key: str) -> float:
    vals = [r[key] for r in rounds if r.get(key) is not None and r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def rotated(seq: tuple[str, ...], i: int) -> tuple[str, ...]:
    """The sides in a different order each time, so that whoever runs after
    whom (and its leftovers on the shared core) is spread evenly."""
    k = i % len(seq)
    return seq[k:] + seq[:k]


class Bench:
    def __init__(self, sizes: Sizes, profile: float = 0.0, only: set[str] | None = None,
                 gateway_cmd: list[str] | None = None) -> None:
        self.z = sizes
        self.profile = profile
        self.only = only or set(SCENARIOS)
        self.client_core, self.gateway_core = two_cores()
        self.cores = [c for c in (self.client_core, self.gateway_core) if c is not None]
        self.tmp = Path(tempfile.mkdtemp(prefix="sluiceway-bench-"))
        self.stack = Stack(self.tmp, self.client_core, self.gateway_core, gateway_cmd)
        self.ports = {side: free_port() for side in PROXIES}
        self.results: dict = {"sizes": sizes.__dict__, "cores": {"client+upstream": self.client_core,
                                                                 "gateway+passthrough": self.gateway_core}}

    # -- processes ----------------------------------------------------------
    def start(self) -> None:
        raise_nofile()
        if self.client_core is not None:
            os.sched_setaffinity(0, {self.client_core})
        st = self.stack
        self.up = st.start_upstream()
        self.urls = {"direct": st.up_url + load.CHAT.path}
        procs = {"passthrough": st.start_passthrough(self.ports["passthrough"]),
                 "sluiceway": st.start_gateway("sluiceway", self.ports["sluiceway"])}
        if self.only & {"ttft", "throughput", "paced"}:
            procs["session"] = st.start_gateway("session", self.ports["session"])
        for side, proc in procs.items():
            base = f"http://127.0.0.1:{self.ports[side]}"
            wait_http(base + "/v1/models", proc)
            self.urls[side] = base + self.wire(side).path
        self.procs = procs
        self.pids = {side: p.pid for side, p in procs.items()}
        self.gw = procs["sluiceway"]
        self.results["gateway_cmd"] = st.gateway_cmd

    def stop(self) -> None:
        self.stack.stop()
        self.results["gateway_log_errors"] = self.stack.log_errors("sluiceway") + self.stack.log_errors("session")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sides(self, sides: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s for s in sides if s == "direct" or s in self.pids)

    @staticmethod
    def wire(side: str) -> load.Wire:
        return load.SESSION if side == "session" else load.CHAT

    def model(self, side: str, n: int, interval: int = 0, sid: str = "") -> str:
        m = f"bench-n{n}-s{self.z.chunk_chars}-i{interval}" + (f"-id{sid}" if sid else "")
        return m if side == "direct" else f"up/{m}"

    async def one(self, s, side: str, n: int, interval: int = 0, **kw) -> load.Result:
        return await load.stream(s, self.urls[side], self.model(side, n, interval), wire=self.wire(side), **kw)

    async def upstream_leftover(self) -> int:
        """Streams the upstream is still serving once the clients are done."""
        for _ in range(40):
            st = await asyncio.to_thread(get_json, f"{self.stack.up_url}/stats")
            if st["active_streams"] == 0:
                return 0
            await asyncio.sleep(0.05)
        return st["active_streams"]

    # -- scenarios ------------------------------------------------------------
    async def check(self, s) -> None:
        """Every side must deliver the same text (and usage) before we time them."""
        out = {}
        for side in self.sides(SIDES):
            out[side] = await load.full_text(s, self.urls[side], self.model(side, 20), self.wire(side))
        texts = {text for text, _, _ in out.values()}
        tokens = {tok for _, tok, _ in out.values()}
        if len(texts) != 1 or len(tokens) != 1 or not all(done for _, _, done in out.values()) \
                or not next(iter(texts)):
            raise SystemExit(f"sanity check failed: the sides disagree: {out!r}")

    async def ttft(self, s) -> None:
        """One stream at a time: sequential requests of ``seq_chunks`` chunks,
        every side in turn (in a rotating order). Per round and side: TTFT
        p50/p99 and the CPU of the process in the middle per 1000 chunks,
        which is the per-request cost at this size; figures are the
        median of the rounds."""
        z = self.z
        sides = self.sides(SIDES)
        for i in range(z.warmup):
            for side in rotated(sides, i):
                await self.one(s, side, z.seq_chunks, min_frames=z.seq_chunks)
        rounds: dict[str, list[dict]] = {side: [] for side in sides}
        for _ in range(z.rounds):
            times: dict[str, list[float]] = {side: [] for side in sides}
            errors = dict.fromkeys(sides, 0)
            client = dict.fromkeys(sides, 0.0)
            cpu = {side: load.CPU(self.pids[side]) for side in sides if side in self.pids}
            sys0 = {side: load.syscalls(self.pids[side]) for side in cpu}
            for i in range(z.seq_requests):
                for side in rotated(sides, i):
                    c0 = time.process_time()
                    r = await self.one(s, side, z.seq_chunks, min_frames=z.seq_chunks)
                    client[side] += time.process_time() - c0
                    if not r.ok or r.ttft is None:
                        errors[side] += 1
                    else:
                        times[side].append(r.ttft * 1000)
            for side in sides:
                ok = len(times[side])
                k = max(ok * z.seq_chunks, 1) / 1000
                used = cpu[side].seconds() if side in cpu else client[side]
                calls = load.syscalls(self.pids[side]) - sys0[side] if side in cpu else None
                rounds[side].append({"p50": pct(times[side], 50), "p99": pct(times[side], 99),
                                     "mean": statistics.fmean(times[side]) if times[side] else None,
                                     "errors": errors[side], "requests": ok, "cpu_per_1k": used / k,
                                     "cpu_ms_per_request": used / max(ok, 1) * 1000,
                                     "syscalls_per_request": None if calls is None else calls / max(ok, 1),
                                     "cpu_s": cpu[side].both if side in cpu else None})
        self.results["ttft"] = summarize(rounds, ("p50", "p99", "mean", "cpu_per_1k", "cpu_ms_per_request",
                                                  "syscalls_per_request"))

    async def many(self, s, side: str, streams: int, n: int, interval: int, seconds: float = 0.0,
                   min_frames: int | None = None) -> dict:
        """``streams`` concurrent workers; each streams once, or keeps streaming
        for ``seconds``. Returns chunks relayed (upstream content chunks of
        completed streams), errors and timings. TTFT is given over every
        stream and, as ``steady``, without each worker's first stream (the
        burst of all of them starting at once)."""
        ok = errors = 0
        samples: list[str] = []
        durations: list[float] = []
        ttfts: list[float] = []
        steady: list[float] = []
        start = time.perf_counter()
        stop_at = start + seconds

        async def worker() -> None:
            nonlocal ok, errors
            first = True
            while True:
                r = await self.one(s, side, n, interval, min_frames=n if min_frames is None else min_frames)
                durations.append(r.seconds)
                if r.ttft is not None:
                    ttfts.append(r.ttft)
                    if not first:
                        steady.append(r.ttft)
                first = False
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
                "stream_seconds_p50": pct(durations, 50), "stream_seconds_max": max(durations, default=0.0),
                "ttft_ms_p50": pct(ttfts, 50) * 1000, "ttft_ms_p99": pct(ttfts, 99) * 1000,
                "ttft_ms_max": max(ttfts, default=float("nan")) * 1000,
                # with fewer later streams than workers (a slow round), all of them
                **({"steady_ttft_ms_p50": pct(steady, 50) * 1000, "steady_ttft_ms_p99": pct(steady, 99) * 1000}
                   if len(steady) >= streams else
                   {"steady_ttft_ms_p50": pct(ttfts, 50) * 1000, "steady_ttft_ms_p99": pct(ttfts, 99) * 1000}),
                "steady_streams": len(steady)}

    async def measured(self, s, side: str, *args, **kw) -> dict:
        """``many`` with the CPU of the client and of the process in the middle."""
        c0 = time.process_time()
        pid = self.pids.get(side)
        cpu = load.CPU(pid) if pid else None
        sys0 = load.syscalls(pid) if pid else 0
        run = await self.many(s, side, *args, **kw)
        client = time.process_time() - c0
        k = max(run["chunks"], 1) / 1000
        used = cpu.seconds() if cpu is not None else client
        return {**run, "client_cpu_per_1k": client / k, "cpu_per_1k": used / k,
                "cpu_s": cpu.both if cpu is not None else None,
                "syscalls_per_chunk": (load.syscalls(pid) - sys0) / (k * 1000) if pid else None}

    async def throughput(self, s) -> None:
        """50 streams of 500 chunks as fast as they go, for tput_seconds per
        side, the sides taking turns, ``rounds`` times: chunks/s, CPU per 1000
        chunks and TTFT under that load."""
        z = self.z
        sides = self.sides(SIDES)
        rounds: dict[str, list[dict]] = {side: [] for side in sides}
        for i in range(z.rounds):
            for side in rotated(sides, i):
                prof = self.start_profile() if side == "sluiceway" and self.profile and i == 0 else None
                rounds[side].append(await self.measured(s, side, z.tput_streams, z.tput_chunks, 0,
                                                        seconds=z.tput_seconds))
                if prof is not None:
                    self.finish_profile(prof)
        res = summarize(rounds, ("chunks_per_s", "cpu_per_1k", "client_cpu_per_1k", "syscalls_per_chunk",
                                 "steady_ttft_ms_p50",
                                 "steady_ttft_ms_p99", "ttft_ms_p50", "ttft_ms_p99", "ttft_ms_max"),
                        ttft=("steady_ttft_ms_p50", "steady_ttft_ms_p99"))
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["throughput"] = res

    async def paced(self, s) -> None:
        """CPU per 1000 chunks when every chunk is its own upstream read (one
        every ``paced_interval`` ms per stream), as real token streams come."""
        z = self.z
        res: dict = {}
        for side in self.sides(SIDES):
            res[side] = await self.measured(s, side, z.paced_streams, z.paced_chunks, z.paced_interval)
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["paced"] = res

    async def slow(self, s) -> None:
        z = self.z
        res = {}
        for side in STATELESS:
            pid = self.pids.get(side, os.getpid())  # the process holding the streams' state
            base = load.rss_mb(pid)
            with load.RSSSampler(pid) as rss:
                run = await self.measured(s, side, z.slow_streams, z.slow_chunks, z.slow_interval)
            res[side] = {**run, "rss_before_mb": base, "peak_rss_mb": rss.peak[pid],
                         "first_token_s_p50": run["ttft_ms_p50"] / 1000, "first_token_s_p99": run["ttft_ms_p99"] / 1000,
                         "first_token_s_max": run["ttft_ms_max"] / 1000}
        res["sluiceway_vmhwm_mb"] = load.rss_mb(self.gw.pid, "VmHWM")
        res["leftover_upstream_streams"] = await self.upstream_leftover()
        self.results["slow"] = res

    async def abandoned(self, s) -> None:
        """Streams (one chunk per 20 ms) that the clients drop together once
        each has had 3 chunks: how long until the upstream saw each of its
        connections close. A round takes a second per side, and one stall
        of the shared core shows in its maximum, so there are at least 3
        rounds (sides in a rotating order) and the figures are their
        medians; the worst round is kept too."""
        rounds: dict[str, list[dict]] = {side: [] for side in STATELESS}
        for i in range(max(3, self.z.rounds)):
            for side in rotated(STATELESS, i):
                rounds[side].append(await self.abandon_once(s, side, f"{side[0]}{i}_"))  # no "-": it splits the model name
        res: dict = {}
        for side, runs in rounds.items():
            res[side] = {"p50_ms": median_of(runs, "p50_ms"), "max_ms": median_of(runs, "max_ms"),
                         "worst_ms": max((r["max_ms"] for r in runs), default=float("nan")),
                         **{k: max(r[k] for r in runs) for k in ("not_cancelled_after_1s", "not_cancelled_after_10s",
                                                                 "leftover_upstream_streams")},
                         "errors": sum(r["errors"] for r in runs),
                         "error_samples": [e for r in runs for e in r["error_samples"]][:3], "rounds": runs}
        res["leftover_upstream_streams"] = res["sluiceway"]["leftover_upstream_streams"]
        self.results["abandoned"] = res

    async def abandon_once(self, s, side: str, prefix: str) -> dict:
        await asyncio.to_thread(get_json, f"{self.stack.up_url}/reset", "POST")
        ids = [f"{prefix}{i}" for i in range(self.z.abandoned)]
        barrier = load.Barrier(len(ids))
        runs = await asyncio.gather(*(load.stream(s, self.urls[side], self.model(side, 100000, 20, sid),
                                                  abandon_after=3, barrier=barrier) for sid in ids))
        for _ in range(100):  # up to 10 s for the stragglers, so their delay is measured too
            await asyncio.sleep(0.1)
            st = (await asyncio.to_thread(get_json, f"{self.stack.up_url}/stats"))["streams"]
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
        return {"p50_ms": pct(delays, 50), "max_ms": max(delays) if delays else float("nan"),
                "not_cancelled_after_1s": missing, "not_cancelled_after_10s": len(ids) - len(delays),
                "errors": len(errors), "error_samples": errors[:3],
                "leftover_upstream_streams": await self.upstream_leftover()}

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
            steps = [("1 stream, sequential", "ttft", self.ttft),
                     ("50 streams flat out", "throughput", self.throughput),
                     ("paced streams", "paced", self.paced), ("slow streams", "slow", self.slow),
                     ("abandoned streams", "abandoned", self.abandoned)]
            for name, key, step in steps:
                if key not in self.only:
                    continue
                t = time.perf_counter()
                print(f"… {name}", file=sys.stderr, flush=True)
                with load.Noise(self.cores, [os.getpid(), self.up.pid, *self.pids.values()]) as noise:
                    await step(s)
                self.results.setdefault("foreign_cpu_cores", {})[key] = round(noise.foreign, 3)
                print(f"  done in {time.perf_counter() - t:.1f} s; other processes used {noise.foreign:.2f} "
                      f"of our cores meanwhile", file=sys.stderr, flush=True)


def summarize(rounds: dict[str, list[dict]], keys: tuple[str, ...],
              ttft: tuple[str, str] = ("p50", "p99")) -> dict:
    """Per side: the median over rounds of each figure, the rounds
    themselves, errors; and the TTFT added over direct (per round, then the
    median), as ``added_p50`` / ``added_p99``."""
    res: dict = {}
    for side, runs in rounds.items():
        res[side] = {key: median_of(runs, key) for key in keys}
        res[side]["errors"] = sum(r["errors"] for r in runs)
        res[side]["error_samples"] = [e for r in runs for e in r.get("error_samples", [])][:5]
        res[side]["rounds"] = [{k: v for k, v in r.items() if k != "error_samples"} for r in runs]
    if "direct" in rounds:
        base = rounds["direct"]
        for side, runs in rounds.items():
            if side == "direct":
                continue
            for name, key in zip(("added_p50", "added_p99"), ttft, strict=True):
                res[side][name] = statistics.median(r[key] - d[key] for r, d in zip(runs, base, strict=True))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="sluiceway vs a byte passthrough vs a direct connection to a fake "
                                             "upstream, for the targets of issue 18")
    ap.add_argument("--quick", action="store_true", help="a small version, about a minute")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="record a py-spy profile of sluiceway during the first throughput round "
                         "(raw folded stacks in bench/results/gateway-profile.txt)")
    ap.add_argument("--only", default="", metavar="NAMES",
                    help=f"comma-separated scenarios to run: {','.join(SCENARIOS)} (default: all)")
    ap.add_argument("--rounds", type=int, default=0, help="rounds of the ttft and throughput scenarios")
    ap.add_argument("--abandoned", type=int, default=0, metavar="N", help="streams for the abandoned scenario")
    ap.add_argument("--gateway-cmd", default="", metavar="CMD",
                    help="run the gateway with this command instead of `sluiceway` (it gets `serve --config …`); "
                         "e.g. a launcher that patches a proposed change in, or sets PYTHONPATH to another "
                         "worktree, for an A/B comparison")
    ap.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write the results")
    args = ap.parse_args(argv)
    sizes = Sizes(**(QUICK if args.quick else FULL).__dict__)
    if args.profile:
        sizes.tput_seconds = max(sizes.tput_seconds, args.profile + 1)
    if args.abandoned:
        sizes.abandoned = args.abandoned
    if args.rounds:
        sizes.rounds = args.rounds
    only = {ALIASES.get(x.strip(), x.strip()) for x in args.only.split(",") if x.strip()}
    unknown = only - set(SCENARIOS)
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
    text, checks = report(r)
    r["checks"] = checks
    r["passed"] = all(c["ok"] for c in checks)
    print(f"sluiceway benchmark ({'quick' if args.quick else 'full'}; client+upstream on core "
          f"{bench.client_core}, passthrough and sluiceway on core {bench.gateway_core}; "
          f"{r['wall_seconds']:.0f} s)")
    print(text)
    if r["gateway_log_errors"]:
        print("\ngateway log errors:\n  " + "\n  ".join(r["gateway_log_errors"]))
    prof = RESULTS / "gateway-profile.txt"
    if args.profile and prof.exists():
        print("\n" + profile_summary(prof))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    failed = [c["figure"] for c in checks if not c["ok"]]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} targets met"
          + (f"; missed: {'; '.join(failed)}" if failed else "") + f"\nresults: {out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
