"""SIGTERM: the real ``sluiceway serve`` process gives active runs
``runs.shutdown_grace`` seconds, then saves them as interrupted with the text
they had, closes their upstreams and exits cleanly."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import yaml

from .test_runs_crash import Proc
from .test_sessions_chat import messages, no_env_store_overrides, read_sse  # noqa: F401 (autouse fixture)
from .upstream import HANG, chat_chunk, free_port, sse


def hanging_server(upstream, tmp_path, prefix: str, words: tuple[str, str]):
    """A ``sluiceway serve`` process whose upstream says two words and hangs;
    runs get 0.5 s of grace at shutdown and no checkpoint can fire meanwhile."""
    model = f"{prefix}-{uuid.uuid4().hex[:8]}"
    upstream.add(model, [sse(chat_chunk({"role": "assistant", "content": ""})),
                         sse(chat_chunk({"content": words[0]})), sse(chat_chunk({"content": words[1]})), HANG])
    config = tmp_path / "sluiceway.yaml"
    config.write_text(yaml.safe_dump({
        "embedded": False,
        "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x"}},
        # no checkpoint can fire during the test: whatever is saved, shutdown saved
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/term.db", "checkpoint_interval": 60},
        "runs": {"shutdown_grace": 0.5},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return model, config, env, free_port()


def test_sigterm_saves_active_runs_as_interrupted(upstream, tmp_path):
    model, config, env, port = hanging_server(upstream, tmp_path, "term", ("said before ", "SIGTERM"))
    srv = Proc(config, port, env)
    try:
        with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "hi", "model": f"up/{model}"},
                          timeout=10) as resp:
            run, events = read_sse(resp, limit=3)
        assert messages(srv, run["session_id"])[1]["text"] == ""  # not checkpointed yet
        time.sleep(0.2)  # let "SIGTERM" arrive too
        t0 = time.monotonic()
        os.kill(srv.p.pid, signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the captured SIGTERM
        assert srv.p.wait(15) in (0, -signal.SIGTERM)
        assert b"Traceback" not in srv.p.stderr.read()
        assert time.monotonic() - t0 < 10
    finally:
        srv.kill()
    assert upstream.last(model).wait_closed(1.0)
    srv = Proc(config, port, env)
    try:
        stored = messages(srv, run["session_id"])
        assert [(m["role"], m["status"], m["text"]) for m in stored] == [
            ("user", "complete", "hi"), ("assistant", "interrupted", "said before SIGTERM")]
    finally:
        srv.kill()


def test_sigterm_with_a_client_still_attached_ends_its_stream_within_the_grace(upstream, tmp_path):
    """uvicorn drains open connections before the app's shutdown runs; a
    client watching a run must not hold that drain for its whole timeout."""
    model, config, env, port = hanging_server(upstream, tmp_path, "term-att", ("still ", "watching"))
    srv = Proc(config, port, env)
    try:
        with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "hi", "model": f"up/{model}"},
                          timeout=20) as resp:
            lines = resp.iter_lines()
            seen = ""
            for line in lines:  # until both words have arrived
                seen += line
                if "watching" in seen:
                    break
            t0 = time.monotonic()
            os.kill(srv.p.pid, signal.SIGTERM)
            rest = list(lines)  # the stream ends by itself: the run was interrupted
            ended_in = time.monotonic() - t0
        assert srv.p.wait(15) in (0, -signal.SIGTERM)
        assert time.monotonic() - t0 < 5, "shutdown sat out uvicorn's drain timeout"
        assert ended_in < 5
        assert any('"finish"' in ln or '"abort"' in ln or '"error"' in ln for ln in rest), rest[-3:]
    finally:
        srv.kill()
    srv = Proc(config, port, env)
    try:
        stored = messages(srv, resp.headers["x-session-id"])
        assert [(m["status"], m["text"]) for m in stored][1] == ("interrupted", "still watching")
    finally:
        srv.kill()
