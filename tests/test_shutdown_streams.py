"""SIGTERM ends every open direct stream (Chat Completions, Messages, plain SSE, unstored Responses) with
its protocol's own error frame within runs.shutdown_grace, then the process exits cleanly."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from .test_runs_crash import Proc
from .test_runs_shutdown import hanging_server
from .test_sessions_chat import no_env_store_overrides  # noqa: F401 (autouse fixture)

ASK = [{"role": "user", "content": "hi"}]


def bodies(model: str) -> dict[str, tuple[str, dict]]:
    return {
        "chat": ("/v1/chat/completions", {"model": model, "stream": True, "messages": ASK}),
        "messages": ("/v1/messages", {"model": model, "stream": True, "max_tokens": 50, "messages": ASK}),
        "plain": ("/v1/stream?format=json", {"model": model, "messages": ASK}),
        "responses": ("/v1/responses", {"model": model, "stream": True, "store": False, "input": "hi"}),
    }


@pytest.mark.timeout(60)
def test_sigterm_ends_each_direct_stream_with_its_protocols_error(upstream, tmp_path):
    model, config, env, port = hanging_server(upstream, tmp_path, "term-direct", ("before ", "shutdown"))
    srv = Proc(config, port, env)
    tails: dict[str, str] = {}
    started = {name: threading.Event() for name in bodies("")}

    def read(name: str, path: str, body: dict) -> None:
        text = ""
        with httpx.stream("POST", f"{srv.url}{path}", json=body, timeout=30) as resp:
            for chunk in resp.iter_text():
                text += chunk
                if "shutdown" in text:
                    started[name].set()
        tails[name] = text

    threads = [threading.Thread(target=read, args=(n, p, b)) for n, (p, b) in bodies(f"up/{model}").items()]
    try:
        for t in threads:
            t.start()
        for name, ev in started.items():
            assert ev.wait(15), f"{name} never streamed"
        os.kill(srv.p.pid, signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert srv.p.wait(20) in (0, -signal.SIGTERM)
        log = srv.p.stderr.read().decode(errors="replace")
    finally:
        srv.kill()
    assert "Traceback" not in log and "graceful shutdown exceeded" not in log, log[-2000:]
    assert set(tails) == set(started), "a stream never ended"
    assert '"code":"server_shutdown"' in tails["chat"].split("before shutdown")[-1]
    assert "event: error" in tails["messages"] and "shutting down" in tails["messages"]
    assert '"type":"error"' in tails["plain"] and "server_shutdown" in tails["plain"]
    assert "response.failed" in tails["responses"] and "server_shutdown" in tails["responses"]
