"""Agent routes: MiniOpenCode's ``POST /api/web/chat/stream`` (seed 002).

``useTools: true`` runs the default agent (the one named ``default``, else
the first configured) as ``agent/<name>``; ``false`` asks that agent's model
with its system prompt and no server tools. A ``model`` in the body picks any
model or ``agent/<name>`` instead. With no agents configured, the default
model answers. ``POST /api/agents/approvals/{id}`` answers a tool call an agent
waits on (``approve:`` in its config). Every other endpoint serves agents as ``agent/<name>``
through the router; nothing else is needed here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..core import BadRequest, NotFound, SluicewayError
from ..engine.runs import MetricsObserver
from ..protocols import mini_opencode
from .auth import FREE, admit, authenticate
from .errors import CLIENT_GONE, error_response, internal_error, json_response
from .requests import deadline_overrides, read_json
from .streaming import ClientGone, SSEResponse, until_disconnect

log = logging.getLogger("sluiceway.server")

AGENT_PROVIDER = "agent"


def _target(gateway: Any, chat: mini_opencode.WebChat) -> tuple[str, str | None]:
    """(model, extra system prompt) for a seed request."""
    if chat.model:
        return chat.model, None
    agents = gateway.providers.get(AGENT_PROVIDER)
    name = agents.default_agent() if agents is not None else None
    if name is None:
        return "", None  # the router's default model
    if chat.use_tools:
        return f"agent/{name}", None
    agent = agents.agents[name]
    return agent.model, agent.system


async def web_chat_stream(request: Request) -> Any:
    t0 = time.perf_counter()
    state = request.app.state.sluiceway
    grant = FREE
    try:
        await authenticate(request)  # X-API-Key (or a bearer token)
        body = await read_json(request, state.config.server.max_body_bytes)
        chat = mini_opencode.decode_request(body)
        model, system = _target(state.gateway, chat)
        req = chat.request(model, system)
        grant = await admit(request, req.model)
        opened = await until_disconnect(request.receive,
                                        grant.guard(state.gateway.router.open(req, deadline_overrides(request))))
    except SluicewayError as e:
        return error_response(e, mini_opencode.encode_error)
    except ClientGone:
        return CLIENT_GONE
    except Exception:
        log.exception("web chat stream failed before streaming")
        return error_response(internal_error(), mini_opencode.encode_error)
    metrics = MetricsObserver(state.gateway.metrics, "mini_opencode", req.model, t0, headers=request.headers,
                              deployment=opened.deployment.label)
    return SSEResponse(opened, mini_opencode.Encoder(), keepalive=state.keepalive,
                       stall_timeout=state.stall_timeout, observers=grant.observers(metrics))


async def decide_approval(request: Request) -> Any:
    """``{approved: bool, reason?: str}`` for a ``tool-approval-request`` an agent
    is waiting on (in this process). 404 when nothing waits under that id."""
    state = request.app.state.sluiceway
    try:
        await authenticate(request)
        body = await read_json(request, 64 * 1024)
        if not isinstance(body, dict) or not isinstance(body.get("approved"), bool):
            raise BadRequest("the body must be {approved: true|false, reason?: string}", param="approved")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("reason must be a string", param="reason")
        approval_id = request.path_params["approval_id"]
        agents = state.gateway.providers.get(AGENT_PROVIDER)
        if agents is None or not agents.approvals.decide(approval_id, body["approved"], reason):
            raise NotFound(f"no tool call waits for approval {approval_id!r}", code="approval_not_found")
    except SluicewayError as e:
        return error_response(e, mini_opencode.encode_error)
    return json_response({"approval_id": approval_id, "approved": body["approved"]})


async def list_approvals(request: Request) -> Any:
    """The tool calls agents wait on in this process, for clients whose protocol cannot show the request."""
    try:
        await authenticate(request)
    except SluicewayError as e:
        return error_response(e, mini_opencode.encode_error)
    agents = request.app.state.sluiceway.gateway.providers.get(AGENT_PROVIDER)
    return json_response({"data": agents.approvals.pending() if agents is not None else []})


def routes() -> list[Route]:
    return [Route("/api/web/chat/stream", web_chat_stream, methods=["POST"]),
            Route("/api/agents/approvals", list_approvals, methods=["GET"]),
            Route("/api/agents/approvals/{approval_id}", decide_approval, methods=["POST"])]
