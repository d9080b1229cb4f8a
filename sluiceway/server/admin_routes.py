"""Admin API for virtual keys: ``GET/POST /admin/keys``, ``DELETE /admin/keys/{id}``.

Guarded by the admin key (``server.admin_key`` or ``SLUICEWAY_ADMIN_KEY``),
sent like any key (``Authorization: Bearer …`` or ``x-api-key``). With no
admin key configured the routes answer 404, as if they did not exist.
Errors use the OpenAI error shape.
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import Response

from ..core import AuthError, BadRequest, NotFound
from ..store import keys
from .auth import auth_of
from .errors import json_response, unavailable
from .requests import presented_key, read_json
from .schemas import ADMIN, arr, body, errors, obj, ok, ref
from .state import AppState
from .table import Op, path

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
        raise unavailable()
    return state.store


async def list_keys(request: Request) -> Response:
    _check_admin(request)
    return json_response({"object": "list", "data": await keys.list_keys(_store(request))})


async def create_key(request: Request) -> Response:
    _check_admin(request)
    store = _store(request)
    state: AppState = request.app.state.sluiceway
    raw = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON object")
    for k in raw:
        if k not in FIELDS:
            raise BadRequest(f"unknown field {k!r}; allowed: {', '.join(FIELDS)}", param=str(k))
    if "name" not in raw:
        raise BadRequest("'name' is required", param="name")
    record, key = await keys.create_key(store, **raw)
    auth_of(request).forget()
    return json_response({**record, "key": key}, 201)


async def revoke_key(request: Request) -> Response:
    _check_admin(request)
    key_id = request.path_params["key_id"]
    record = await keys.revoke_key(_store(request), key_id)
    if record is None:
        raise NotFound(f"API key {key_id!r} does not exist", code="key_not_found")
    auth_of(request).forget()
    return json_response(record)


def ops() -> list[Op]:
    # the admin key is checked by each handler (404 while no admin key is set), not the API keys
    return [
        Op("GET", "/admin/keys", list_keys, "List virtual API keys (prefixes only)", "admin", "listKeys",
           {"200": ok(obj({"object": {"const": "list"}, "data": arr(ref("ApiKey"))})),
            **errors("OpenAIError", 401, 404)}, security=ADMIN, auth=False),
        Op("POST", "/admin/keys", create_key, "Create a virtual API key; the key is in this response only",
           "admin", "createKey", {"201": ok(ref("ApiKeyCreated")), **errors("OpenAIError", 400, 401, 404)},
           body=body(ref("ApiKeyCreate")), security=ADMIN, auth=False),
        Op("DELETE", "/admin/keys/{key_id}", revoke_key, "Revoke a virtual API key", "admin", "revokeKey",
           {"200": ok(ref("ApiKey")), **errors("OpenAIError", 401, 404)}, (path("key_id"),), security=ADMIN,
           auth=False),
    ]
