"""Configuration of agents and the MCP servers their tools come from.

```yaml
mcp_servers:
  weather: {command: [python, weather_server.py], env: {}}     # stdio
  search:  {url: http://127.0.0.1:9000/mcp, headers: {}}        # streamable HTTP
agents:
  helper:
    model: openai/gpt-4.1-mini
    system: You are a helpful assistant.
    tools: [weather.*, builtin.current_time, mypkg.tools:lookup]
    max_steps: 8
```

A tool pattern is ``server.tool`` (``*`` globs, ``builtin`` is the built-in
server) or ``module:function`` (a Python function by import path).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..strict import Strict


class MCPServerConfig(Strict):
    """One MCP server: a command spoken to over stdio, or a streamable HTTP URL."""

    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout: float = 20.0  # seconds to start (or reach) the server and list its tools

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")
        return self


class AgentConfig(Strict):
    model: str  # any model or alias the router serves
    system: str | None = None
    tools: list[str] = Field(default_factory=list)  # server.tool patterns and module:function paths
    max_steps: int = Field(default=8, ge=1, le=100)
    tool_timeout: float = Field(default=30.0, gt=0)  # seconds per tool call; a timeout is an error result
    deadline: float | None = Field(default=None, gt=0)  # seconds for the whole run; None = the route's total
    files: str | None = None  # the folder builtin.read_file reads below (required for that tool)
    # tools a person must approve before each call: their names or source.name patterns (weather.*, builtin.calculator)
    approve: list[str] = Field(default_factory=list)
    approval_timeout: float = Field(default=300.0, gt=0)  # seconds to wait for the decision; none is a denial

    @model_validator(mode="after")
    def _not_itself(self) -> AgentConfig:
        if self.model.startswith("agent/"):
            raise ValueError("an agent's model cannot be another agent")
        return self
