"""OpenAI-compatible endpoints: /v1/chat/completions and /v1/models."""

from __future__ import annotations

import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import NotFound, SluicewayError, fold
from ..protocols import openai_chat
from .auth import FREE, admit, authenticate
from .observe import StreamObserver, Taps
from .requests import deadline_overrides, read_json
from .state import AppState
from .streaming import ClientGone, SSEResponse, until_disconnect

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


async def chat_completions(request: Request) -> Response | SSEResponse:
    t0 = time.perf_counter()
    state: AppState = request.app.state.sluiceway
    grant = FREE
    try:
        await authenticate(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        req = openai_chat.decode_request(body)
        grant = await admit(request, req.model)  # allow-list and limits; ended with the stream
        opened = await until_disconnect(request.receive,
                                        grant.guard(state.gateway.router.open(req, deadline_overrides(request))))
    except SluicewayError as e:
        return error_response(e)
    except ClientGone:
        return CLIENT_GONE
    except Exception:
        log.exception("chat completion failed before streaming")
        return error_response(internal_error())
    observer = StreamObserver(state.gateway.metrics, "openai-chat", req.model, t0, headers=request.headers,
                              deployment=opened.deployment.label)
    if openai_chat.wants_stream(body):
        return SSEResponse(opened, openai_chat.Encoder(body, req.model), keepalive=state.keepalive,
                           stall_timeout=state.stall_timeout, tap=Taps(observer, grant))
    outcome = "complete"
    try:
        completion = await until_disconnect(request.receive, fold(opened.batches()))
        grant.count(completion.usage)
    except ClientGone:
        outcome = "disconnect"
        return CLIENT_GONE
    except SluicewayError as e:
        outcome = "error"
        return error_response(e)
    finally:
        await opened.aclose()
        observer.end(outcome)
        grant.end(outcome)
    if completion.error is not None and not completion.text and not completion.tool_calls:
        return error_response(completion.error)
    return Response(openai_chat.encode_completion(completion, req.model), media_type=JSON)


def _model_obj(id: str, owned_by: str, created: int, provider: str) -> dict:
    return {"id": id, "object": "model", "created": created or int(time.time()), "owned_by": owned_by,
            "provider": provider}


async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        principal = await authenticate(request)
    except SluicewayError as e:
        return error_response(e)
    models = await state.gateway.list_models(refresh=request.query_params.get("refresh") == "true")
    data = [_model_obj(m.id, m.owned_by, m.created, m.provider) for m in models if principal.allows(m.id)]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)


async def get_model(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        principal = await authenticate(request)
        wanted = request.path_params["model"]
        for m in await state.gateway.list_models():
            if m.id == wanted and principal.allows(m.id):  # a key sees only the models it may use
                return Response(orjson.dumps(_model_obj(m.id, m.owned_by, m.created, m.provider)), media_type=JSON)
        raise NotFound(f"The model {wanted!r} does not exist", code="model_not_found", param="model")
    except SluicewayError as e:
        return error_response(e)
