"""``http-server`` components: a process sluiceway starts on first use, waits
for (its port, or its healthcheck path), and stops when the gateway closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from typing import Any

import aiohttp

log = logging.getLogger("sluiceway.workflows")


class ManagedServers:
    def __init__(self) -> None:
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, key: str, spec: dict[str, Any], base_dir: str | None = None) -> str:
        """Start the component's process unless it is running; its base URL.
        The command runs in ``working_dir``, else the compose file's folder."""
        host = spec.get("host") or "127.0.0.1"
        port = int(spec["port"])
        base = spec.get("base_url") or f"http://{host}:{port}"
        start = spec.get("start")
        if not start:
            return base  # a server someone else runs
        async with self.locks.setdefault(key, asyncio.Lock()):
            proc = self.procs.get(key)
            if proc is not None and proc.returncode is None:
                return base
            argv = shlex.split(start) if isinstance(start, str) else [str(a) for a in start]
            env = {**os.environ, **{str(k): str(v) for k, v in (spec.get("env") or {}).items()}}
            cwd = spec.get("working_dir") or base_dir
            proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, start_new_session=True,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            self.procs[key] = proc
            try:
                await self._wait_ready(proc, base, spec.get("healthcheck") or {})
            except BaseException:
                await self._stop(proc)
                self.procs.pop(key, None)
                raise
            log.info("http-server %s started (pid %s) at %s", key, proc.pid, base)
            return base

    async def _wait_ready(self, proc: asyncio.subprocess.Process, base: str, check: dict[str, Any]) -> None:
        from .components import ComponentError

        path = check.get("path")
        deadline = time.monotonic() + float(check.get("start_timeout", check.get("timeout", 60)))
        interval = float(check.get("interval", 0.1))
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    raise ComponentError(f"http-server exited with {proc.returncode} before it was ready", 502)
                try:
                    if path:
                        url = base.rstrip("/") + "/" + str(path).lstrip("/")
                        async with session.request(check.get("method", "GET"), url,
                                                   timeout=aiohttp.ClientTimeout(total=2)) as r:
                            if r.status < 500:
                                return
                    else:
                        host, port = base.split("://", 1)[-1].split("/")[0].rsplit(":", 1)
                        _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
                        w.close()
                        return
                except (OSError, aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(interval)
        raise ComponentError(f"http-server at {base} was not ready in time", 504)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def aclose(self) -> None:
        procs, self.procs = list(self.procs.values()), {}
        await asyncio.gather(*(self._stop(p) for p in procs), return_exceptions=True)
