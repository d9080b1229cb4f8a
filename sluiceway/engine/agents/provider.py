"""Agents served as a provider named ``agent``: the router sends
``agent/<name>`` here like any ``provider/model``, so every endpoint serves
agents and ``/v1/models`` lists them. Each step calls the agent's own model
back through the router, so aliases, fallbacks and deadlines apply to it."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import Field

from ...core import ChatRequest, Deadlines, Event, Message, NotFound
from ...providers import ModelInfo
from ..strict import Strict
from .config import AgentConfig, MCPServerConfig
from .loop import Approvals, Gate, StepStream, run_agent
from .registry import Toolbox
from .tools import ServerTool

log = logging.getLogger("sluiceway.agents")

PROVIDER_NAME = "agent"
CLIENT_ONLY = frozenset({"agent_steps"})  # request extensions for our encoders, never sent upstream


class AgentSettings(Strict):
    mcp_servers: dict[str, MCPServerConfig] = Field(default_factory=dict)


class AgentProvider:
    kind: ClassVar[str] = "agent"
    Settings: ClassVar[type[AgentConfig]] = AgentConfig

    def __init__(self, agents: dict[str, AgentConfig], servers: dict[str, MCPServerConfig],
                 router: Callable[[], Any]) -> None:
        self.name = PROVIDER_NAME
        self.agents, self.servers = agents, servers
        self.settings = AgentSettings(mcp_servers=servers)  # MCP headers and env are redacted like provider keys
        self.toolbox = Toolbox(servers)
        self.approvals = Approvals()
        self._router = router  # a getter: the gateway may swap its router on reload
        for name, agent in agents.items():
            self.toolbox.check(name, agent)

    def agent(self, name: str) -> AgentConfig:
        try:
            return self.agents[name]
        except KeyError:
            raise NotFound(f"The model 'agent/{name}' does not exist. See GET /v1/models for the agents served here.",
                           code="model_not_found", param="model") from None

    def default_agent(self) -> str | None:
        """``default`` if there is one, else the first agent configured."""
        if "default" in self.agents:
            return "default"
        return next(iter(self.agents), None)

    async def tools(self, name: str) -> dict[str, ServerTool]:
        return await self.toolbox.for_agent(self.agent(name))

    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        name = req.model
        agent = self.agent(name)
        tools = await self.tools(name)
        client_tools = [t for t in req.tools if t.name not in tools]
        if len(client_tools) < len(req.tools):
            log.warning("agent/%s: client tools shadowed by server tools of the same name were dropped", name)
        messages = _sanitize(req.messages, tools)
        if agent.system:
            messages = [Message.of("system", agent.system), *messages]
        extra = {k: v for k, v in req.extra.items() if k not in CLIENT_ONLY}
        inner = replace(req, model=agent.model, messages=messages, extra=extra,
                        tools=[*(t.as_tool() for t in tools.values()), *client_tools])
        router = self._router()

        async def open_step(step: ChatRequest, left: float | None) -> StepStream:
            overrides = None if left is None else {"total": left}
            return await router.open(step, overrides)

        total = agent.deadline if agent.deadline is not None else deadline.total
        gate = None
        if agent.approve:
            def needs(tool: str) -> bool:
                keys = (tool, f"{tools[tool].source}.{tools[tool].remote_name or tool}")
                return any(fnmatch.fnmatchcase(k, p) for k in keys for p in agent.approve)
            gate = Gate(needs, self.approvals, agent.approval_timeout, f"agent/{name}")
        async for batch in run_agent(inner, tools, open_step, label=f"agent/{name}", max_steps=agent.max_steps,
                                     tool_timeout=agent.tool_timeout, deadline=total, gate=gate):
            yield batch

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(name, owned_by="sluiceway-agent") for name in self.agents]

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.toolbox.mcp.values()), return_exceptions=True)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "mcp": {n: {"connected": c.connected, "connects": c.connects}
                                        for n, c in self.toolbox.mcp.items()}}


def _sanitize(messages: list[Message], tools: dict[str, ServerTool]) -> list[Message]:
    """Drop server-tool calls from earlier assistant turns that came back without
    their results (clients that do not echo server steps), since upstreams
    reject a tool call with no answer."""
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    out = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            keep = [c for c in m.tool_calls if c.call_id in answered or c.name not in tools]
            if len(keep) != len(m.tool_calls):
                m = replace(m, tool_calls=keep)
                if not m.content and not keep:
                    continue
        out.append(m)
    return out


def attach(gateway: Any, config: Any, providers: dict[str, Any]) -> None:
    """Add the ``agent`` provider to the providers a gateway (re)load builds,
    keeping the running instance (and its MCP sessions) when the agents and
    MCP servers did not change."""
    from ..config import ConfigError

    if not config.agents:
        return
    if PROVIDER_NAME in providers:
        raise ConfigError(f"providers.{PROVIDER_NAME}: the name {PROVIDER_NAME!r} is reserved for agents")
    old = gateway.providers.get(PROVIDER_NAME) if hasattr(gateway, "providers") else None
    if isinstance(old, AgentProvider) and old.agents == config.agents and old.servers == config.mcp_servers:
        providers[PROVIDER_NAME] = old
        return
    try:
        providers[PROVIDER_NAME] = AgentProvider(config.agents, config.mcp_servers, lambda: gateway.router)
    except ValueError as e:
        raise ConfigError(f"{config.path}: {e}" if config.path else str(e)) from None
