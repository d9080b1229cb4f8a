"""``sluiceway chat``: a streaming chat in the terminal, in-process (no server).

Interactive: ``you>`` prompts; Ctrl-C during an answer stops that answer (the
partial answer stays in the history) and returns to the prompt; Ctrl-C or
Ctrl-D at the prompt leaves at once. One-shot: ``sluiceway chat "question"``,
or a pipe (``echo question | sluiceway chat``; with both, the piped text follows
the prompt), prints the answer and exits.

stdout carries only the answer; the banner, timings and errors go to stderr on
their own line, and logs go to ``--log-file`` or nowhere, so that neither ends
up in the chat text or in a redirected answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from .engine.config import Config

DIM, RED, RESET = "\x1b[2m", "\x1b[31m", "\x1b[0m"


@dataclass
class Screen:
    """Where the answer goes, and whether the cursor sits mid-line (an error
    or a notice must then start on a new line)."""

    out: TextIO
    err: TextIO
    color: bool
    mid_line: bool = False
    dimmed: bool = False

    def write(self, text: str, *, dim: bool = False) -> None:
        if not text:
            return
        if self.color and dim != self.dimmed:
            self.out.write(DIM if dim else RESET)
            self.dimmed = dim
        self.out.write(text)
        self.out.flush()
        self.mid_line = not text.endswith("\n")

    def end_line(self) -> None:
        if self.color and self.dimmed:
            self.out.write(RESET)
            self.dimmed = False
        if self.mid_line:
            self.out.write("\n")
            self.mid_line = False
        self.out.flush()

    def notice(self, text: str, *, error: bool = False) -> None:
        """A line on stderr, never glued to the answer: dim, or red for an error."""
        self.end_line()
        self.err.write((f"{RED if error else DIM}{text}{RESET}" if self.color else text) + "\n")
        self.err.flush()


class Stopped(Exception):
    """Ctrl-C during an answer."""


async def interruptible(coro) -> None:  # noqa: ANN001
    """Run ``coro``; Ctrl-C cancels it and raises ``Stopped``. Through the
    loop's signal handler (a wakeup fd), not KeyboardInterrupt: SIGINT may land
    on a library's thread, and a loop idle on a silent upstream would not see it."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    hit = False

    def on_sigint() -> None:
        nonlocal hit
        hit = True
        task.cancel()  # type: ignore[union-attr]

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        await coro
    except asyncio.CancelledError:
        if not hit:
            raise
        task.uncancel()  # type: ignore[union-attr]
        raise Stopped from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt at the prompt


class Prompt:
    """Reads lines from the terminal waking every 0.1 s, so Ctrl-C at the
    prompt raises KeyboardInterrupt at once even when the signal was delivered
    to another thread (a blocking input() would wait for Enter)."""

    def __init__(self, fd: int, out: TextIO) -> None:
        self.fd, self.out, self.pending = fd, out, b""

    def __call__(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        while b"\n" not in self.pending:
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:  # Ctrl-D
                if not self.pending:
                    raise EOFError
                break
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode("utf-8", "replace")


@dataclass
class Turn:
    text: list[str] = field(default_factory=list)
    error: str | None = None
    output_tokens: int = 0
    ttft: float | None = None


async def answer(gw, req, screen: Screen, turn: Turn) -> None:
    """Stream one answer onto the screen; reasoning dimmed. Cancelling this
    (Ctrl-C) closes the upstream stream and keeps what arrived in ``turn``."""
    t0 = time.perf_counter()
    opened = await gw.router.open(req)
    try:
        async for batch in opened.batches():
            for ev in batch:
                if ev.type in ("text-delta", "reasoning-delta") and turn.ttft is None:
                    turn.ttft = time.perf_counter() - t0
                if ev.type == "text-delta":
                    turn.text.append(ev.delta)
                    screen.write(ev.delta)
                elif ev.type == "reasoning-delta":
                    screen.write(ev.delta, dim=True)
                elif ev.type == "reasoning-end":
                    screen.write("\n", dim=True)
                elif ev.type == "finish" and ev.usage is not None:
                    turn.output_tokens = ev.usage.output
                elif ev.type == "error":
                    turn.error = ev.message
    finally:
        await opened.aclose()


def quiet_logs(log_file: str | None) -> None:
    """Chat mode: logs to a file when asked, otherwise nowhere."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if log_file:
        h = logging.FileHandler(log_file)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)
    else:
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.CRITICAL + 1)


def run(cfg: Config, *, model: str | None, system: str | None, max_tokens: int | None,
        prompt: str | None, log_file: str | None) -> int:
    from .core import ChatRequest, Message
    from .core.errors import SluicewayError
    from .engine.gateway import Gateway

    quiet_logs(log_file)
    stdin_tty = sys.stdin.isatty()
    piped = None if stdin_tty else sys.stdin.read()
    one_shot = prompt is not None or piped is not None
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    screen = Screen(sys.stdout, sys.stderr, color)

    with asyncio.Runner() as runner:
        gw = Gateway(cfg)
        model = model or gw.router.default_model or next(iter(gw.router.routes), "")
        history: list = [Message.of("system", system)] if system else []

        def ask(text: str) -> Turn:
            history.append(Message.of("user", text))
            turn = Turn()
            t0 = time.perf_counter()
            try:
                runner.run(interruptible(answer(gw, ChatRequest(model=model, messages=list(history),
                                                                max_tokens=max_tokens), screen, turn)))
            except (Stopped, KeyboardInterrupt):  # the answer was stopped; the session goes on
                screen.notice("[stopped]")
            except SluicewayError as e:
                turn.error = e.message
            except Exception as e:  # noqa: BLE001 - shown, and the session goes on
                turn.error = str(e) or type(e).__name__
            screen.end_line()
            if turn.error:
                screen.notice(f"error: {turn.error}", error=True)
            if turn.text:  # a stopped answer stays, as far as it went
                history.append(Message.of("assistant", "".join(turn.text)))
            else:
                history.pop()  # nothing answered: the question is not part of the chat
            if not one_shot:
                took = time.perf_counter() - t0
                rate = turn.output_tokens / max(took - (turn.ttft or 0), 1e-6)
                screen.notice(f"  [ttft {1000 * (turn.ttft or took):.0f} ms · {turn.output_tokens} tokens · "
                              f"{rate:.1f} tok/s]")
            return turn

        try:
            if one_shot:
                text = "\n\n".join(p for p in (prompt, piped) if p and p.strip())
                if not text:
                    screen.notice("sluiceway chat: nothing to ask (empty prompt)")
                    return 2
                return 1 if ask(text).error else 0
            read_line = Prompt(sys.stdin.fileno(), screen.err)
            screen.notice(f"chatting with {model or '(no model)'} — Ctrl-C stops an answer; "
                          "Ctrl-D or Ctrl-C at the prompt leaves")
            while True:
                try:
                    line = read_line("you> ")
                except (EOFError, KeyboardInterrupt):  # leave at once, no second confirmation
                    screen.err.write("\n")
                    return 0
                if line.strip():
                    ask(line)
        finally:
            runner.run(gw.aclose())
