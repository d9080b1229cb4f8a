"""Streaming from a blocking, in-process generator (llama.cpp, transformers).

A local model's context is not thread-safe, so each provider owns one worker
thread and generations take turns through a FIFO lock (asyncio.Lock wakes
waiters in order). The worker hands items to the event loop with
``call_soon_threadsafe``: ``("text", str)``, ``("finish", raw_reason,
input_tokens, output_tokens)``, ``("error", SluicewayError)`` and finally
``None``. Everything that has arrived is drained into one batch. Closing the
stream calls ``cancel`` (the worker checks it after every token) and waits
for the thread, so the next turn gets a free context.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..core import Deadlines, Event, EventBuilder, FinishReason, SluicewayError, Timeout, Usage

Emit = Callable[[Any], None]
FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


async def threaded_stream(generate: Callable[[Emit], None], cancel: Callable[[], None], *, turn: asyncio.Lock,
                          pool: Executor, deadline: Deadlines, name: str, model_id: str) -> AsyncIterator[list[Event]]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    started = loop.time()

    def emit(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    b = EventBuilder()
    async with turn:
        job = loop.run_in_executor(pool, generate, emit)
        try:
            first = True
            while True:
                wait = deadline.first_token if first else deadline.idle
                if deadline.total is not None:
                    left = started + deadline.total - loop.time()
                    wait = left if wait is None else min(wait, left)
                try:
                    async with asyncio.timeout(wait):
                        item = await queue.get()
                except TimeoutError:
                    raise Timeout(f"{name}: generation timed out") from None
                out: list[Event] = []
                if first:
                    b.start(out, f"chatcmpl-{uuid.uuid4().hex}", model_id)
                    first = False
                ended = False
                while item is not None:  # drain what has arrived into one batch
                    kind = item[0]
                    if kind == "text":
                        b.text(out, item[1])
                    elif kind == "finish":
                        b.finish(out, FINISH.get(item[1], "other"), Usage(item[2], item[3]), raw_reason=item[1])
                    elif kind == "error":
                        err: SluicewayError = item[1]
                        raise err
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                else:
                    ended = True
                if out:
                    yield out
                if ended:
                    return
        finally:
            cancel()
            # shielded so a second cancel cannot leave the context in use
            await asyncio.shield(job)


class LocalWorker:
    """What a local-model provider owns: one worker thread, the FIFO turn
    lock, and the model, loaded once on that thread at first use."""

    def __init__(self, thread_name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self.turn = asyncio.Lock()  # one generation at a time, FIFO
        self._load_lock = asyncio.Lock()
        self.loaded: Any = None

    async def load(self, load: Callable[[], Any]) -> Any:
        if self.loaded is None:
            async with self._load_lock:
                if self.loaded is None:
                    self.loaded = await asyncio.get_running_loop().run_in_executor(self.pool, load)
        return self.loaded

    def stream(self, generate: Callable[[Emit], None], cancel: Callable[[], None], *, deadline: Deadlines,
               name: str, model_id: str) -> AsyncIterator[list[Event]]:
        return threaded_stream(generate, cancel, turn=self.turn, pool=self.pool, deadline=deadline, name=name,
                               model_id=model_id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.loaded = None
