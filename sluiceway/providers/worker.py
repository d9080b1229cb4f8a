"""Local models run in a supervised child process, never in the gateway's own.

Native inference code can die in ways Python cannot catch (SIGILL from an
instruction the CPU lacks, SIGSEGV, the OOM killer). ``WorkerProvider`` wraps
an in-process local provider (llama.cpp, transformers) and runs it in a child
(``providers/worker_process.py``), so such a death ends only the streams that
child was serving: each gets an ``UpstreamUnavailable`` error, every other
stream and provider goes on, and the worker is restarted with backoff. After
``MAX_CRASHES`` crashes within ``CRASH_WINDOW`` seconds the provider is
marked unhealthy with the reason (``health()``, ``/healthz``, the log, and
the error clients get) and not restarted until the window has passed.

Parent and child speak length-prefixed pickle frames over pipes. Both sides
are this same package, so requests, event batches and typed errors cross as
they are. Cancelling a stream sends ``cancel``; the child stops generation
within a token, as the in-process provider does. Requests queue FIFO on the
child's single generation turn.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from pydantic import BaseModel

from ..core import ChatRequest, Deadlines, Event, UpstreamUnavailable
from .base import ModelInfo, Provider

log = logging.getLogger("sluiceway.worker")

MAX_CRASHES = 3
CRASH_WINDOW = 60.0
_HEADER = struct.Struct(">I")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def write_frame(out: BinaryIO, msg: Any) -> None:
    data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def describe_exit(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with status {rc}"


class WorkerProvider:
    """A local provider in a supervised child process; same contract as the
    provider it wraps (``kind``, ``Settings``, ``stream``, ``list_models``)."""

    Settings: ClassVar[type[BaseModel]]

    def __init__(self, cls: type[Provider], name: str, settings: BaseModel) -> None:
        self.kind = cls.kind
        self.Settings = cls.Settings  # type: ignore[misc]
        self.name = name
        self.settings = settings
        self._target = f"{cls.__module__}:{cls.__qualname__}"
        # The in-process object answers cheap questions (model ids); it never loads the model here.
        self.local: Any = cls(name, settings)  # type: ignore[call-arg]
        self._proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[int] | None = None
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._ids = 0
        self._start_lock = asyncio.Lock()
        self._crashes: collections.deque[float] = collections.deque()
        self._retry_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.restarts = 0
        self.reason: str | None = None  # why the last worker died

    # ------------------------------------------------------------- lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _recent_crashes(self) -> int:
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > CRASH_WINDOW:
            self._crashes.popleft()
        return len(self._crashes)

    def health(self) -> dict[str, Any]:
        crashes = self._recent_crashes()
        if crashes >= MAX_CRASHES:
            status = "unhealthy"
        elif self.pid is not None:
            status = "ok"
        else:
            status = "restarting" if crashes else "idle"  # idle: starts on first use
        out: dict[str, Any] = {"status": status, "kind": self.kind, "pid": self.pid, "restarts": self.restarts}
        if self.reason:
            out["last_crash"] = self.reason
        return out

    async def _ensure(self) -> None:
        if self.pid is not None and self._ready is not None and self._ready.done():
            return
        async with self._start_lock:
            if self.pid is not None and self._ready is not None:
                await self._ready
                return
            if self._recent_crashes() >= MAX_CRASHES:
                raise UpstreamUnavailable(
                    f"{self.name}: local model worker is unhealthy: it crashed {len(self._crashes)} times in "
                    f"{CRASH_WINDOW:.0f} s (last: {self.reason}); not restarting until that has passed",
                    provider=self.name)
            if (wait := self._retry_at - time.monotonic()) > 0:
                await asyncio.sleep(wait)  # restart backoff after a crash
            await self._spawn()

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                                          os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sluiceway.providers.worker_process",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, start_new_session=True, limit=2**26)
        self._proc = proc
        self._ready = asyncio.get_running_loop().create_future()
        assert proc.stdin is not None
        write_frame(proc.stdin, ("init", self._target, self.name, self.settings))
        self._spawned(self._read(proc))
        self._spawned(self._log_stderr(proc))
        try:
            async with asyncio.timeout(60):
                pid = await asyncio.shield(self._ready)
        except TimeoutError:
            proc.kill()
            raise UpstreamUnavailable(f"{self.name}: local model worker did not start", provider=self.name) from None
        log.info("%s: local model worker started (pid %d)", self.name, pid)

    def _spawned(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                msg = await read_frame(proc.stdout)
                if msg[0] == "ready":
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(msg[1])
                elif (queue := self._streams.get(msg[1])) is not None:
                    queue.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("%s: unreadable frame from the local model worker", self.name)
            proc.kill()
        rc = await proc.wait()
        if self._proc is proc:
            self._proc = None
        if self._closing:
            return
        self._crashed(describe_exit(rc))

    def _crashed(self, reason: str) -> None:
        self.reason = reason
        self._crashes.append(time.monotonic())
        crashes = self._recent_crashes()
        self.restarts += 1
        err = UpstreamUnavailable(f"{self.name}: the local model worker died ({reason})", provider=self.name)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(err)
            self._ready.exception()  # retrieved: a spawn waiting on it re-raises its own copy
        for queue in self._streams.values():
            queue.put_nowait(("error", 0, err))
        if crashes >= MAX_CRASHES:
            log.error("%s: local model worker crashed %d times in %.0f s (last: %s); marked unhealthy",
                      self.name, crashes, CRASH_WINDOW, reason)
            return
        backoff = min(30.0, 0.5 * 2 ** (crashes - 1))
        self._retry_at = time.monotonic() + backoff
        log.error("%s: local model worker %s; restarting in %.1f s", self.name, reason, backoff)
        self._spawned(self._restart())

    async def _restart(self) -> None:
        try:
            await self._ensure()
        except Exception as e:  # the next request will report it
            log.warning("%s: restart failed: %s", self.name, e)

    async def _log_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            if text:
                log.info("%s worker: %s", self.name, text)

    # ------------------------------------------------------------- contract

    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        await self._ensure()
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise UpstreamUnavailable(f"{self.name}: the local model worker died ({self.reason})", provider=self.name)
        self._ids += 1
        sid = self._ids
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[sid] = queue
        ended = False
        try:
            write_frame(proc.stdin, ("stream", sid, dataclasses.replace(req, wire=None), deadline))
            while True:
                msg = await queue.get()
                if msg[0] == "batch":
                    yield msg[2]
                else:
                    ended = True
                    if msg[0] == "error":
                        raise msg[2]
                    return
        finally:
            del self._streams[sid]
            if not ended and proc.returncode is None and proc.stdin is not None:
                try:
                    write_frame(proc.stdin, ("cancel", sid))  # stops generation within a token
                except (ConnectionError, RuntimeError):
                    pass

    @property
    def model_id(self) -> str:
        return self.local.model_id

    async def list_models(self) -> list[ModelInfo]:
        return await self.local.list_models()

    async def aclose(self) -> None:
        self._closing = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()  # the child exits when its stdin closes
            try:
                async with asyncio.timeout(3):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in list(self._tasks):
            task.cancel()
        await self.local.aclose()
