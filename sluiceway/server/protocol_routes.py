"""Routes for the other client protocols: OpenAI Responses, Anthropic
Messages, the AI SDK UI message stream and plain SSE.

They all run the same flow as ``/v1/chat/completions``: check the key, read
and decode the body, open the route (fallback happens inside), then either
stream through an ``SSEResponse`` with the protocol's encoder or fold the
stream into one object. A ``Protocol`` names the pieces that differ, so the
flow lives once in ``serve``. Errors before the first byte are HTTP errors
in the protocol's own shape; after it, the encoder turns them into the
protocol's in-stream error frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import ChatRequest, Completion, SluicewayError, fold
from ..protocols import ai_sdk_ui, anthropic_messages, openai_responses, plain_sse
from ..protocols import openai_chat as chat
from .auth import FREE, admit, authenticate
from .observe import StreamObserver, Taps
from .openai_routes import CLIENT_GONE, JSON, error_response, internal_error
from .requests import deadline_overrides, read_json
from .state import AppState
from .streaming import ClientGone, Encoder, SSEResponse, until_disconnect

log = logging.getLogger("sluiceway.server")


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    decode: Callable[[Any], ChatRequest]
    encode_error: Callable[[SluicewayError], tuple[int, bytes]]
    encoder: Callable[[Request, dict[str, Any], ChatRequest], Encoder]
    wants_stream: Callable[[dict[str, Any]], bool] = lambda body: True
    complete: Callable[[Completion, dict[str, Any], ChatRequest], bytes] | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    check: Callable[[Request], None] | None = None  # query checks, before the body is read


async def serve(request: Request, proto: Protocol) -> Response | SSEResponse:
    t0 = time.perf_counter()
    state: AppState = request.app.state.sluiceway
    grant = FREE
    try:
        if proto.check is not None:
            proto.check(request)
        await authenticate(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        req = proto.decode(body)
        grant = await admit(request, req.model)  # allow-list and limits; ended with the stream
        opened = await until_disconnect(request.receive,
                                        grant.guard(state.gateway.router.open(req, deadline_overrides(request))))
    except SluicewayError as e:
        return error_response(e, proto.encode_error)
    except ClientGone:
        return CLIENT_GONE
    except Exception:
        log.exception("%s request failed before streaming", proto.name)
        return error_response(internal_error(), proto.encode_error)
    observer = StreamObserver(state.gateway.metrics, proto.name, req.model, t0)
    if proto.complete is None or proto.wants_stream(body):
        return SSEResponse(opened, proto.encoder(request, body, req), keepalive=state.keepalive,
                           headers=list(proto.headers), stall_timeout=state.stall_timeout,
                           tap=Taps(observer, grant))
    outcome = "complete"
    try:
        completion = await until_disconnect(request.receive, fold(opened.batches()))
        grant.count(completion.usage)
    except ClientGone:
        outcome = "disconnect"
        return CLIENT_GONE
    except SluicewayError as e:
        outcome = "error"
        return error_response(e, proto.encode_error)
    finally:
        await opened.aclose()
        observer.end(outcome)
        grant.end(outcome)
    if completion.error is not None and not completion.text and not completion.tool_calls:
        return error_response(completion.error, proto.encode_error)
    return Response(proto.complete(completion, body, req), media_type=JSON)


# ------------------------------------------------------------------ protocols

RESPONSES = Protocol(
    "openai-responses", openai_responses.decode_request, openai_responses.encode_error,
    lambda request, body, req: openai_responses.Encoder(body, req),
    openai_responses.wants_stream,
    lambda c, body, req: openai_responses.encode_completion(c, body, req),
)

MESSAGES = Protocol(
    "anthropic-messages", anthropic_messages.decode_request, anthropic_messages.encode_error,
    lambda request, body, req: anthropic_messages.Encoder(body, req),
    anthropic_messages.wants_stream,
    lambda c, body, req: anthropic_messages.encode_completion(c, req),
)

UI_CHAT = Protocol(
    "ai-sdk-ui", ai_sdk_ui.decode_request, ai_sdk_ui.encode_error,
    lambda request, body, req: ai_sdk_ui.Encoder(body, req),
    headers=tuple(ai_sdk_ui.HEADERS),
)


def _plain_format(request: Request) -> None:
    plain_sse.check_format(request.query_params.get("format"))


PLAIN = Protocol(
    "plain-sse", chat.decode_request, chat.encode_error,
    lambda request, body, req: plain_sse.Encoder(plain_sse.check_format(request.query_params.get("format"))),
    check=_plain_format,
)


async def responses(request: Request) -> Response | SSEResponse:
    return await serve(request, RESPONSES)


async def messages(request: Request) -> Response | SSEResponse:
    return await serve(request, MESSAGES)


async def ui_chat(request: Request) -> Response | SSEResponse:
    return await serve(request, UI_CHAT)


async def plain_stream(request: Request) -> Response | SSEResponse:
    return await serve(request, PLAIN)


async def count_tokens(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        await authenticate(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        req = anthropic_messages.decode_request(body, require_max_tokens=False)
        if not request.state.principal.allows(req.model):
            await admit(request, req.model)  # the allow-list's 403; counting tokens is not a generation
    except SluicewayError as e:
        return error_response(e, anthropic_messages.encode_error)
    return Response(anthropic_messages.count_tokens(req), media_type=JSON)


def routes() -> list[Route]:
    """The Starlette routes this module serves (registered in ``app.py``)."""
    return [
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/api/chat", ui_chat, methods=["POST"]),
        Route("/v1/stream", plain_stream, methods=["POST"]),
    ]
