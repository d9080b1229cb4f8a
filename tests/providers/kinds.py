"""The table the provider contract suite runs over: for every remote
provider kind, how to configure it against the fake upstream, how its
recorded wire streams are framed, and how to serve them.

A wire stream is a file ``wire/<kind>/<case>.<ext>`` holding a response body
byte for byte (``.sse``, ``.ndjson``, AWS event-stream ``.bin``). ``split``
cuts a body back into the vendor's messages, so one recording can be
replayed message by message, re-cut into small slices, or cut short (then
dropped or stalled). The polling kind's files are different: one JSON
document per line, the submit response then one status per poll.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluiceway.core import SluicewayError, UpstreamError, UpstreamUnavailable
from sluiceway.providers import provider_class
from sluiceway.providers.base import Provider

from ..upstream import DROP, FakeUpstream, Script
from .eventstream import EVENTSTREAM, split_frames

WIRE = Path(__file__).parent / "wire"
KEY = "wire-secret-do-not-leak"
JSON = {"content-type": "application/json"}


def split_sse(body: bytes) -> list[bytes]:
    return re.findall(rb".*?(?:\r\n\r\n|\n\n)|.+$", body, re.S)


def split_lines(body: bytes) -> list[bytes]:
    return body.splitlines(keepends=True)


@dataclass(frozen=True)
class Kind:
    name: str
    ext: str
    content_type: str
    split: Callable[[bytes], list[bytes]]
    settings: Callable[[str, str], dict[str, Any]]  # (upstream url, model) → provider settings
    key_header: str  # where the key goes ("authorization": as a bearer token; "": signed, never sent)
    cases: frozenset[str] = frozenset({"text", "reasoning", "tools", "truncated", "midstream_error"})
    # vendor statuses beyond the common matrix: (status, the typed error it must become)
    statuses: tuple[tuple[int, type[SluicewayError]], ...] = ()

    def wire(self, case: str) -> bytes:
        return (WIRE / self.name / f"{case}.{self.ext}").read_bytes()

    def error_body(self) -> bytes:
        return (WIRE / self.name / "error.json").read_bytes()

    def model(self, case: str) -> str:
        # unique per test: the fake upstream finds a script by the model in the body or the path
        return f"{self.name}-{case}-{secrets.token_hex(3)}"

    def provider(self, upstream: FakeUpstream, model: str) -> Provider:
        cls = provider_class(self.name)
        return cls(self.name, cls.Settings(**self.settings(upstream.url, model)))  # type: ignore[call-arg]

    def serve(self, upstream: FakeUpstream, model: str, messages: list[bytes], *, slice_size: int = 0,
              tail: Any = None) -> None:
        """Serve recorded ``messages`` as the stream's response: one write each, or
        re-cut into ``slice_size``-byte writes (mid-frame, mid-character); then
        ``tail`` (``DROP``, ``HANG``) if given."""
        steps: list[Any] = list(messages)
        if slice_size:
            body = b"".join(messages)
            steps = [body[i:i + slice_size] for i in range(0, len(body), slice_size)]
        if tail is not None:
            steps.append(tail)
        upstream.add(model, Script(steps, headers={"content-type": self.content_type}))

    def refuse(self, upstream: FakeUpstream, model: str, status: int, headers: dict[str, str]) -> None:
        """Answer the stream request with an error status and the kind's recorded error body."""
        upstream.add(model, Script([self.error_body()], status=status, headers={**JSON, **headers}))


class PollingKind(Kind):
    """A task API: the first document answers the submit, each later one a
    status poll, the last repeating (a task that never finishes, under
    ``HANG``); ``DROP`` cuts the poll after the last document. Slicing does
    not apply: every poll answers one whole document."""

    def serve(self, upstream: FakeUpstream, model: str, messages: list[bytes], *, slice_size: int = 0,
              tail: Any = None) -> None:
        upstream.add(model, Script([messages[0]], headers=JSON))
        polls: Script | None = Script([DROP], headers=JSON) if tail is DROP else None
        for doc in reversed(messages[1:]):
            polls = Script([doc], headers=JSON) if polls is None else Script([doc], headers=JSON, times=1,
                                                                               then=polls)
        assert polls is not None, "a polling recording needs at least one status document"
        upstream.add(f"{model}-poll", polls)
        upstream.add(f"{model}-cancel", Script([b"{}"], headers=JSON))


def _polling_settings(url: str, model: str) -> dict[str, Any]:
    return {"submit_url": f"{url}/{model}/tasks", "status_url": f"{url}/{model}-poll/tasks/{{task_id}}",
            "cancel_url": f"{url}/{model}-cancel/tasks/{{task_id}}", "api_key": KEY,
            "text_path": "output.text", "reasoning_path": "output.reasoning", "error_path": "error.message",
            "input_tokens_path": "usage.input_tokens", "output_tokens_path": "usage.output_tokens",
            "interval": 0.01, "max_poll_errors": 0}


SSE = "text/event-stream"
KINDS: list[Kind] = [
    Kind("openai", "sse", SSE, split_sse, lambda url, m: {"base_url": f"{url}/v1", "api_key": KEY},
         "authorization"),
    Kind("azure", "sse", SSE, split_sse, lambda url, m: {"endpoint": url, "api_key": KEY}, "api-key"),
    Kind("anthropic", "sse", SSE, split_sse, lambda url, m: {"base_url": url, "api_key": KEY}, "x-api-key",
         statuses=((529, UpstreamUnavailable),)),  # overloaded
    Kind("gemini", "sse", SSE, split_sse, lambda url, m: {"base_url": url, "api_key": KEY}, "x-goog-api-key"),
    Kind("ollama", "ndjson", "application/x-ndjson", split_lines, lambda url, m: {"base_url": url, "api_key": KEY},
         "authorization"),
    Kind("bedrock", "bin", EVENTSTREAM, split_frames, lambda url, m: {
        "region": "us-east-1", "endpoint_url": url, "access_key_id": "AKIDEXAMPLE", "secret_access_key": KEY},
         "", statuses=((424, UpstreamError),)),  # ModelErrorException: the model failed, another may do
    # a task API has no tools, and no truncation: every poll is a whole document
    PollingKind("polling", "ndjson", "application/json", split_lines, _polling_settings, "authorization",
                cases=frozenset({"text", "reasoning", "midstream_error"})),
]
