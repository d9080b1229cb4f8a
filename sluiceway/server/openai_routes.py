"""OpenAI-compatible model listing (``/v1/models``). The generation
endpoints run the shared protocol flow (``protocol_routes``)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from ..core import NotFound
from .errors import json_response
from .schemas import errors, ok, ref, s
from .state import AppState
from .table import Op, path, query


def _model_obj(id: str, owned_by: str, created: int, provider: str, default: str | None) -> dict:
    # "default": true marks the model that requests naming no model (or "default") get
    return {"id": id, "object": "model", "created": created or int(time.time()), "owned_by": owned_by,
            "provider": provider, "default": id == default}


async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    principal = request.state.principal
    models = await state.gateway.list_models(refresh=request.query_params.get("refresh") == "true")
    default = state.gateway.router.default_model
    data = [_model_obj(m.id, m.owned_by, m.created, m.provider, default) for m in models if principal.allows(m.id)]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    principal = request.state.principal
    wanted = request.path_params["model"]
    for m in await state.gateway.list_models():
        if m.id == wanted and principal.allows(m.id):  # a key sees only the models it may use
            return json_response(_model_obj(m.id, m.owned_by, m.created, m.provider,
                                            state.gateway.router.default_model))
    raise NotFound(f"The model {wanted!r} does not exist", code="model_not_found", param="model")


def ops() -> list[Op]:
    return [
        Op("GET", "/v1/models", list_models, "List models (only those the key may use)", "openai", "listModels",
           {"200": ok(ref("ModelList")), **errors("OpenAIError", 401)},
           (query("refresh", s(enum=["true", "false"]), "Ask the providers again"),)),
        Op("GET", "/v1/models/{model:path}", get_model, "One model", "openai", "getModel",
           {"200": ok(ref("Model")), **errors("OpenAIError", 401, 404)},
           (path("model", s(minLength=1, maxLength=200), "Model id"),)),
    ]
