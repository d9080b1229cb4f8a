"""A sluiceway in front of the fake upstream, configured with the providers a
vendor's tests need and read with the official openai SDK: the over-HTTP half
of the per-vendor test files (what is sent upstream, request conversion)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai

from sluiceway.server.app import create_app

from ..conftest import ServerThread, make_config
from ..upstream import FakeUpstream


@contextmanager
def sdk_client(upstream: FakeUpstream, providers: dict[str, dict[str, Any]]) -> Iterator[openai.OpenAI]:
    srv = ServerThread(create_app(make_config(upstream, providers=providers))).start()
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="anything", max_retries=0, timeout=20)
    try:
        yield client
    finally:
        client.close()
        srv.stop()


def user(text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]
