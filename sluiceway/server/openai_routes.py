"""OpenAI-compatible model listing, and the error helpers every route uses.
(/v1/chat/completions runs the shared flow in ``protocol_routes``.)"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import NotFound, SluicewayError
from ..protocols import openai_chat
from .auth import authenticate
from .state import AppState

log = logging.getLogger("sluiceway.server")
JSON = "application/json"
CLIENT_GONE = Response(status_code=499)  # nginx's "client closed request"; nobody reads it


def error_response(err: SluicewayError, encode=openai_chat.encode_error) -> Response:
    status, body = encode(err)
    headers = {}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(body, status, headers=headers, media_type=JSON)


def internal_error() -> SluicewayError:
    return SluicewayError("internal server error; see the server log", code="internal_error")


def _model_obj(id: str, owned_by: str, created: int, provider: str, default: str | None) -> dict:
    # "default": true marks the model that requests naming no model (or "default") get
    return {"id": id, "object": "model", "created": created or int(time.time()), "owned_by": owned_by,
            "provider": provider, "default": id == default}


async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        principal = await authenticate(request)
    except SluicewayError as e:
        return error_response(e)
    models = await state.gateway.list_models(refresh=request.query_params.get("refresh") == "true")
    default = state.gateway.router.default_model
    data = [_model_obj(m.id, m.owned_by, m.created, m.provider, default) for m in models if principal.allows(m.id)]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)


async def get_model(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        principal = await authenticate(request)
        wanted = request.path_params["model"]
        for m in await state.gateway.list_models():
            if m.id == wanted and principal.allows(m.id):  # a key sees only the models it may use
                return Response(orjson.dumps(_model_obj(m.id, m.owned_by, m.created, m.provider,
                                                         state.gateway.router.default_model)), media_type=JSON)
        raise NotFound(f"The model {wanted!r} does not exist", code="model_not_found", param="model")
    except SluicewayError as e:
        return error_response(e)
