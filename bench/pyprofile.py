"""Which Python functions run per request and per chunk: the passthrough and
sluiceway each serve the same requests with cProfile on their event loop's
thread, and the Python function calls per request (exact, unlike time) and
the costliest functions are printed side by side. The C-level view is
``bench.callgrind``; this names the Python code behind its
``_PyEval_EvalFrameDefault``.

    python -m bench.pyprofile                  # under a minute
    python -m bench.pyprofile --top 40 --sort ncalls
    python -m bench.pyprofile --sides sluiceway,session
    python -m bench.pyprofile --gateway-cmd /tmp/old.sh   # its PYTHONPATH must keep ours: P=…${PYTHONPATH:+:$PYTHONPATH}

The processes import ``bench/pyprofile_site/sitecustomize.py`` (put on their
PYTHONPATH): SIGUSR1 starts cProfile, SIGUSR2 writes its stats. Phases:
``seq`` (sequential 1 stream x 50 chunks) and ``streams`` (a few concurrent
streams of many chunks, flat out). cProfile slows the Python code it
watches about twofold, so its times are for ranking; the call counts are
the figure (an async function counts once per resumption). Other threads
(SQLite's) are not profiled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson

from . import load
from .fake_upstream import run_fast
from .stack import Stack, free_port, raise_nofile, two_cores, wait_http

HERE = Path(__file__).resolve().parent
SITE = HERE / "pyprofile_site"
SIDES = ("passthrough", "sluiceway", "session")


def where(key: tuple[str, int, str]) -> str:
    """pstats' (file, line, function) → ``sluiceway/server/streaming.py:244(_pump)``."""
    file, line, fn = key
    if file == "~":
        return fn  # a builtin: {method 'write' of …}
    for marker in ("site-packages/", "/lib/python3", str(HERE.parent) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{line}({fn})"


async def traffic(s, url: str, wire: load.Wire, streams: int, n: int, repeat: int = 1) -> tuple[int, int]:
    ok = errors = 0
    for _ in range(repeat):
        rs = await asyncio.gather(*(load.stream(s, url, f"up/bench-n{n}-s16-i0", min_frames=n, wire=wire)
                                    for _ in range(streams)))
        ok += sum(r.ok for r in rs)
        errors += sum(not r.ok for r in rs)
    return ok, errors


def measure(stack: Stack, tmp: Path, side: str, args: argparse.Namespace) -> dict:
    port = free_port()
    prof = tmp / f"{side}.prof"
    stack.env["SLUICEWAY_PYPROFILE"] = str(prof)
    proc = stack.start_passthrough(port) if side == "passthrough" else stack.start_gateway(side, port)
    base = f"http://127.0.0.1:{port}"
    wire = load.SESSION if side == "session" else load.CHAT
    url = base + wire.path
    res: dict = {}
    try:
        wait_http(base + "/v1/models", proc)
        phases = [("seq", 1, args.chunks, args.requests), ("streams", args.streams, args.stream_chunks, 1)]

        async def drive() -> None:
            async with load.session() as s:
                await traffic(s, url, wire, 1, args.chunks, args.warmup)
                await traffic(s, url, wire, args.streams, args.chunks)
                for i, (name, streams, n, repeat) in enumerate(phases, 1):
                    os.kill(proc.pid, signal.SIGUSR1)
                    await asyncio.sleep(0.2)
                    ok, errors = await traffic(s, url, wire, streams, n, repeat)
                    await asyncio.sleep(0.5)  # what follows the last byte (saves, logs) too
                    os.kill(proc.pid, signal.SIGUSR2)
                    out = Path(f"{prof}.{i}")
                    for _ in range(100):
                        if await asyncio.to_thread(out.exists):
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise SystemExit(f"{side}: no profile written; does --gateway-cmd keep PYTHONPATH "
                                         f"(P=…${{PYTHONPATH:+:$PYTHONPATH}})?")
                    res[name] = {"requests": ok, "errors": errors, "chunks": ok * n, "stats": str(out)}

        run_fast(drive())
    finally:
        stack.stop(proc)
    return res


def summary(path: str, per: int, unit: str, top: int, sort: str) -> tuple[int, list[str]]:
    st = pstats.Stats(path)
    rows = []
    total_calls = 0
    for key, (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        total_calls += nc
        rows.append((key, nc, tt, ct))
    index = {"ncalls": 1, "tottime": 2, "cumtime": 3}[sort]
    rows.sort(key=lambda r: -r[index])
    lines = [f"{'calls':>9} {'own us':>9} {'cum us':>9}  function (calls and microseconds per {unit})"]
    for key, nc, tt, ct in rows[:top]:
        lines.append(f"{nc / per:>9.2f} {tt / per * 1e6:>9.1f} {ct / per * 1e6:>9.1f}  {where(key)}")
    return total_calls, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Python function calls per request: the passthrough and sluiceway "
                                             "under cProfile")
    ap.add_argument("--sides", default="passthrough,sluiceway", help=f"from {','.join(SIDES)}")
    ap.add_argument("--requests", type=int, default=200, help="sequential requests (seq phase)")
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--streams", type=int, default=4, help="concurrent streams (streams phase)")
    ap.add_argument("--stream-chunks", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--top", type=int, default=25, help="functions listed per side and phase")
    ap.add_argument("--sort", choices=("tottime", "ncalls", "cumtime"), default="tottime")
    ap.add_argument("--gateway-cmd", default="", metavar="CMD",
                    help="as for bench.run; a script must keep PYTHONPATH (P=…${PYTHONPATH:+:$PYTHONPATH})")
    ap.add_argument("--json", default=str(HERE / "results" / "pyprofile.json"))
    args = ap.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - set(SIDES):
        ap.error(f"--sides: pick from {','.join(SIDES)}")
    raise_nofile()
    client_core, gateway_core = two_cores()
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    tmp = Path(tempfile.mkdtemp(prefix="sluiceway-pyprofile-"))
    out_dir = HERE / "results" / "pyprofile"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    stack = Stack(tmp, client_core, gateway_core, shlex.split(args.gateway_cmd) or None, env={"PYTHONPATH": path})
    t0 = time.monotonic()
    results: dict = {"sides": {}}
    try:
        stack.start_upstream()
        for side in sides:
            print(f"… {side}", file=sys.stderr, flush=True)
            results["sides"][side] = measure(stack, tmp, side, args)
    finally:
        stack.stop()
    print(f"Python function calls under cProfile ({time.monotonic() - t0:.0f} s)")
    for phase, unit in (("seq", "requests"), ("streams", "chunks")):
        cells = []
        for side in sides:
            ph = results["sides"][side][phase]
            per = max(ph[unit], 1)
            total, lines = summary(ph["stats"], per, unit[:-1], args.top, args.sort)
            ph["calls_per_" + unit[:-1]] = total / per
            dest = out_dir / f"{side}.{phase}.prof"
            os.replace(ph["stats"], dest)
            ph["stats"] = str(dest)
            cells.append((side, total / per, lines))
        print(f"\n{phase}: Python and builtin function calls per {unit[:-1]}: "
              + ", ".join(f"{side} {n:,.1f}" for side, n, _ in cells))
        for side, _, lines in cells:
            print(f"\n  {side}, {phase}, top {args.top} by {args.sort}, per {unit[:-1]}:")
            print("\n".join("  " + ln for ln in lines))
    shutil.rmtree(tmp, ignore_errors=True)
    Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"\nstats: {out_dir} (python -m pstats <file>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
