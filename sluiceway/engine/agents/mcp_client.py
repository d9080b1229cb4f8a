"""MCP servers as tool sources, through the official ``mcp`` package.

Each configured server gets one ``MCPConnection``: connected lazily on first
use, its tools listed with their JSON Schemas, and reconnected on the next
use after it crashed or its connection broke (the failing call itself becomes
a tool error). The ``mcp`` client is built on anyio task groups, which must
be entered and left by the same task, so one owner task per connection holds
the session open and calls are made from any task through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from .config import MCPServerConfig

log = logging.getLogger("sluiceway.agents.mcp")

MAX_TOOL_PAGES = 20
RETRY_AFTER = 5.0  # seconds a server that failed to connect is not tried again (requests skip its tools)


class ToolFailed(Exception):
    """The server ran the tool and reported an error (``isError``)."""


class MCPConnection:
    def __init__(self, name: str, cfg: MCPServerConfig) -> None:
        self.name, self.cfg = name, cfg
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self.tools: list[Any] | None = None  # mcp Tool objects, as last listed
        self.connects = 0  # how many times a session was opened (reconnects = connects - 1)
        self._failed: tuple[float, str] | None = None  # when the last connect failed, and why

    def _target(self) -> Any:
        c = self.cfg
        if c.command is not None:
            return StdioServerParameters(command=c.command[0], args=c.command[1:], env=c.env or None, cwd=c.cwd)
        assert c.url is not None
        return streamable_http_client(c.url, http_client=create_mcp_http_client(headers=c.headers or None))

    @property
    def connected(self) -> bool:
        return self._client is not None and self._owner is not None and not self._owner.done()

    async def ensure(self) -> Client:
        """The live client, connecting (or reconnecting) first when needed."""
        if self.connected:
            assert self._client is not None
            return self._client
        async with self._lock:
            if self.connected:
                assert self._client is not None
                return self._client
            await self._reset()
            loop = asyncio.get_running_loop()
            if self._failed is not None and loop.time() - self._failed[0] < RETRY_AFTER:
                raise ConnectionError(f"MCP server {self.name!r} is unavailable: {self._failed[1]}")
            ready: asyncio.Future[tuple[Client, list[Any]]] = loop.create_future()
            stop = asyncio.Event()
            self._stop = stop
            self._owner = asyncio.create_task(self._own(ready, stop), name=f"mcp-{self.name}")
            try:
                async with asyncio.timeout(self.cfg.connect_timeout):
                    client, tools = await asyncio.shield(ready)
            except BaseException as e:
                if isinstance(e, Exception):  # not for a cancelled caller: the server did nothing wrong
                    self._failed = (loop.time(), f"{type(e).__name__}: {e}")
                await self._reset()
                raise
            self._client, self.tools, self._failed = client, tools, None
            self.connects += 1
            return client

    async def _own(self, ready: asyncio.Future[tuple[Client, list[Any]]], stop: asyncio.Event) -> None:
        mine: Client | None = None
        try:
            async with Client(self._target()) as client:
                mine = client
                tools: list[Any] = []
                cursor = None
                for _ in range(MAX_TOOL_PAGES):
                    page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                if not ready.done():
                    ready.set_result((client, tools))
                await stop.wait()
        except BaseException as e:  # noqa: BLE001 - reported to whoever waits, then the task ends
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else ConnectionError(f"MCP server {self.name} "
                                                                                        "stopped while connecting"))
            elif not stop.is_set():
                log.warning("MCP server %s: connection ended: %r", self.name, e)
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            if mine is not None and self._client is mine:  # never clear a newer session's client
                self._client = None

    async def _reset(self) -> None:
        """Close the current session (if any), so the next use reconnects."""
        owner, stop = self._owner, self._stop
        self._client, self._owner, self._stop = None, None, None
        if owner is None:
            return
        if stop is not None:
            stop.set()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(owner)
        except BaseException:  # noqa: BLE001 - a session that will not close is cancelled
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner

    async def list_tools(self) -> list[Any]:
        await self.ensure()
        return list(self.tools or [])

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        client = await self.ensure()
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as e:
            if e.error.code == CONNECTION_CLOSED:
                await self._broken(client, e)
                raise ConnectionError(f"MCP server {self.name!r} closed the connection") from None
            raise ToolFailed(e.error.message) from None
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as e:  # a broken transport: reconnect on the next call
            await self._broken(client, e)
            raise ConnectionError(f"MCP server {self.name!r} failed: {type(e).__name__}: {e}") from None
        return _result_value(result)

    async def _broken(self, client: Client, e: BaseException) -> None:
        log.warning("MCP server %s: call failed (%r); will reconnect on next use", self.name, e)
        async with self._lock:
            if self._client is client or not self.connected:  # a parallel call may have reconnected already
                await self._reset()

    async def aclose(self) -> None:
        async with self._lock:
            await self._reset()


def _result_value(result: Any) -> Any:
    """A ``CallToolResult`` as the value fed back to the model: the structured
    content when there is some, else the text blocks joined."""
    parts: list[str] = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind} content]")
    text = "\n".join(parts)
    if result.is_error:
        raise ToolFailed(text or "the tool reported an error")
    if result.structured_content is not None:
        return result.structured_content
    return text
