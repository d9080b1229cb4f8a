"""Server tools: what the agent loop can run itself.

A ``ServerTool`` is a name the model sees, a JSON Schema for its input and an
async ``run(arguments) -> output``. Tools come from MCP servers
(``mcp_client.py``), from Python functions named by import path
(``module:function``; the schema is built from the type hints, pydantic
models included) and from the built-ins in ``builtins.py``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, create_model

from ...core import Tool

Runner = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class ServerTool:
    name: str  # as the model sees it
    description: str | None
    parameters: dict[str, Any]
    run: Runner
    source: str  # "builtin", "python" or the MCP server's name
    remote_name: str = ""  # the tool's own name on its server

    def as_tool(self) -> Tool:
        return Tool(self.name, self.description, self.parameters)

    @property
    def is_mcp(self) -> bool:
        return self.source not in ("builtin", "python")


def output_text(value: Any) -> str:
    """A tool's return value as the text fed back to the model (JSON unless already text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return orjson.dumps(value, default=str).decode()


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def function_tool(fn: Callable[..., Any], *, name: str | None = None, source: str = "python") -> ServerTool:
    """Wrap a plain or async function; its parameters (type hints, defaults,
    pydantic models) become the input schema and are validated on each call."""
    sig = inspect.signature(fn)
    hints = _hints(fn)
    fields: dict[str, Any] = {}
    for pname, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(pname, Any)
        fields[pname] = (ann, ... if p.default is p.empty else p.default)
    model = create_model(f"{fn.__name__}_args", __base__=_Args, **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    doc = inspect.getdoc(fn)
    is_async = inspect.iscoroutinefunction(fn)

    async def run(arguments: dict[str, Any]) -> Any:
        parsed = model.model_validate(arguments)
        kwargs = {k: getattr(parsed, k) for k in fields}
        if is_async:
            return await fn(**kwargs)
        # a blocking function must not stall the event loop (and other streams)
        return await asyncio.to_thread(functools.partial(fn, **kwargs))

    return ServerTool(name or fn.__name__, doc, schema, run, source, fn.__name__)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped
        return {}


def import_tool(path: str) -> ServerTool:
    """``package.module:function`` → a tool named after the function."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{path!r} is not module:function")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import tool {path!r}: {e}") from None
    if not callable(obj):
        raise ValueError(f"tool {path!r} is not callable")
    return function_tool(obj, name=attr.rsplit(".", 1)[-1])
