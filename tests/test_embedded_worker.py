"""The embedded model runs in a supervised child process: a portable native
build, and a worker whose death never takes the gateway down."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from sluiceway.core import ChatRequest, Deadlines, Message
from sluiceway.providers.llamacpp import LlamaCppProvider, LlamaCppSettings
from sluiceway.providers.worker import WorkerProvider

from .test_sessions_chat import messages, read_sse, text_of, wait_for
from .upstream import chat_text_stream

pytestmark = pytest.mark.embedded
STORY = "Write a long story about a dragon."
# Every AMX instruction mnemonic: tile config, loads/stores and the dot products.
AMX = re.compile(r"\b(ldtilecfg|sttilecfg|tilerelease|tilezero|tileloadd\w*|tilestored|tdpb\w+|tdpfp16ps)\b")


def _llama_libs() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin
    libs = sorted((Path(spec.origin).parent / "lib").glob("lib*.so*"))
    assert any("ggml-cpu" in p.name for p in libs), libs
    return libs


def test_installed_llama_cpp_has_no_amx_code_and_is_not_a_native_build():
    for lib in _llama_libs():
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        found = sorted(set(AMX.findall(asm)))
        assert not found, f"{lib.name} contains AMX instructions {found}: a native build slipped in"
    # llama.cpp's own report of the instruction sets it was compiled for
    info = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                          capture_output=True, text=True, check=True).stdout
    assert "AVX2 = 1" in info or "x86" not in os.uname().machine, info
    for flag in ("AMX_INT8", "AVX512"):
        assert f"{flag} = 1" not in info, f"built with {flag}: {info}"


def _health(srv) -> dict:
    r = httpx.get(f"{srv.url}/healthz", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def _worker_pid(srv, not_pid: int | None = None) -> int:
    def ready():
        pid = _health(srv)["providers"]["local"]["pid"]
        return pid if pid and pid != not_pid else None
    return wait_for(ready, timeout=60, every=0.05)


@pytest.fixture
def both(upstream, make_server, tmp_path):
    """The embedded model and the scripted upstream behind one server."""
    # a first token may wait for a (re)started worker to load the model: seconds on a busy 2-core machine
    return make_server(embedded=True, store={"url": f"sqlite+aiosqlite:///{tmp_path}/w.db", "checkpoint_interval": 0.1},
                       runs={"shutdown_grace": 0}, resilience={"retries": 0},
                       timeouts={"connect": 2, "first_token": 60, "idle": 30, "total": 120})


def test_killing_the_worker_mid_stream_ends_only_that_stream(upstream, both):
    srv = both
    upstream.add("w-steady", chat_text_stream(["tick "] * 40, delay=0.05))
    other: dict = {}

    def other_stream() -> None:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=30)
        chunks = list(c.chat.completions.create(model="up/w-steady", stream=True,
                                                messages=[{"role": "user", "content": "go"}]))
        other["text"] = "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
        other["finish"] = [x.choices[0].finish_reason for x in chunks if x.choices and x.choices[0].finish_reason]

    with httpx.stream("POST", f"{srv.url}/chat/stream", timeout=60,
                      json={"message": STORY, "model": "smollm2", "params": {"max_tokens": 400}}) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        run, events = read_sse(lines, limit=1)
        while sum(e["type"] == "text-delta" for _, e in events) < 5:
            events += read_sse(lines, limit=1)[1]
        gateway_pid = os.getpid()
        pid = _worker_pid(srv)
        assert pid != gateway_pid
        t = threading.Thread(target=other_stream)
        t.start()
        time.sleep(0.2)  # the other stream is under way
        os.kill(pid, signal.SIGKILL)
        events += read_sse(lines)[1]
    t.join(30)
    end = events[-1][1]
    assert end["type"] == "error" and end["code"] == "upstream_unavailable", end
    assert "SIGKILL" in end["message"]
    partial = text_of(events)
    assert partial
    # the answer is stored with the text that had streamed
    stored = wait_for(lambda: [m for m in messages(srv, run["session_id"]) if m["role"] == "assistant"
                               and m["status"] != "streaming"])
    assert stored[0]["text"] == partial and stored[0]["status"] == "error"
    # the stream to the other provider was untouched
    assert other == {"text": "tick " * 40, "finish": ["stop"]}
    health = _health(srv)["providers"]["local"]
    assert health["restarts"] == 1 and "SIGKILL" in health["last_crash"]
    # the worker comes back, and the model answers again
    _worker_pid(srv, not_pid=pid)
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
    again = c.chat.completions.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert again.choices[0].message.content.strip()


def test_a_crash_looping_worker_is_marked_unhealthy_with_the_reason(both):
    srv = both
    pid = None
    for _ in range(3):
        pid = _worker_pid(srv, not_pid=pid) if pid else _start_worker(srv)
        os.kill(pid, signal.SIGKILL)
    health = wait_for(lambda: (h := _health(srv))["status"] == "degraded" and h, timeout=10)
    local = health["providers"]["local"]
    assert local["status"] == "unhealthy" and local["pid"] is None and "SIGKILL" in local["last_crash"]
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert e.value.status_code == 503 and "unhealthy" in e.value.message
    time.sleep(1.5)
    assert _health(srv)["providers"]["local"]["pid"] is None  # not crash-looping


def _start_worker(srv) -> int:
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
    c.chat.completions.create(model="smollm2", max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    return _worker_pid(srv)


async def test_cancel_across_the_process_boundary_frees_the_model_at_once():
    p = WorkerProvider(LlamaCppProvider, "local", LlamaCppSettings())
    try:
        req = ChatRequest(model=p.model_id, messages=[Message.of("user", STORY)], max_tokens=400)
        stream = p.stream(req, deadline=Deadlines())
        seen = 0
        async for batch in stream:
            seen += sum(e.type == "text-delta" for e in batch)
            if seen >= 3:
                break
        await stream.aclose()
        # generation turns are FIFO: the next one's first token comes only once the cancelled one stopped
        t0 = time.monotonic()
        again = p.stream(req, deadline=Deadlines())
        first = [e async for e in _first_text(again)]
        assert first and time.monotonic() - t0 < 2.0
        assert p.health()["status"] == "ok" and p.health()["restarts"] == 0
    finally:
        await p.aclose()
    assert p.pid is None


async def _first_text(stream):
    async for batch in stream:
        texts = [e for e in batch if e.type == "text-delta"]
        if texts:
            yield texts[0]
            break
    await stream.aclose()


def test_worker_exits_with_the_gateway():
    """A gateway killed with SIGKILL leaves no model process behind."""
    code = ("import asyncio,sys\n"
            "from sluiceway.providers.worker import WorkerProvider\n"
            "from sluiceway.providers.llamacpp import LlamaCppProvider, LlamaCppSettings\n"
            "async def main():\n"
            "    p = WorkerProvider(LlamaCppProvider, 'local', LlamaCppSettings())\n"
            "    await p._ensure(); print(p.pid, flush=True); await asyncio.sleep(60)\n"
            "asyncio.run(main())\n")
    gw = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(gw.stdout.readline())
        gw.kill()
        gw.wait()
        wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in _state(child), timeout=10)
    finally:
        gw.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"

