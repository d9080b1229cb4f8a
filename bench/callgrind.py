"""Instruction counts, which a noisy machine cannot blur: the passthrough and
sluiceway each run under ``valgrind --tool=callgrind`` and serve the same
requests; instructions per request and per chunk, side by side, with the
ratio sluiceway / passthrough.

    python -m bench.callgrind                 # about 2 minutes
    python -m bench.callgrind --top 30        # also sluiceway's 30 costliest functions
    python -m bench.callgrind --sides sluiceway,session --requests 50
    python -m bench.callgrind --gateway-cmd "/tmp/old-sluiceway.sh"   # A/B against another build

(``perf stat -e instructions`` would be cheaper, but this VM has no
hardware counters: ``perf stat`` answers "<not supported>".)

Each side starts with callgrind's instrumentation off (``--instr-atstart=no``:
startup and imports run at valgrind's base speed and are not counted), gets
warm-up traffic, then ``callgrind_control -i on``; each measured phase is
``callgrind_control -z`` (zero), the traffic, ``callgrind_control -d``
(dump). The phases:

- ``seq``: sequential requests of 1 stream x 50 chunks (the per-request cost);
- ``streams``: a few concurrent streams of many chunks, as fast as they go
  (the per-chunk cost; one upstream read may carry several chunks);
- ``paced``: a few streams with one chunk every 20 ms (each chunk its own
  read and write, as real token streams come).

The dumps stay in ``bench/results/callgrind/`` for ``callgrind_annotate`` or
KCachegrind. CPython's own C functions are what callgrind sees
(``_PyEval_EvalFrameDefault`` is the interpreter running Python code); C
extensions show by name (uvloop, httptools, orjson, aiohttp's and yarl's
Cython, multidict), which is what the top list is for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import load
from .fake_upstream import run_fast
from .stack import Stack, free_port, raise_nofile, two_cores, wait_http

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "callgrind"
SIDES = ("passthrough", "sluiceway", "session")
TARGET_X = 1.3  # issue 18: CPU per request and per chunk within 1.3x of the passthrough


@dataclass
class Plan:
    requests: int  # seq: sequential requests of seq_chunks chunks
    seq_chunks: int
    streams: int  # streams: concurrent streams of stream_chunks, flat out
    stream_chunks: int
    paced_streams: int  # paced: concurrent streams of paced_chunks, one every paced_interval ms
    paced_chunks: int
    paced_interval: int
    warmup: int


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (a --gateway-cmd script may run
    Python as its child rather than exec it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def control(pid: int, *args: str, kick: str | None = None) -> str:
    """``callgrind_control`` on one process. It talks through vgdb, which
    reaches a process blocked in epoll_wait by ptrace; ``kick`` (a URL) is
    fetched meanwhile in case ptrace is not allowed here."""
    p = subprocess.Popen(["callgrind_control", *args, str(pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    start = time.monotonic()
    while p.poll() is None:
        waited = time.monotonic() - start
        if kick and waited > 1.0:
            try:
                load_kick(kick)
            except OSError:
                pass
        if waited > 120:
            p.kill()
            raise RuntimeError(f"callgrind_control {' '.join(args)} {pid} hung")
        time.sleep(0.2)
    out = p.stdout.read() if p.stdout else ""
    if p.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} {pid} failed: {out.strip()}")
    return out


def load_kick(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5):
        pass


def total_ir(path: Path) -> int:
    """The Ir total of one callgrind dump (its ``summary:`` / ``totals:`` line)."""
    total = None
    with path.open() as f:
        for line in f:
            if line.startswith("summary:") or (total is None and line.startswith("totals:")):
                total = int(line.split()[1])
    if total is None:
        raise RuntimeError(f"{path}: no summary line")
    return total


ANNOTATED = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)(?:\s+\[([^\]]*)\])?$")


def short_object(path: str | None) -> str:
    """``…/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so`` → ``uvloop/loop``;
    ``…/libpython3.11.so.1.0`` → ``libpython3.11``; none (the executable) → ``python``."""
    if not path:
        return "python"
    path = path.split("site-packages/", 1)[1] if "site-packages/" in path else path.rsplit("/", 1)[-1]
    return re.sub(r"(\.cpython-[^/]*|\.so[.\d]*)$", "", path)


def functions(path: Path) -> list[tuple[int, str, str]]:
    """(instructions, function, object) of every function in a dump,
    costliest first, by own instructions (callgrind_annotate). A function
    that callgrind_annotate splits by source file (code inlined from
    headers; those lines carry no object) is summed into one."""
    cmd = ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    ir_of: dict[str, int] = {}
    obj_of: dict[str, str] = {}
    file_of: dict[str, tuple[int, str]] = {}
    started = False
    for line in text.splitlines():
        if "file:function" in line:
            started = True
            continue
        m = ANNOTATED.match(line) if started else None
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        file, _, fn = m.group(2).rpartition(":")
        fn = re.sub(r"'\d+$", "", fn)  # _PyEval_EvalFrameDefault'2: a recursion depth
        ir_of[fn] = ir_of.get(fn, 0) + ir
        if m.group(3):
            obj_of.setdefault(fn, short_object(m.group(3)))
        if ir > file_of.get(fn, (0, ""))[0]:
            file_of[fn] = (ir, file.rsplit("/", 1)[-1])
    out = []
    for fn, ir in ir_of.items():
        file = file_of[fn][1]
        obj = obj_of.get(fn) or ("libpython" if file.endswith((".c", ".h")) else "?")
        out.append((ir, f"{file}:{fn}" if file and file != "???" else fn, obj))
    return sorted(out, reverse=True)


def by_object(fns: list[tuple[int, str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ir, _, obj in fns:
        out[obj] = out.get(obj, 0) + ir
    return out


class Run:
    def __init__(self, plan: Plan, sides: list[str], gateway_cmd: list[str] | None, keep: bool, out: Path) -> None:
        self.plan = plan
        self.sides = sides
        self.client_core, self.gateway_core = two_cores()
        self.tmp = Path(tempfile.mkdtemp(prefix="sluiceway-callgrind-"))
        self.out = out
        self.keep = keep
        self.wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                     "--dump-instr=no", "--dump-line=yes", "--compress-strings=yes",
                     "--callgrind-out-file=" + str(self.tmp / "cg.%p.out")]
        self.stack = Stack(self.tmp, self.client_core, self.gateway_core, gateway_cmd, wrap=self.wrap)
        self.results: dict = {"plan": plan.__dict__, "sides": {}, "gateway_cmd": self.stack.gateway_cmd}

    def model(self, n: int, interval: int = 0) -> str:
        return f"up/bench-n{n}-s16-i{interval}"

    async def traffic(self, s, url: str, wire: load.Wire, streams: int, n: int, interval: int = 0,
                      repeat: int = 1) -> tuple[int, int]:
        """``repeat`` rounds of ``streams`` concurrent streams; (ok, errors)."""
        ok = errors = 0
        for _ in range(repeat):
            rs = await asyncio.gather(*(load.stream(s, url, self.model(n, interval), min_frames=n, wire=wire)
                                        for _ in range(streams)))
            for r in rs:
                ok += r.ok
                errors += not r.ok
                if not r.ok:
                    print(f"  error: {r.error}", file=sys.stderr)
        return ok, errors

    def measure(self, side: str) -> dict:
        p = self.plan
        port = free_port()
        t0 = time.monotonic()
        proc = (self.stack.start_passthrough(port) if side == "passthrough"
                else self.stack.start_gateway(side, port))
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/v1/models", proc, timeout=300)
            pid = listener_pid(port) or proc.pid
            wire = load.SESSION if side == "session" else load.CHAT
            url = base + wire.path
            print(f"  {side}: up under valgrind in {time.monotonic() - t0:.0f} s (pid {pid}); warming up",
                  file=sys.stderr, flush=True)
            phases = [("seq", 1, p.seq_chunks, 0, p.requests), ("streams", p.streams, p.stream_chunks, 0, 1),
                      ("paced", p.paced_streams, p.paced_chunks, p.paced_interval, 1)]
            res: dict = {}

            async def drive() -> None:
                async with load.session() as s:
                    await self.traffic(s, url, wire, 1, p.seq_chunks, repeat=p.warmup)
                    await self.traffic(s, url, wire, p.streams, p.seq_chunks)
                    await self.traffic(s, url, wire, p.paced_streams, 20, p.paced_interval)
                    await asyncio.to_thread(control, pid, "-i", "on", kick=base + "/v1/models")
                    await self.traffic(s, url, wire, 1, p.seq_chunks, repeat=3)  # translate under instrumentation
                    for name, streams, n, interval, repeat in phases:
                        await asyncio.to_thread(control, pid, "-z", kick=base + "/v1/models")
                        before = set(self.tmp.glob(f"cg.{pid}.out*"))
                        t = time.monotonic()
                        ok, errors = await self.traffic(s, url, wire, streams, n, interval, repeat)
                        wall = time.monotonic() - t
                        await asyncio.sleep(1.0)  # work that follows the last byte (saves, logs) is counted too
                        await asyncio.to_thread(control, pid, "-d", name, kick=base + "/v1/models")
                        new = set()
                        for _ in range(100):
                            new = set(self.tmp.glob(f"cg.{pid}.out*")) - before
                            if new:
                                break
                            await asyncio.sleep(0.1)
                        if not new:
                            raise RuntimeError(f"no callgrind dump for {side} {name}")
                        dump = self.out / f"{side}.{name}.callgrind.out"
                        await asyncio.sleep(0.3)  # let the dump be written out
                        shutil.copyfile(max(new, key=lambda f: f.stat().st_mtime), dump)
                        ir = total_ir(dump)
                        res[name] = {"requests": ok, "errors": errors, "chunks": ok * n, "ir": ir,
                                     "ir_per_request": ir / max(ok, 1), "ir_per_chunk": ir / max(ok * n, 1),
                                     "wall_s": wall, "dump": str(dump)}
                        print(f"    {name}: {ok} streams x {n} chunks, {ir / 1e6:,.0f} M instructions, "
                              f"{wall:.0f} s", file=sys.stderr, flush=True)

            run_fast(drive())
            return res
        finally:
            self.stack.stop(proc, timeout=60)

    def run(self) -> None:
        raise_nofile()
        if self.client_core is not None:
            os.sched_setaffinity(0, {self.client_core})
        self.out.mkdir(parents=True, exist_ok=True)
        self.stack.start_upstream()
        try:
            for side in self.sides:
                print(f"… {side} under callgrind", file=sys.stderr, flush=True)
                self.results["sides"][side] = self.measure(side)
        finally:
            self.stack.stop()
            if self.keep:
                print(f"(raw files kept in {self.tmp})", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def render(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             .rstrip() for row in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def table(r: dict) -> tuple[str, bool]:
    """Per phase, each side's instructions per request and per chunk, with
    the ratio to the passthrough; the target (issue 18's 1.3x, set for CPU
    time) on the seq and streams rows."""
    sides = list(r["sides"])
    p = r["plan"]
    has = r["sides"]
    base = "passthrough" if "passthrough" in has else None
    others = [s for s in sides if s != base] if base else []
    rows: list[list[str]] = []
    ok_all = True

    def add(label: str, phase: str, key: str, target: bool = False, digits: int = 0) -> None:
        nonlocal ok_all
        vals = {s: has[s].get(phase, {}).get(key) for s in sides}
        cells = [label] + [f"{vals[s]:,.{digits}f}" if vals[s] is not None else "-" for s in sides]
        for s in others:
            cells.append(f"{vals[s] / vals[base]:.2f}x" if vals[s] is not None and vals[base] else "-")
        verdict = ""
        if target and base and "sluiceway" in sides and vals[base]:
            ok = (vals["sluiceway"] or 0) / vals[base] <= TARGET_X
            ok_all = ok_all and ok
            verdict = "PASS" if ok else "FAIL"
        rows.append([*cells, f"<= {TARGET_X:g}x" if target and verdict else "", verdict])

    add(f"seq, 1 stream x {p['seq_chunks']}: Ir per request", "seq", "ir_per_request", True)
    add("  Ir per chunk", "seq", "ir_per_chunk")
    add(f"streams, {p['streams']} x {p['stream_chunks']} flat out: Ir per chunk", "streams", "ir_per_chunk", True)
    add("  Ir per stream", "streams", "ir_per_request")
    add(f"paced, {p['paced_streams']} x {p['paced_chunks']} {p['paced_interval']} ms apart: Ir per chunk", "paced",
        "ir_per_chunk")
    head = ["instructions (callgrind Ir)", *sides, *[f"{s}/{base}" for s in others], "target", ""]
    text = render(head, rows)
    errors = sum(ph.get("errors", 0) for s in has.values() for ph in s.values())
    if errors:
        text += f"\n({errors} requests failed; their instructions are in the totals)"
    return text, ok_all


def objects_table(r: dict, phase: str, unit: str, top: int = 12) -> str:
    """Where the instructions go, by shared object (libpython, orjson,
    uvloop…), per request or per chunk, side by side."""
    sides = [s for s in r["sides"] if phase in r["sides"][s]]
    per = {s: max(r["sides"][s][phase]["requests" if unit == "request" else "chunks"], 1) for s in sides}
    objs = {s: by_object(functions(Path(r["sides"][s][phase]["dump"]))) for s in sides}
    names = sorted({o for v in objs.values() for o in v}, key=lambda o: -max(objs[s].get(o, 0) / per[s] for s in sides))
    rows = []
    for o in names[:top]:
        rows.append([o, *[f"{objs[s].get(o, 0) / per[s]:,.0f}" for s in sides]])
    rest = names[top:]
    if rest:
        rows.append([f"({len(rest)} more)", *[f"{sum(objs[s].get(o, 0) for o in rest) / per[s]:,.0f}"
                                                for s in sides]])
    return render([f"Ir per {unit} by object ({phase})", *sides], rows)


def top_table(dump: Path, per: int, top: int) -> str:
    fns = functions(dump)
    total = sum(ir for ir, _, _ in fns) or 1
    return "\n".join(f"{ir / per:>12,.0f} {ir / total:6.1%}  {where}  [{obj}]" for ir, where, obj in fns[:top])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="instruction counts of the passthrough and sluiceway under callgrind")
    ap.add_argument("--sides", default="passthrough,sluiceway",
                    help=f"which to measure, in order: {','.join(SIDES)} (session: POST /chat/stream)")
    ap.add_argument("--requests", type=int, default=100, help="sequential 1-stream requests (seq)")
    ap.add_argument("--chunks", type=int, default=50, help="chunks per sequential request")
    ap.add_argument("--streams", type=int, default=4, help="concurrent streams, flat out (streams)")
    ap.add_argument("--stream-chunks", type=int, default=2000)
    ap.add_argument("--paced-streams", type=int, default=2, help="concurrent paced streams (paced)")
    ap.add_argument("--paced-chunks", type=int, default=200)
    ap.add_argument("--paced-interval", type=int, default=20, help="ms between chunks")
    ap.add_argument("--warmup", type=int, default=20, help="requests before instrumentation is turned on")
    ap.add_argument("--top", type=int, default=0, metavar="N",
                    help="print sluiceway's N costliest functions by own instructions, per request (seq "
                         "phase) and per chunk (streams phase)")
    ap.add_argument("--top-sides", default="sluiceway", metavar="SIDES", help="whose functions --top lists")
    ap.add_argument("--gateway-cmd", default="", metavar="CMD",
                    help="run sluiceway with this command (it gets `serve --config …`), as bench.run does; "
                         "valgrind follows exec, so a script that sets PYTHONPATH to another worktree works")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory with every raw dump")
    ap.add_argument("--out", default=str(OUT), metavar="DIR",
                    help="where the dumps go (<side>.<phase>.callgrind.out); another one keeps an A/B's apart")
    ap.add_argument("--json", default="", help="the results (default: callgrind.json beside --out)")
    args = ap.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        ap.error("needs valgrind (apt-get install valgrind)")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - set(SIDES):
        ap.error(f"--sides: pick from {','.join(SIDES)}")
    plan = Plan(args.requests, args.chunks, args.streams, args.stream_chunks, args.paced_streams, args.paced_chunks,
                args.paced_interval, args.warmup)
    gateway_cmd = shlex.split(args.gateway_cmd) or [sys.executable, "-m", "sluiceway"]
    out = Path(args.out)
    run = Run(plan, sides, gateway_cmd, args.keep, out)
    t0 = time.monotonic()
    run.run()
    r = run.results
    r["wall_seconds"] = time.monotonic() - t0
    r["command"] = shlex.join(["python", "-m", "bench.callgrind", *(argv if argv is not None else sys.argv[1:])])
    text, ok = table(r)
    print(f"sluiceway instruction counts (callgrind; {r['wall_seconds']:.0f} s)")
    print(text)
    for phase, unit in (("seq", "request"), ("streams", "chunk")):
        print("\n" + objects_table(r, phase, unit))
    for side in [s for s in args.top_sides.split(",") if s in r["sides"]] if args.top else ():
        res = r["sides"][side]
        for phase, key, unit in (("seq", "requests", "request"), ("streams", "chunks", "chunk")):
            print(f"\n{side}'s top {args.top} functions by own instructions, per {unit} ({phase} phase):")
            print(top_table(Path(res[phase]["dump"]), max(res[phase][key], 1), args.top))
    print(f"\ndumps: {out} (callgrind_annotate <file>, or kcachegrind)")
    Path(args.json or out.parent / f"{out.name}.json").write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
