"""The load client: an aiohttp streaming client that counts SSE frames
without parsing them (so that it stays cheap next to the upstream on its
core) and records the moments that matter: first content, close, end."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass

import aiohttp
import orjson

FIRST_CONTENT = re.compile(rb'"content":"[^"]')
TICK = os.sysconf("SC_CLK_TCK")
PROMPT = "Say something long."


@dataclass(frozen=True, slots=True)
class Wire:
    """How one kind of endpoint is asked and read: its path, its request
    body, what marks the first content and what marks a complete answer."""

    path: str
    first: re.Pattern[bytes]
    done: bytes
    session: bool = False

    def body(self, model: str) -> bytes:
        if self.session:  # the web UI's stored chat: a new session per request
            return orjson.dumps({"model": model, "message": PROMPT})
        return orjson.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                             "messages": [{"role": "user", "content": PROMPT}]})


# POST /v1/chat/completions: OpenAI chunks, ending in data: [DONE]
CHAT = Wire("/v1/chat/completions", FIRST_CONTENT, b"[DONE]")
# POST /chat/stream: the session chat the web UI uses (user turn stored first), canonical events, ending in finish
SESSION = Wire("/chat/stream", re.compile(rb'"type":"text-delta"'), b'"type":"finish"', session=True)


@dataclass(slots=True)
class Result:
    ok: bool = False
    error: str = ""
    ttft: float | None = None  # seconds from sending the request to the first content byte
    frames: int = 0  # data: lines seen, [DONE] included
    closed_at: float | None = None  # time.monotonic() when an abandoned stream was closed
    seconds: float = 0.0  # the whole request, from sending it to the end of the body


def session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30),  # a hung gateway is an error, not a hang
        auto_decompress=False,
    )


class Barrier:
    """Holds abandoning clients until all of them are mid-stream, so that
    they leave together and the figure is the cancellation, not the
    gateway still busy opening the later streams."""

    def __init__(self, parties: int, timeout: float = 15.0) -> None:
        self.parties = parties
        self.timeout = timeout
        self.go = asyncio.Event()

    def leave(self) -> None:
        """Arrive without waiting (a stream that failed early must not hold the rest forever)."""
        self.parties -= 1
        if self.parties <= 0:
            self.go.set()

    async def wait(self) -> None:
        self.leave()
        try:
            await asyncio.wait_for(self.go.wait(), self.timeout)
        except TimeoutError:
            pass  # someone never got there; leave anyway


async def stream(s: aiohttp.ClientSession, url: str, model: str, *, min_frames: int = 0,
                 abandon_after: int | None = None, barrier: Barrier | None = None, wire: Wire = CHAT) -> Result:
    """One streamed chat completion. Succeeds when it ends in ``wire.done``
    ([DONE]) after at least ``min_frames`` data frames; with ``abandon_after``
    the client closes the connection after that many frames instead (once
    everyone at ``barrier`` has too)."""
    r = Result()
    first, done_marker = wire.first, wire.done
    t0 = time.perf_counter()
    arrived = False
    try:
        async with s.post(url, data=wire.body(model), headers={"content-type": "application/json"}) as resp:
            if resp.status != 200:
                r.error = f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
                return r
            content = resp.content
            carry = b""
            done = False
            while True:
                data = await content.readany()
                if not data:
                    break
                buf = carry + data
                if r.ttft is None and first.search(buf):
                    r.ttft = time.perf_counter() - t0
                # carry keeps the tail of the last read, so that a marker split across reads is
                # seen once: whatever lies wholly inside the carry was counted already
                r.frames += buf.count(b"data:") - carry.count(b"data:")
                carry = buf[-32:]
                if not done and done_marker in buf:
                    done = True
                if abandon_after is not None and r.frames >= abandon_after:
                    if barrier is not None:
                        arrived = True
                        await barrier.wait()
                    r.closed_at = time.monotonic()
                    resp.close()  # drop the connection, as a client that goes away does
                    r.ok = True
                    return r
            if not done:
                r.error = f"stream ended without {done_marker.decode()} after {r.frames} frames"
            elif r.frames < min_frames:
                r.error = f"only {r.frames} frames, expected at least {min_frames}"
            else:
                r.ok = True
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        r.error = f"{type(e).__name__}: {e}"
    finally:
        if barrier is not None and not arrived:
            barrier.leave()
    r.seconds = time.perf_counter() - t0
    return r


async def full_text(s: aiohttp.ClientSession, url: str, model: str,
                    wire: Wire = CHAT) -> tuple[str, int | None, bool]:
    """Parse a whole stream properly: the concatenated text, the completion
    tokens of the usage, and whether it ended as it should ([DONE], or a
    finish event). Used once per side as a sanity check."""
    async with s.post(url, data=wire.body(model), headers={"content-type": "application/json"}) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {raw[:300]!r}")
    text, tokens, done = [], None, False
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        doc = orjson.loads(payload)
        if wire.session:  # canonical events
            if doc.get("type") == "text-delta":
                text.append(doc.get("delta") or "")
            elif doc.get("type") == "finish":
                done = True
                tokens = (doc.get("usage") or {}).get("output", tokens)
            continue
        tokens = (doc.get("usage") or {}).get("completion_tokens", tokens)
        for ch in doc.get("choices") or ():
            text.append((ch.get("delta") or {}).get("content") or "")
    return "".join(text), tokens, done


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def cpu_precise(pid: int) -> float:
    """CPU seconds of a process's live threads to the nanosecond (the
    scheduler's run time, /proc/<pid>/task/*/schedstat), where
    ``cpu_seconds`` counts in clock ticks (10 ms). Threads that have exited
    are missing from it, so callers compare it with ``cpu_seconds``."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return cpu_seconds(pid)
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


class CPU:
    """A process's CPU time between two points: precise (schedstat) unless
    a thread exited meanwhile and took its time with it, then in ticks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.precise0, self.ticks0 = cpu_precise(pid), cpu_seconds(pid)

    def seconds(self) -> float:
        precise = cpu_precise(self.pid) - self.precise0
        ticks = cpu_seconds(self.pid) - self.ticks0
        self.both = {"precise": round(precise, 4), "ticks": round(ticks, 4)}  # for the results file
        # ticks are sampled: +-2 ticks of error, and a little more on a long interval
        return ticks if ticks > precise * 1.05 + 3 / TICK else precise


def syscalls(pid: int) -> int:
    """Read- and write-like system calls of a process so far (/proc/<pid>/io
    syscr + syscw: read, recv…, write, send…; not epoll or timers)."""
    n = 0
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("syscr", "syscw"):
                n += int(v)
    return n


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class RSSSampler:
    """Peak resident memory of some processes, sampled every 50 ms."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_mb(pid))
            await asyncio.sleep(0.05)

    def __enter__(self) -> RSSSampler:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_mb(pid))
        if self._task is not None:
            self._task.cancel()


def core_busy(core: int) -> float:
    """Seconds core ``core`` has spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / TICK  # minus idle and iowait
    return 0.0


class Noise:
    """How much of each core went to processes other than ours during a block:
    the figures are only as good as this is small."""

    def __init__(self, cores: list[int], pids: list[int]) -> None:
        self.cores, self.pids = cores, pids
        self.share: dict[int, float] = {}

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def __enter__(self) -> Noise:
        self._t = time.monotonic()
        self._busy = {c: core_busy(c) for c in self.cores}
        self._ours0 = self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._t, 1e-9)
        ours = self._ours() - self._ours0
        busy = sum(core_busy(c) - self._busy[c] for c in self.cores)
        # Our processes are pinned, so whatever else kept these cores busy is foreign.
        self.foreign = max(0.0, busy - ours) / wall  # in cores
