"""The OpenAPI 3.1 document, served at ``GET /openapi.json``: generated from
the route table (``table.py``) the routes come from, plus the body schemas
(``schemas.py``). Detailed enough to drive a fuzzer
(``tests/test_openapi_fuzz.py`` runs schemathesis over it, allowing no 5xx)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from .errors import JSON
from .ready import readyz
from .schemas import SCHEMAS, J, obj, ok, s
from .table import Op, document

INFO: J = {"title": "sluiceway", "version": "1",
           "description": "LLM streaming gateway and chat server: OpenAI Chat Completions and Responses, "
                          "Anthropic Messages, the AI SDK UI stream, plain SSE and a stored session chat "
                          "API. Errors use each protocol's own shape; a limit hit is a 429 with Retry-After."}

COMPONENTS: J = {
    "schemas": SCHEMAS,
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "A static key (server.api_keys) or a virtual key (sk-sw-…). "
                                  "Not needed when the server has no keys at all."},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key",
                         "description": "The same key, the Anthropic way"},
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "The admin key (server.admin_key or SLUICEWAY_ADMIN_KEY)"},
    },
}


def openapi_document(ops: Iterable[Op]) -> J:
    return document(ops, info=INFO, components=COMPONENTS)


async def openapi_json(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type=JSON)  # built once, in create_app


def ops(healthz, metrics, *, public_metrics: bool = False, public_docs: bool = False) -> list[Op]:  # noqa: ANN001
    """The operational endpoints. Liveness is always public; metrics and this
    document need a key whenever the server has keys, unless configured public."""
    def access(public: bool) -> dict:
        return {"security": [], "auth": False} if public else {}
    return [
        Op("GET", "/healthz", healthz, "Liveness", "ops", "healthz", {"200": ok(obj({"status": s()}))},
           security=[], auth=False),
        Op("GET", "/readyz", readyz, "Readiness: store, Redis (when configured), a usable provider", "ops",
           "readyz", {"200": ok(obj({"status": s(), "checks": {"type": "object"}})),
                      "503": {"description": "Not ready; checks says why"}},
           security=[], auth=False),
        Op("GET", "/metrics", metrics, "Prometheus metrics", "ops", "metrics",
           {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": s()}}}},
           **access(public_metrics)),
        Op("GET", "/openapi.json", openapi_json, "This document", "ops", "openapi",
           {"200": ok({"type": "object"})}, **access(public_docs)),
    ]
