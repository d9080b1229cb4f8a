"""Which server tools an agent gets: its ``tools:`` patterns resolved against
the built-ins, the configured MCP servers and Python import paths."""

from __future__ import annotations

import fnmatch
import logging
from typing import TYPE_CHECKING

from .builtins import BUILTIN_NAMES, builtin_tools
from .config import AgentConfig, MCPServerConfig
from .tools import ServerTool, import_tool

if TYPE_CHECKING:
    from .mcp_client import MCPConnection

log = logging.getLogger("sluiceway.agents")

BUILTIN = "builtin"


class Toolbox:
    """The gateway's tool sources, shared by every agent."""

    def __init__(self, servers: dict[str, MCPServerConfig]) -> None:
        self.mcp: dict[str, MCPConnection] = {}
        if servers:  # the mcp package costs ~55 MB of memory: imported only when a server is configured
            from .mcp_client import MCPConnection
            self.mcp = {name: MCPConnection(name, cfg) for name, cfg in servers.items()}
        self._python: dict[str, ServerTool] = {}
        self._builtins: dict[str | None, dict[str, ServerTool]] = {}  # by files folder: schemas built once

    def check(self, agent_name: str, agent: AgentConfig) -> None:
        """Fail at startup on a pattern that can never match (unknown server, bad import)."""
        for pattern in agent.tools:
            where = f"agents.{agent_name}.tools: {pattern!r}"
            if ":" in pattern:
                try:
                    self._python_tool(pattern)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
                continue
            server, dot, tool = pattern.partition(".")
            if not dot or not tool:
                raise ValueError(f"{where} is neither server.tool nor module:function")
            if server == BUILTIN:
                if not fnmatch.filter(BUILTIN_NAMES, tool):
                    raise ValueError(f"{where}: no built-in tool matches; built-ins: {', '.join(BUILTIN_NAMES)}")
                if tool == "read_file" and not agent.files:
                    raise ValueError(f"{where}: read_file needs the agent's files: folder")
            elif server not in self.mcp:
                known = ", ".join(sorted([BUILTIN, *self.mcp])) or BUILTIN
                raise ValueError(f"{where}: unknown tool server {server!r} (known: {known})")

    def _python_tool(self, path: str) -> ServerTool:
        if path not in self._python:
            self._python[path] = import_tool(path)
        return self._python[path]

    async def for_agent(self, agent: AgentConfig) -> dict[str, ServerTool]:
        """The agent's tools by the name the model sees. An MCP server that
        cannot be reached is left out (logged), so the agent still answers."""
        found: list[ServerTool] = []
        builtins = self._builtins.get(agent.files)
        if builtins is None:
            builtins = self._builtins[agent.files] = builtin_tools(agent.files)
        for pattern in agent.tools:
            if ":" in pattern:
                found.append(self._python_tool(pattern))
                continue
            server, _, tool = pattern.partition(".")
            if server == BUILTIN:
                found.extend(builtins[n] for n in fnmatch.filter(list(builtins), tool))
                continue
            conn = self.mcp[server]
            try:
                listed = await conn.list_tools()
            except Exception as e:
                log.warning("MCP server %s unavailable, its tools are left out: %r", server, e)
                continue
            for t in listed:
                if fnmatch.fnmatchcase(t.name, tool):
                    found.append(_mcp_tool(conn, t))
        return _named(found)


def _mcp_tool(conn: MCPConnection, t: object) -> ServerTool:
    remote = t.name  # type: ignore[attr-defined]

    async def run(arguments: dict) -> object:
        return await conn.call(remote, arguments)

    schema = dict(t.input_schema or {"type": "object", "properties": {}})  # type: ignore[attr-defined]
    return ServerTool(remote, t.description, schema, run, conn.name, remote)  # type: ignore[attr-defined]


def _named(tools: list[ServerTool]) -> dict[str, ServerTool]:
    """Tools keep their own names; when two sources share a name both become
    ``source__name`` (function names allow no dots)."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    unique: list[ServerTool] = []
    for t in tools:
        if (t.source, t.name) in seen:  # two patterns matched the same tool
            continue
        seen.add((t.source, t.name))
        unique.append(t)
        counts[t.name] = counts.get(t.name, 0) + 1
    out: dict[str, ServerTool] = {}
    for t in unique:
        if counts[t.name] > 1:
            t = ServerTool(f"{t.source}__{t.name}", t.description, t.parameters, t.run, t.source, t.remote_name)
        out[t.name] = t
    return out
