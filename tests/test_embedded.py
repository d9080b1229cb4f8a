"""The embedded SmolLM2 model really generates, through the whole server."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from sluiceway.core import ChatRequest, Deadlines, Message
from sluiceway.engine.gateway import EMBEDDED_MODEL
from sluiceway.providers.llamacpp import LlamaCppProvider, LlamaCppSettings, embedded_model_path
from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config

pytestmark = pytest.mark.embedded
ASK = [{"role": "user", "content": "Write a long story about a dragon."}]


@pytest.fixture(scope="module")
def local():
    srv = ServerThread(create_app(make_config(None, embedded=True))).start()
    yield openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=120)
    srv.stop()


def test_model_file_comes_from_the_wheel():
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_embedded_is_the_default_and_streams_text(local):
    assert "smollm2" in [m.id for m in local.models.list()]
    chunks = list(local.chat.completions.create(model="default", messages=ASK, max_tokens=12, stream=True,
                                                stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_seed_and_zero_temperature_are_deterministic(local):
    def once():
        return local.chat.completions.create(model="smollm2", messages=ASK, max_tokens=10, temperature=0,
                                             seed=42).choices[0].message.content
    assert once() == once()


def test_stop_sequence_is_honoured(local):
    out = local.chat.completions.create(model=f"local/{EMBEDDED_MODEL}", max_tokens=40, temperature=0,
                                        messages=[{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6, 7"}],
                                        stop=[","])
    assert "," not in out.choices[0].message.content


def test_concurrent_requests_queue_and_all_finish(local):
    def one(i):
        return local.chat.completions.create(model="smollm2", max_tokens=8,
                                             messages=[{"role": "user", "content": f"Say {i}"}])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert all(r.choices[0].message.content.strip() for r in results)


def test_cancel_stops_generation_within_a_token_or_two():
    async def scenario():
        p = LlamaCppProvider("local", LlamaCppSettings())
        req = ChatRequest(model=p.model_id, messages=[Message.of("user", ASK[0]["content"])], max_tokens=400)
        stream = p.stream(req, deadline=Deadlines())
        seen = 0
        async for batch in stream:
            seen += sum(e.type == "text-delta" for e in batch)
            if seen >= 3:
                break
        t0 = time.monotonic()
        await stream.aclose()  # returns once the generation thread has stopped
        stopped_in = time.monotonic() - t0
        # the context is free again at once: a new generation starts promptly
        t1 = time.monotonic()
        again = p.stream(req, deadline=Deadlines())
        first = await anext(again)
        await again.aclose()
        await p.aclose()
        return stopped_in, time.monotonic() - t1, first
    stopped_in, restart, first = asyncio.run(scenario())
    assert stopped_in < 0.5, f"generation went on for {stopped_in:.2f}s after cancel"
    assert restart < 5 and first
