"""Agents: a server-side tool loop (model → tool calls → tool results → model)
with tools from MCP servers, Python functions and built-ins, served as the
model ``agent/<name>`` on every protocol (``provider.py``). Only the config
models are imported here, so loading the configuration does not load ``mcp``."""

from .config import AgentConfig, MCPServerConfig

__all__ = ["AgentConfig", "MCPServerConfig"]
