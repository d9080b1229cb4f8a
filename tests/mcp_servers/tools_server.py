"""A tiny MCP server for the agent tests, on the official ``mcp`` package.

``python tools_server.py stdio`` speaks over stdin/stdout;
``python tools_server.py http PORT`` serves streamable HTTP on 127.0.0.1:PORT/mcp.
``crash`` kills the process, so tests can prove the client reconnects.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("sluiceway-test-tools", log_level="CRITICAL")


@server.tool()
def get_weather(city: str) -> dict:
    """Today's weather in a city."""
    return {"city": city, "weather": "晴", "temp": 25}


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami() -> str:
    """The server's process id (a reconnect starts a new process)."""
    return str(os.getpid())


def _mark(line: str) -> None:
    marker = os.environ.get("SW_MCP_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(line + "\n")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer; appends to the marker file when it starts and when it finishes."""
    _mark("started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:  # the client cancelled the call (MCP notifications/cancelled)
        _mark("cancelled")
        raise
    _mark("finished")
    return "done"


@server.tool()
def crash() -> str:
    """Kill this server process."""
    os._exit(3)


@server.tool()
def fail(reason: str) -> str:
    """Always raise."""
    raise RuntimeError(reason)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
