"""The child side of a local-model worker (see ``providers/worker.py``).

Run as ``python -m sluiceway.providers.worker_process``. The parent sends
frames on stdin; the first names the in-process provider class and its
settings, the rest are ``("stream", id, request, deadlines)`` and
``("cancel", id)``. Answers go out on a private copy of stdout:
``("batch", id, events)``, ``("end", id)``, ``("error", id, SluicewayError)``.
Native code that prints to stdout cannot corrupt the frames, because fd 1 is
pointed at stderr before anything else runs. The child exits when its stdin
closes, which also happens when the parent is killed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any, BinaryIO

from ..core import SluicewayError, UpstreamError
from .worker import read_frame, write_frame

log = logging.getLogger("sluiceway.worker")


async def serve(out: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _, target, name, settings = await read_frame(reader)
    module, _, attr = target.partition(":")
    provider = getattr(importlib.import_module(module), attr)(name, settings)
    tasks: dict[int, asyncio.Task[None]] = {}

    def send(msg: Any) -> None:
        write_frame(out, msg)
        out.flush()  # a frame must reach the parent now, not when a buffer fills

    async def run(sid: int, req: Any, deadline: Any) -> None:
        try:
            async for batch in provider.stream(req, deadline=deadline):
                send(("batch", sid, batch))
            send(("end", sid))
        except asyncio.CancelledError:
            send(("end", sid))  # the parent cancelled it; generation has stopped
        except SluicewayError as e:
            send(("error", sid, e))
        except Exception as e:
            log.exception("generation failed")
            send(("error", sid, UpstreamError(f"{name}: generation failed: {type(e).__name__}: {e}")))
        finally:
            tasks.pop(sid, None)

    send(("ready", os.getpid()))
    while True:
        try:
            msg = await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break  # the parent closed stdin or died
        if msg[0] == "stream":
            tasks[msg[1]] = asyncio.create_task(run(msg[1], msg[2], msg[3]))
        elif msg[0] == "cancel" and (task := tasks.get(msg[1])) is not None:
            task.cancel()
    os._exit(0)  # do not wait for a generation thread


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # The parent owns this process's life: it ends it by closing stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=os.environ.get("SLUICEWAY_WORKER_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(out))


if __name__ == "__main__":
    main()
