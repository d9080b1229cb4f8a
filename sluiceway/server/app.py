"""The ASGI application. Only pure ASGI middleware (no BaseHTTPMiddleware:
it hides client disconnects and costs CPU on every streamed chunk)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..engine.config import Config, load_config
from ..engine.gateway import Gateway
from ..engine.runs import close_runs, open_runs
from . import (
    admin_routes,
    agent_routes,
    audio_routes,
    chat_routes,
    openai_routes,
    openapi,
    protocol_routes,
    responses_routes,
    run_routes,
    session_routes,
    settings_routes,
    table,
    ui_routes,
    web_routes,
    workflow_routes,
)
from .auth import Auth
from .errors import json_response
from .guards import CrossSiteGuard
from .observe import HttpMetrics
from .state import AppState

log = logging.getLogger("sluiceway.server")


async def healthz(request: Request) -> Response:
    """Liveness: 200 while this process serves. A local model worker that is
    crash-looping makes it "degraded" and says why, per provider."""
    providers = request.app.state.sluiceway.gateway.health()
    bad = any(p["status"] == "unhealthy" for p in providers.values())
    body = {"status": "degraded" if bad else "ok", "providers": providers}
    return json_response(body)


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = request.app.state.sluiceway.gateway.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def not_found(request: Request, exc: Exception) -> Response:
    body = {"error": {"message": f"no route for {request.method} {request.url.path}",
                      "type": "invalid_request_error", "param": None, "code": "not_found"}}
    return json_response(body, 404)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    body = {"error": {"message": f"{request.method} is not allowed on {request.url.path}",
                      "type": "invalid_request_error", "param": None, "code": "method_not_allowed"}}
    return json_response(body, 405)


class App(Starlette):
    """Starlette with ``HttpMetrics`` outermost, around Starlette's own error
    middleware: it counts the 500s that middleware answers, and its ``send``
    is the server's own (``observe.RAW_SEND``)."""

    def build_middleware_stack(self):  # noqa: ANN201
        return HttpMetrics(super().build_middleware_stack())


def api_ops(public_metrics: bool = False, public_docs: bool = False) -> list[table.Op]:
    """The route table: every documented operation (``table.Op``), each
    module's next to its handlers."""
    return [
        *openapi.ops(healthz, metrics, public_metrics=public_metrics, public_docs=public_docs),
        *openai_routes.ops(),  # /v1/models
        *protocol_routes.ops(),  # Chat Completions, Messages, plain SSE
        *responses_routes.ops(),  # Responses and the stored-Responses API
        *ui_routes.ops(),  # the AI SDK UI stream and its resume
        *chat_routes.ops(),  # session chat
        *run_routes.ops(),  # runs: state, reattach, stop
        *session_routes.ops(),  # sessions, messages, titles, export, traces
        *admin_routes.ops(),  # virtual keys (404 unless an admin key is set)
        *web_routes.ops(),  # the browser UI's pages
    ]


def create_app(config: Config | None = None, gateway: Gateway | None = None) -> Starlette:
    cfg = config or load_config()
    gw = gateway or Gateway(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = app.state.sluiceway
        state.store, state.runs = await open_runs(cfg)  # the store and the runs service
        await settings_routes.startup(app)  # provider changes at runtime: file watch, replica sync
        try:
            yield
        finally:
            await close_runs(state.store, state.runs)  # active runs saved before the store closes
            await app.state.auth.aclose()
            await settings_routes.shutdown(app)
            await gw.aclose()

    ops = api_ops(cfg.server.public_metrics, cfg.server.public_docs)
    routes: list[BaseRoute] = table.to_routes(ops)
    # modules that hand over plain Starlette routes (documented from them, below):
    routes += settings_routes.routes()  # /settings/*: providers added, edited, removed at runtime
    routes += audio_routes.routes()  # /v1/audio/speech, /v1/audio/transcriptions, /v1/voice (WebSocket)
    routes += agent_routes.routes()  # /api/web/chat/stream: MiniOpenCode's agent event stream (seed 002)
    routes += workflow_routes.routes()  # model-compose's /api/workflows, /api/tasks; Langflow-style /api/v1/run
    # HttpMetrics wraps all of it (App): request id, and every request counted, refused ones too;
    # a refused request never reaches routing or auth
    middleware = [Middleware(CrossSiteGuard, allowed_hosts=cfg.server.allowed_hosts,
                             open_mode=lambda: not cfg.server.api_keys and not cfg.server.admin_key)]
    if cfg.server.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=cfg.server.cors_origins,
                                     allow_methods=["*"], allow_headers=["*"], expose_headers=["x-request-id"]))
    ops += table.from_routes(routes[len(ops):])
    routes += web_routes.static()  # the browser UI's files go LAST so they never shadow an API route
    app = App(routes=routes, middleware=middleware, lifespan=lifespan,
              exception_handlers={404: not_found, 405: method_not_allowed})
    app.state.sluiceway = AppState(cfg, gw)
    app.state.auth = Auth.for_state(app.state.sluiceway)  # keys and limits (server/auth.py)
    app.state.openapi = orjson.dumps(openapi.openapi_document(ops))  # from the same table as the routes
    return app
