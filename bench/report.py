"""The tables ``bench.run`` prints, and the targets (issue 18) they are
checked against."""

from __future__ import annotations

import statistics
from pathlib import Path

# issue 18: sluiceway against the byte passthrough measured in the same run
TTFT_P50_X = 1.2  # added TTFT p50 <= 1.2x the passthrough's (at 1 and at 50 streams)
TTFT_P99_X = 2.0  # added TTFT p99 <= 2x
CPU_X = 1.3  # CPU-s per 1000 chunks <= 1.3x (1 stream x 50 chunks, and 50 streams x 500 chunks)
CHUNKS_X = 0.9  # chunks/s at 50 streams >= 0.9x
SESSION_ADDED_MS = 1.5  # session chat's TTFT p50 over the stateless path, on SQLite
RSS_MB = 150.0  # 1000 slow streams: peak RSS of the gateway, and 0 errors
CANCEL_MS = 100.0  # issue 2: every abandoned stream closed upstream within 100 ms


def fmt(x: float | int | None, digits: int = 2, sign: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if x != x:
        return "nan"
    if abs(x) >= 1000:
        return f"{x:+,.0f}" if sign else f"{x:,.0f}"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or num != num or den != den or den <= 0:
        return None
    return num / den


def rfmt(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


class Table:
    def __init__(self, head: tuple[str, ...]) -> None:
        self.head = head
        self.rows: list[tuple[str, ...] | str] = []

    def section(self, title: str) -> None:
        self.rows.append(title)

    def add(self, *cells: str) -> None:
        self.rows.append(cells)

    def render(self) -> str:
        rows = [r for r in self.rows if isinstance(r, tuple)]
        widths = [max(len(x[i]) for x in [self.head, *rows]) for i in range(len(self.head))]

        def line(cells: tuple[str, ...]) -> str:
            return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        out = [line(self.head), "-+-".join("-" * w for w in widths)]
        for r in self.rows:
            out.append(f"-- {r}" if isinstance(r, str) else line(r))
        return "\n".join(out)


def report(r: dict) -> tuple[str, list[dict]]:
    """The main table (direct | passthrough | sluiceway | ratio | target),
    the session-chat table, notes, and the checks behind the exit status."""
    checks: list[dict] = []
    z = r["sizes"]

    def verdict(figure: str, value: str, target: str, ok: bool) -> str:
        checks.append({"figure": figure, "value": value, "target": target, "ok": bool(ok)})
        return "PASS" if ok else "FAIL"

    t = Table(("figure", "direct", "passthru", "sluiceway", "sw/passthru", "target", ""))

    def row(figure: str, d, p, g, digits: int = 2, target: str = "", ok: bool | None = None,
            sign: bool = False, rat: float | None | bool = True, check_name: str = "") -> None:
        rt = ratio(g, p) if rat is True else (rat if rat is not False else None)
        v = "" if ok is None else verdict(check_name or figure.strip(), f"{fmt(g, digits)} ({rfmt(rt)})", target, ok)
        t.add(figure, fmt(d, digits), fmt(p, digits, sign), fmt(g, digits, sign), rfmt(rt), target, v)

    def added_rows(res: dict, where: str, p50_key: str, p99_key: str) -> None:
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        row("TTFT p50 (ms)", d[p50_key], p[p50_key], g[p50_key], 3)
        row("TTFT p99 (ms)", d[p99_key], p[p99_key], g[p99_key], 3)
        for q, k in (("p50", TTFT_P50_X), ("p99", TTFT_P99_X)):
            sw, pt = g[f"added_{q}"], p[f"added_{q}"]
            rt = ratio(sw, pt)
            ok = rt <= k if rt is not None else sw <= pt  # a floor that adds nothing: no worse than it
            row(f"  added TTFT {q} over direct (ms)", None, pt, sw, 3, f"<= {k:g}x", ok, sign=True, rat=rt,
                check_name=f"added TTFT {q}, {where}")

    if "ttft" in r:
        res = r["ttft"]
        t.section(f"1 stream: sequential requests of {z['seq_chunks']} chunks, sides interleaved "
                  f"(median of {z['rounds']} rounds x {z['seq_requests']} requests)")
        added_rows(res, "1 stream", "p50", "p99")
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        rt = ratio(g["cpu_per_1k"], p["cpu_per_1k"])
        row("CPU-s per 1000 chunks (per-request cost) *", d["cpu_per_1k"], p["cpu_per_1k"], g["cpu_per_1k"], 4,
            f"<= {CPU_X:g}x", rt is not None and rt <= CPU_X, check_name=f"CPU per 1000 chunks, 1 stream x {z['seq_chunks']}")
        row("  CPU ms per request *", d["cpu_ms_per_request"], p["cpu_ms_per_request"], g["cpu_ms_per_request"], 3)
        row("  read/write syscalls per request ****", None, p["syscalls_per_request"], g["syscalls_per_request"], 1)
        row("  errors", res["direct"]["errors"], res["passthrough"]["errors"], res["sluiceway"]["errors"], 0,
            "0", res["sluiceway"]["errors"] == 0, rat=False, check_name="errors, 1 stream")
    if "throughput" in r:
        res = r["throughput"]
        t.section(f"{z['tput_streams']} streams x {z['tput_chunks']} chunks as fast as they go "
                  f"(median of {z['rounds']} rounds x {z['tput_seconds']:g} s per side)")
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        rt = ratio(g["chunks_per_s"], p["chunks_per_s"])
        row("relayed chunks/s", d["chunks_per_s"], p["chunks_per_s"], g["chunks_per_s"], 0, f">= {CHUNKS_X:g}x",
            rt is not None and rt >= CHUNKS_X, check_name=f"chunks/s, {z['tput_streams']} streams")
        rt = ratio(g["cpu_per_1k"], p["cpu_per_1k"])
        row("CPU-s per 1000 chunks *", d["cpu_per_1k"], p["cpu_per_1k"], g["cpu_per_1k"], 4, f"<= {CPU_X:g}x",
            rt is not None and rt <= CPU_X, check_name=f"CPU per 1000 chunks, {z['tput_streams']} streams x "
                                                       f"{z['tput_chunks']}")
        ceiling = [1000 / x if x and x == x else None for x in (p["cpu_per_1k"], g["cpu_per_1k"])]
        row("  chunks per CPU-second (free-core ceiling)", None, ceiling[0], ceiling[1], 0)
        row("  read/write syscalls per chunk ****", None, p["syscalls_per_chunk"], g["syscalls_per_chunk"], 3)
        added_rows(res, f"{z['tput_streams']} streams", "steady_ttft_ms_p50", "steady_ttft_ms_p99")
        row("  first wave's TTFT max (ms) ***", d["ttft_ms_max"], p["ttft_ms_max"], g["ttft_ms_max"], 1)
        row("  errors", d["errors"], p["errors"], g["errors"], 0, "0", g["errors"] == 0, rat=False,
            check_name=f"errors, {z['tput_streams']} streams")
    if "paced" in r:
        res = r["paced"]
        t.section(f"{z['paced_streams']} streams x {z['paced_chunks']} chunks, one every {z['paced_interval']} ms "
                  "(each chunk its own read and write)")
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        row("CPU-s per 1000 chunks *", d["cpu_per_1k"], p["cpu_per_1k"], g["cpu_per_1k"], 4)
        row("  read/write syscalls per chunk ****", None, p["syscalls_per_chunk"], g["syscalls_per_chunk"], 2)
        row("  errors", d["errors"], p["errors"], g["errors"], 0, "0", g["errors"] == 0, rat=False,
            check_name="errors, paced")
    if "slow" in r:
        res = r["slow"]
        n = z["slow_streams"]
        t.section(f"{n} slow streams: {z['slow_chunks']} chunks, one every {z['slow_interval']} ms")
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        row("errors", d["errors"], p["errors"], g["errors"], 0, "0", g["errors"] == 0, rat=False,
            check_name=f"{n} slow streams: errors")
        row("peak RSS (MB) **", d["peak_rss_mb"], p["peak_rss_mb"], g["peak_rss_mb"], 1, f"< {RSS_MB:g}",
            g["peak_rss_mb"] < RSS_MB, check_name=f"{n} slow streams: peak RSS")
        row("first token p50 (s)", d["first_token_s_p50"], p["first_token_s_p50"], g["first_token_s_p50"], 3)
        row("first token p99 (s)", d["first_token_s_p99"], p["first_token_s_p99"], g["first_token_s_p99"], 3)
        ideal = z["slow_chunks"] * z["slow_interval"] / 1000
        row(f"stream time p50 (s; ideal {ideal:g})", d["stream_seconds_p50"], p["stream_seconds_p50"],
            g["stream_seconds_p50"], 2)
        row("CPU-s per 1000 chunks (with admission) *", d["cpu_per_1k"], p["cpu_per_1k"], g["cpu_per_1k"], 4)
    if "abandoned" in r:
        res = r["abandoned"]
        m = z["abandoned"]
        t.section(f"cancel: {m} streams (a chunk per 20 ms) dropped by their clients together "
                  f"(median of {len(res['sluiceway']['rounds'])} rounds)")
        d, p, g = res["direct"], res["passthrough"], res["sluiceway"]
        row("upstream sees the close, p50 (ms)", d["p50_ms"], p["p50_ms"], g["p50_ms"], 2)
        row("upstream sees the close, max (ms)", d["max_ms"], p["max_ms"], g["max_ms"], 2, f"<= {CANCEL_MS:g}",
            g["max_ms"] <= CANCEL_MS and g["not_cancelled_after_1s"] == 0, check_name="cancel latency max")
        row("  worst round's max (ms)", d["worst_ms"], p["worst_ms"], g["worst_ms"], 2)
        row("still open upstream after 1 s", d["not_cancelled_after_1s"], p["not_cancelled_after_1s"],
            g["not_cancelled_after_1s"], 0, "0", g["not_cancelled_after_1s"] == 0, rat=False,
            check_name="abandoned streams still open after 1 s")
    left = sum(r[k]["leftover_upstream_streams"] for k in ("throughput", "paced", "slow", "abandoned") if k in r)
    t.section("leaks")
    row("upstream streams left running at the end", None, None, left, 0, "0", left == 0, rat=False,
        check_name="upstream streams left running")

    parts = [t.render()]
    session = session_table(r, verdict)
    if session:
        parts += ["", session]
    parts += ["", "*   CPU of the process in the middle (passthrough, sluiceway); the direct column is the load "
                  "client's own CPU, for scale.",
              "**  the direct column is the load client holding the same streams itself (its RSS includes the "
              "runner).",
              "*** under load, TTFT is over each worker's later streams (steady state); the first wave of all "
              "workers starting at once is shown by its max.",
              "**** /proc/<pid>/io syscr + syscw of the process in the middle: reads and writes (sockets, files), "
              "not epoll or timers."]
    foreign = r.get("foreign_cpu_cores", {})
    if foreign:
        parts.append("other processes' CPU on our two cores (in cores; the figures are good while this is "
                     "small): " + ", ".join(f"{k} {v:.2f}" for k, v in foreign.items()))
    return "\n".join(parts), checks


def session_table(r: dict, verdict) -> str:
    """The session chat (POST /chat/stream: user turn committed to SQLite,
    the answer a run) beside the stateless path (POST /v1/chat/completions),
    two gateway processes of the same build."""
    if not any(k in r and "session" in r[k] for k in ("ttft", "throughput", "paced")):
        return ""
    z = r["sizes"]
    t = Table(("session chat vs stateless", "stateless", "session", "difference", "sess/stateless", "target", ""))

    def row(figure: str, a, b, digits: int = 3, target: str = "", ok: bool | None = None, check_name: str = "") -> None:
        diff = None if a is None or b is None else b - a
        v = "" if ok is None else verdict(check_name or figure.strip(), fmt(diff, digits, True), target, ok)
        t.add(figure, fmt(a, digits), fmt(b, digits), fmt(diff, digits, True), rfmt(ratio(b, a)), target, v)

    if "ttft" in r and "session" in r["ttft"]:
        a, b = r["ttft"]["sluiceway"], r["ttft"]["session"]
        t.section(f"1 stream, sequential requests of {z['seq_chunks']} chunks")
        diff = paired_diff(a, b, "p50")
        t.add("TTFT p50 (ms)", fmt(a["p50"], 3), fmt(b["p50"], 3), fmt(diff, 3, True), rfmt(ratio(b["p50"], a["p50"])),
              f"<= +{SESSION_ADDED_MS:g} ms", verdict("session chat added TTFT p50 over stateless",
                                                       fmt(diff, 3, True) + " ms", f"<= {SESSION_ADDED_MS:g} ms",
                                                       diff <= SESSION_ADDED_MS))
        row("TTFT p99 (ms)", a["p99"], b["p99"])
        row("  added TTFT p50 over direct (ms)", a["added_p50"], b["added_p50"])
        row("CPU-s per 1000 chunks *", a["cpu_per_1k"], b["cpu_per_1k"], 4)
        row("  CPU ms per request *", a["cpu_ms_per_request"], b["cpu_ms_per_request"], 3)
        row("  read/write syscalls per request ****", a["syscalls_per_request"], b["syscalls_per_request"], 1)
        row("  errors", a["errors"], b["errors"], 0, "0", b["errors"] == 0, "errors, session chat 1 stream")
    if "throughput" in r and "session" in r["throughput"]:
        a, b = r["throughput"]["sluiceway"], r["throughput"]["session"]
        t.section(f"{z['tput_streams']} streams x {z['tput_chunks']} chunks as fast as they go")
        row("relayed chunks/s", a["chunks_per_s"], b["chunks_per_s"], 0)
        row("CPU-s per 1000 chunks *", a["cpu_per_1k"], b["cpu_per_1k"], 4)
        row("  read/write syscalls per chunk ****", a["syscalls_per_chunk"], b["syscalls_per_chunk"], 3)
        row("TTFT p50 (ms)", a["steady_ttft_ms_p50"], b["steady_ttft_ms_p50"], 2)
        row("TTFT p99 (ms)", a["steady_ttft_ms_p99"], b["steady_ttft_ms_p99"], 2)
        row("  errors", a["errors"], b["errors"], 0, "0", b["errors"] == 0, "errors, session chat 50 streams")
    if "paced" in r and "session" in r["paced"]:
        a, b = r["paced"]["sluiceway"], r["paced"]["session"]
        t.section(f"{z['paced_streams']} streams, one chunk every {z['paced_interval']} ms")
        row("CPU-s per 1000 chunks *", a["cpu_per_1k"], b["cpu_per_1k"], 4)
    return t.render()


def paired_diff(a: dict, b: dict, key: str) -> float:
    """The median over rounds of (session - stateless), rounds paired."""
    pairs = [rb[key] - ra[key] for ra, rb in zip(a["rounds"], b["rounds"], strict=True)]
    return statistics.median(pairs)


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
    out = [f"sluiceway profile under the throughput run ({total} samples of the event loop thread; "
           "the loop's own C code and syscalls show as Runner.run)", "  own time:"]
    out += [f"    {n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    out.append("  including callees:")
    out += [f"    {n / total:6.1%}  {f}" for f, n in sorted(incl.items(), key=lambda x: -x[1])[:top + 8]]
    return "\n".join(out)
