"""Admin API for virtual keys: ``GET/POST /admin/keys``, ``DELETE /admin/keys/{id}``.

Guarded by the admin key (``server.admin_key`` or ``SLUICEWAY_ADMIN_KEY``),
sent like any key (``Authorization: Bearer …`` or ``x-api-key``). With no
admin key configured the routes answer 404, as if they did not exist.
Errors use the OpenAI error shape.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import AuthError, BadRequest, NotFound, SluicewayError
from ..store import keys
from .auth import auth_of
from .openai_routes import JSON, error_response, internal_error
from .requests import presented_key, read_json
from .state import AppState

log = logging.getLogger("sluiceway.admin")
FIELDS = ("name", "models", "rpm", "tpm", "max_concurrent_streams")


def _check_admin(request: Request) -> None:
    admin = auth_of(request).admin_key
    if not admin:
        raise NotFound(f"no route for {request.method} {request.url.path}", code="not_found")
    key = presented_key(request)
    if key is None:
        raise AuthError("missing admin key: send Authorization: Bearer <admin key>", code="missing_api_key")
    if not hmac.compare_digest(key.encode(), admin.encode()):
        raise AuthError("invalid admin key", code="invalid_api_key")


def _store(request: Request):
    state: AppState = request.app.state.sluiceway
    if state.store is None:
        raise SluicewayError("the store is not open", status=503, code="unavailable")
    return state.store


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status, media_type=JSON)


async def _guarded(request: Request, work) -> Response:
    try:
        _check_admin(request)
        return await work(request)
    except SluicewayError as e:
        return error_response(e)
    except Exception:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(internal_error())


async def _list_or_create(request: Request) -> Response:
    store = _store(request)
    if request.method == "GET":
        return _json({"object": "list", "data": await keys.list_keys(store)})
    state: AppState = request.app.state.sluiceway
    body = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    for k in body:
        if k not in FIELDS:
            raise BadRequest(f"unknown field {k!r}; allowed: {', '.join(FIELDS)}", param=str(k))
    if "name" not in body:
        raise BadRequest("'name' is required", param="name")
    record, raw = await keys.create_key(store, **body)
    auth_of(request).forget()
    return _json({**record, "key": raw}, 201)


async def _revoke(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    record = await keys.revoke_key(_store(request), key_id)
    if record is None:
        raise NotFound(f"API key {key_id!r} does not exist", code="key_not_found")
    auth_of(request).forget()
    return _json(record)


async def admin_keys(request: Request) -> Response:
    return await _guarded(request, _list_or_create)


async def admin_key(request: Request) -> Response:
    return await _guarded(request, _revoke)


def routes() -> list[Route]:
    return [
        Route("/admin/keys", admin_keys, methods=["GET", "POST"]),
        Route("/admin/keys/{key_id}", admin_key, methods=["DELETE"]),
    ]
