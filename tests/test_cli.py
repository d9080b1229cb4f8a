"""The command line as people use it: ``--version``, ``python -m sluiceway``,
help on every option, and ``sluiceway chat`` one-shot, from a pipe and in a
pseudo-terminal (Ctrl-C mid-answer stops that answer, Ctrl-C or Ctrl-D at the
prompt leaves, reasoning dimmed, errors on their own line, no log lines),
against the scripted upstream."""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluiceway import __version__, cli

from .upstream import DROP, HANG, FakeUpstream, chat_chunk, chat_text_stream, sse, usage_wire

ROOT = Path(__file__).resolve().parent.parent
SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")


@pytest.fixture(scope="module")
def up():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def workdir(tmp_path):
    # no embedded model, a throwaway store, no retries (an error is shown at once)
    (tmp_path / "sluiceway.yaml").write_text(
        f"embedded: false\nresilience:\n  retries: 0\nstore:\n  url: sqlite+aiosqlite:///{tmp_path}/s.db\n")
    return tmp_path


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_") and k != "NO_COLOR"}
    e["PYTHONPATH"] = str(ROOT)
    e["PYTHONFAULTHANDLER"] = "1"
    return e


def chat_args(up: FakeUpstream, model: str) -> list[str]:
    return [SLUICEWAY, "chat", "--provider", f"up=openai,base_url={up.url}/v1,api_key=k", "--model", f"up/{model}"]


# ---------------------------------------------------------------- arguments

def test_version_and_python_dash_m(workdir):
    for cmd in ([SLUICEWAY, "--version"], [sys.executable, "-m", "sluiceway", "--version"]):
        out = subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"sluiceway {__version__}"


def test_every_option_has_help(monkeypatch):
    class Built(Exception):
        pass

    def capture(self, *a, **k):
        raise Built(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(Built) as got:
        cli.main([])
    missing, seen = [], 0
    stack = [("sluiceway", got.value.args[0])]
    while stack:
        name, parser = stack.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend((f"{name} {n}", p) for n, p in action.choices.items())
            elif not isinstance(action, argparse._HelpAction):
                seen += 1
                if not action.help:
                    missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert seen > 20 and missing == []


# ---------------------------------------------------------------- one-shot

def test_one_shot_prints_only_the_answer(up, workdir):
    up.add("cli-once", chat_text_stream(["Hello", ", world"], usage=usage_wire(3, 2)))
    r = subprocess.run([*chat_args(up, "cli-once"), "Say hello"], cwd=workdir, env=env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello, world\n", "")
    assert up.last("cli-once").body["messages"][-1] == {"role": "user", "content": "Say hello"}


def test_one_shot_from_a_pipe(up, workdir):
    up.add("cli-pipe", chat_text_stream(["piped ok"]))
    r = subprocess.run([*chat_args(up, "cli-pipe"), "Summarise:"], cwd=workdir, env=env(),
                       input="line one\nline two\n", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "piped ok\n", "")
    assert up.last("cli-pipe").body["messages"][-1]["content"] == "Summarise:\n\nline one\nline two\n"
    r = subprocess.run(chat_args(up, "cli-pipe"), cwd=workdir, env=env(), input="just the pipe",
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "piped ok\n")
    assert up.last("cli-pipe").body["messages"][-1]["content"] == "just the pipe"


def test_one_shot_error_goes_to_stderr_without_log_lines(up, workdir):
    up.add("cli-fail", [b'{"error": {"message": "upstream exploded", "type": "server_error"}}'], status=500,
           headers={"content-type": "application/json"})
    r = subprocess.run([*chat_args(up, "cli-fail"), "hi"], cwd=workdir, env=env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "WARNING" not in r.stderr, r.stderr


# ---------------------------------------------------------------- terminal

class Terminal:
    """``sluiceway chat`` on a pseudo-terminal: its controlling tty, so the
    line discipline turns Ctrl-C (``\\x03``) into SIGINT as a real terminal does."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.chdir(cwd)
            os.execve(argv[0], argv, env())
        self.pid, self.fd, self.seen = pid, fd, ""

    def expect(self, text: str, after: int = 0, limit: float = 60.0) -> int:
        """Read until ``text`` appears past offset ``after``; returns where it ends.
        ``limit`` only keeps a broken build from hanging the suite."""
        deadline = time.monotonic() + limit
        while (i := self.seen.find(text, after)) < 0:
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.seen[after:]!r}"
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"terminal closed before {text!r}: {self.seen[after:]!r}"
                self.seen += chunk.decode("utf-8", "replace")
        return i + len(text)

    def send(self, data: str) -> None:
        os.write(self.fd, data.encode())

    def exit_status(self, limit: float = 30.0) -> int:
        deadline = time.monotonic() + limit
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: where it hangs goes to the terminal
                time.sleep(1)
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"chat did not exit: {self.seen[-300:]!r}")
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode("utf-8", "replace")
                except OSError:
                    pass


def test_terminal_ctrl_c_stops_the_answer_then_leaves_at_the_prompt(up, workdir):
    up.add("cli-tty", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "partial"})),
                       HANG])
    term = Terminal(chat_args(up, "cli-tty"), workdir)
    at = term.expect("you> ")
    term.send("tell me a long story\r")
    at = term.expect("partial", at)
    term.send("\x03")  # Ctrl-C mid-answer: that answer stops, the chat goes on
    at = term.expect("[stopped]", at)
    at = term.expect("you> ", at)
    assert up.last("cli-tty").wait_closed(10) and up.last("cli-tty").client_closed  # the upstream was let go

    # Next turn: reasoning dimmed before the answer; the stopped answer stayed in the history.
    up.add("cli-tty", [sse(chat_chunk({"role": "assistant", "content": ""})),
                       sse(chat_chunk({"reasoning_content": "thinking hard"})),
                       *chat_text_stream(["the answer"])[1:]])
    term.send("and then?\r")
    end = term.expect("the answer", at)
    turn = term.seen[at:end]
    assert "\x1b[2mthinking hard" in turn and turn.index("thinking hard") < turn.index("the answer")
    msgs = up.last("cli-tty").body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"] and msgs[1]["content"] == "partial"
    at = term.expect("you> ", end)
    term.send("\x03")  # Ctrl-C at the prompt leaves at once, no Enter needed
    assert term.exit_status() == 0
    assert "Traceback" not in term.seen and "WARNING" not in term.seen


def test_terminal_ctrl_d_leaves_and_errors_start_their_own_line(up, workdir):
    up.add("cli-drop", [sse(chat_chunk({"role": "assistant", "content": ""})), sse(chat_chunk({"content": "half"})),
                        DROP])
    term = Terminal(chat_args(up, "cli-drop"), workdir)
    at = term.expect("you> ")
    term.send("go\r")
    at = term.expect("half", at)
    at = term.expect("error: ", at)
    plain = re.sub(r"\x1b\[\d+m", "", term.seen[:at])
    assert plain.endswith("half\r\nerror: ")  # the error never glued onto the answer
    term.expect("you> ", at)
    term.send("\x04")  # Ctrl-D
    assert term.exit_status() == 0
