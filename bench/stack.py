"""The processes a benchmark runs against, shared by ``bench.run`` and
``bench.callgrind``: the fake upstream, the byte passthrough and sluiceway
(``sluiceway serve``, one worker, embedded model off, SQLite store), each
on its own port and pinned to a core."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def two_cores() -> tuple[int | None, int | None]:
    """(client + upstream core, gateway core): the first two we may use."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else (None, None)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def gateway_base_cmd(gateway_cmd: Sequence[str] | None) -> list[str]:
    """What runs sluiceway: ``--gateway-cmd`` if given (it gets ``serve
    --config …`` appended), else this venv's ``sluiceway``."""
    if gateway_cmd:
        return list(gateway_cmd)
    exe = Path(sys.executable).with_name("sluiceway")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sluiceway.cli"]


def clean_env() -> dict[str, str]:
    """The environment for a gateway: no DATABASE_URL / REDIS_URL from the
    shell, so the store is the config's SQLite file and run logs stay in
    memory."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}


class Stack:
    """Starts and stops the benchmark's processes. ``wrap`` prefixes the
    command of the gateway and the passthrough (e.g. valgrind), ``env`` is
    added to their environment."""

    def __init__(self, tmp: Path, client_core: int | None, gateway_core: int | None,
                 gateway_cmd: Sequence[str] | None = None, wrap: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.client_core, self.gateway_core = client_core, gateway_core
        self.gateway_cmd = gateway_base_cmd(gateway_cmd)
        self.wrap = list(wrap)
        self.env = env or {}  # added to the environment of the gateway and the passthrough
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}
        self.up_port = free_port()
        self.up_url = f"http://127.0.0.1:{self.up_port}"
        self.up: subprocess.Popen | None = None

    def _spawn(self, name: str, cmd: list[str], core: int | None, cwd: Path, env: dict[str, str] | None = None
               ) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        p = subprocess.Popen(cmd, cwd=cwd, preexec_fn=pinned(core), env=env, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def start_upstream(self) -> subprocess.Popen:
        self.up = self._spawn("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(self.up_port)],
                              self.client_core, ROOT)
        wait_http(f"{self.up_url}/stats", self.up)
        return self.up

    def start_gateway(self, name: str, port: int) -> subprocess.Popen:
        """``sluiceway serve`` with the upstream as provider ``up`` and its own
        SQLite store (the session chat writes there)."""
        cfg = self.tmp / f"{name}.yaml"
        cfg.write_text(f"embedded: false\nstore:\n  url: sqlite+aiosqlite:///{self.tmp}/{name}.db\n")
        cmd = [*self.wrap, *self.gateway_cmd, "serve", "--config", str(cfg), "--port", str(port),
               "--provider", f"up=openai,base_url={self.up_url}/v1", "--log-level", "warning"]
        return self._spawn(name, cmd, self.gateway_core, self.tmp, {**clean_env(), **self.env})

    def start_passthrough(self, port: int) -> subprocess.Popen:
        cmd = [*self.wrap, sys.executable, "-m", "bench.passthrough", "--port", str(port), "--upstream", self.up_url]
        return self._spawn("passthrough", cmd, self.gateway_core, ROOT, {**os.environ, **self.env})

    def log_errors(self, name: str) -> list[str]:
        log = self.logs.get(name)
        text = log.read_text(errors="replace") if log is not None and log.exists() else ""
        return [ln for ln in text.splitlines() if "ERROR" in ln or "Traceback" in ln][:20]

    def stop(self, proc: subprocess.Popen | None = None, timeout: float = 10) -> None:
        for p in [proc] if proc is not None else reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
