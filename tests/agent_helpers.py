"""Shared pieces of the agent tests: upstream scripts that call tools, and
configs with agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .upstream import Script, chat_chunk, chat_text_stream, sse, usage_wire

TOOLS_SERVER = str(Path(__file__).parent / "mcp_servers" / "tools_server.py")
PY = "tests.mcp_servers.py_tools"


def tool_step(calls: list[tuple[str, str, Any]], *, usage: tuple[int, int] = (10, 5),
              text: str | None = None) -> list[Any]:
    """One upstream step that (optionally says something and) calls tools."""
    steps: list[Any] = [sse(chat_chunk({"role": "assistant", "content": None}))]
    if text:
        steps.append(sse(chat_chunk({"content": text})))
    for i, (cid, name, args) in enumerate(calls):
        arguments = args if isinstance(args, str) else json.dumps(args)
        steps.append(sse(chat_chunk({"tool_calls": [{"index": i, "id": cid, "type": "function",
                                                     "function": {"name": name, "arguments": ""}}]})))
        steps.append(sse(chat_chunk({"tool_calls": [{"index": i, "function": {"arguments": arguments}}]})))
    steps.append(sse(chat_chunk({}, "tool_calls")))
    steps.append(sse(chat_chunk(usage=usage_wire(*usage), choices=False)))
    steps.append(b"data: [DONE]\n\n")
    return steps


def answer(text: str, usage: tuple[int, int] = (30, 7)) -> list[Any]:
    return chat_text_stream([text], usage=usage_wire(*usage))


def chain(*steps: list[Any]) -> Script:
    """Scripts served one after another, the last one from then on."""
    script = Script(list(steps[-1]))
    for s in reversed(steps[:-1]):
        script = Script(list(s), times=1, then=script)
    return script


def stdio_server(**kw: Any) -> dict[str, Any]:
    return {"command": [sys.executable, TOOLS_SERVER, "stdio"], **kw}
