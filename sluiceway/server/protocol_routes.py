"""The generic flow of every client protocol: OpenAI Chat Completions,
Anthropic Messages and plain SSE here; OpenAI Responses
(``responses_routes``) and the AI SDK UI stream (``ui_routes``) plug into it.

``serve``: check the key, read and decode the body, open the route
(fallback happens inside), then either hand the stream to the runs service
(a protocol's ``run``), stream it through an ``SSEResponse`` with the
protocol's encoder, or fold it into one object. A ``Protocol`` names the
pieces that differ. Errors before the first byte are HTTP errors in the
protocol's own shape; after it, the encoder turns them into the protocol's
in-stream error frame.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..core import ChatRequest, Completion, SluicewayError, fold
from ..engine.runs import MetricsObserver, Observer, Outcome, Runs, end_all
from ..protocols import anthropic_messages, plain_sse
from ..protocols import openai_chat as chat
from ..store import Store
from .auth import FREE, Grant, admit, authenticate, owner, row_owner
from .errors import CLIENT_GONE, JSON, error_response, internal_error, run_log_unavailable, unavailable
from .requests import deadline_overrides, read_json
from .schemas import anthropic_err, body, errors, i, obj, ok, openai_err, ref, s
from .state import AppState
from .streaming import ClientGone, Disconnect, Encoder, SSEResponse
from .table import Op, query

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
    # the body as the decoder should see it (e.g. with stored turns prepended)
    prepare: Callable[[Request, AppState, dict[str, Any]], Awaitable[Any]] | None = None
    # serve the stream as a run; None from it means "stream it the usual way"
    run: Callable[[RunStart], Awaitable[Any]] | None = None
    # after a non-streamed answer is encoded (e.g. store it)
    keep: Callable[[Request, AppState, dict[str, Any], bytes], Awaitable[None]] | None = None


@dataclass(slots=True)
class RunStart:
    """What a protocol's ``run`` gets: the request, decoded, and its open upstream."""

    request: Request
    state: AppState
    proto: Protocol
    body: dict[str, Any]
    req: ChatRequest
    opened: Any
    observers: list[Observer]  # metrics and the key's grant

    async def abandon(self) -> None:
        """Nothing was handed to the runs service: close what was opened, end the observers."""
        with contextlib.suppress(Exception):
            await self.opened.aclose()
        await end_all(self.observers, Outcome.ERROR)


def store_and_runs(state: AppState) -> tuple[Store, Runs]:
    if state.store is None or state.runs is None:
        raise unavailable()
    return state.store, state.runs


async def start_run(rs: RunStart, run_id: str, first: list[Observer] | None = None,
                    meta: dict[str, Any] | None = None) -> Response | None:
    """Hand the opened stream to the runs service, ``first`` observers (savers)
    ahead of the accounting. An error response if that fails."""
    runs = rs.state.runs
    assert runs is not None
    opened = rs.opened

    async def ready() -> Any:
        return opened  # opened before the run, so failures to open are still HTTP errors

    try:
        # a run belongs to the key that started it (the runs API checks it)
        await runs.start(run_id, ready, [*(first or []), *rs.observers],
                         {**(meta or {}), "owner": row_owner(owner(rs.request))})
    except Exception:
        log.exception("starting run %s failed", run_id)
        await rs.abandon()
        return error_response(run_log_unavailable(), rs.proto.encode_error)
    return None


async def serve(request: Request, proto: Protocol) -> Any:
    t0 = time.perf_counter()
    state: AppState = request.app.state.sluiceway
    grant: Grant = FREE
    try:
        if proto.check is not None:
            proto.check(request)
        await authenticate(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        if proto.prepare is not None:
            body = await proto.prepare(request, state, body)
        req = proto.decode(body)
        grant = await admit(request, req.model)  # allow-list and limits; ended with the stream
        # the request's one disconnect watcher: the stream goes on with it
        opened = await Disconnect.of(request.scope, request.receive).guard(
            grant.guard(state.gateway.router.open(req, deadline_overrides(request))))
    except SluicewayError as e:
        return error_response(e, proto.encode_error)
    except ClientGone:
        return CLIENT_GONE
    except Exception:
        log.exception("%s request failed before streaming", proto.name)
        return error_response(internal_error(), proto.encode_error)
    metrics = MetricsObserver(state.gateway.metrics, proto.name, req.model, t0, headers=request.headers,
                             deployment=opened.deployment.label)
    observers = grant.observers(metrics)
    request.state.access = {"model": req.model, "provider": opened.deployment.provider.name,  # access log
                            "deployment": opened.deployment.label, "usage": metrics}
    # the response names the model that answered; the name asked for goes in a header
    alias = alias_header(req.model, opened.deployment.label)
    answered = req.with_model(opened.deployment.label)
    if proto.run is not None and state.runs is not None:
        rs = RunStart(request, state, proto, body, answered, opened, observers)
        try:
            ran = await proto.run(rs)
        except Exception:
            log.exception("%s: starting the run failed", proto.name)
            await rs.abandon()
            return error_response(internal_error(), proto.encode_error)
        if ran is not None:
            return with_headers(ran, alias)
    if proto.complete is None or proto.wants_stream(body):
        return SSEResponse(opened, proto.encoder(request, body, answered), keepalive=state.keepalive,
                           headers=[*proto.headers, *alias], stall_timeout=state.stall_timeout, observers=observers)
    return with_headers(await _complete(request, state, proto, body, answered, opened, grant, observers), alias)


def with_headers(resp: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    """Add headers to a Starlette response or to one of our SSE responses (a header list)."""
    if isinstance(resp, Response):
        for k, v in headers:
            resp.headers[k.decode()] = v.decode("latin-1")
    elif isinstance(getattr(resp, "headers", None), list):
        resp.headers = [*resp.headers, *headers]
    return resp


def alias_header(asked: str, answered: str) -> list[tuple[bytes, bytes]]:
    """Responses name the model that answered (provider/model); the name the
    client asked for, when different (an alias, "default"), goes here."""
    if asked == answered:
        return []
    return [(b"x-sluiceway-alias", asked.encode("latin-1", "replace"))]


async def _complete(request: Request, state: AppState, proto: Protocol, body: dict[str, Any], req: ChatRequest,
                    opened: Any, grant: Grant, observers: list[Observer]) -> Response:
    """The non-streamed answer: the stream folded into one object."""
    assert proto.complete is not None
    outcome = Outcome.COMPLETE
    try:
        completion = await Disconnect.of(request.scope, request.receive).guard(fold(opened.batches()))
        grant.count(completion.usage)
    except ClientGone:
        outcome = Outcome.INTERRUPTED
        return CLIENT_GONE
    except SluicewayError as e:
        outcome = Outcome.ERROR
        return error_response(e, proto.encode_error)
    finally:
        await opened.aclose()
        await end_all(observers, outcome)
    if completion.error is not None and not completion.text and not completion.tool_calls:
        return error_response(completion.error, proto.encode_error)
    data = proto.complete(completion, body, req)
    if proto.keep is not None:
        try:
            await proto.keep(request, state, body, data)
        except Exception:
            log.exception("%s: keeping the answer failed", proto.name)
            return error_response(internal_error(), proto.encode_error)
    return Response(data, media_type=JSON)


# ------------------------------------------------------------------ protocols
CHAT = Protocol(
    "openai-chat", chat.decode_request, chat.encode_error,
    lambda request, body, req: chat.Encoder(body, req),
    chat.wants_stream,
    lambda c, body, req: chat.encode_completion(c, req.model, agent_steps=body.get("agent_steps") is True),
)

MESSAGES = Protocol(
    "anthropic-messages", anthropic_messages.decode_request, anthropic_messages.encode_error,
    lambda request, body, req: anthropic_messages.Encoder(body, req),
    anthropic_messages.wants_stream,
    lambda c, body, req: anthropic_messages.encode_completion(c, req),
)


def _plain_format(request: Request) -> None:
    plain_sse.check_format(request.query_params.get("format"))


PLAIN = Protocol(
    "plain-sse", chat.decode_request, chat.encode_error,
    lambda request, body, req: plain_sse.Encoder(body, req,
                                                 format=plain_sse.check_format(request.query_params.get("format"))),
    check=_plain_format,
)


def serving(proto: Protocol) -> Callable[[Request], Awaitable[Any]]:
    async def handler(request: Request) -> Any:
        return await serve(request, proto)
    handler.__name__ = proto.name.replace("-", "_")
    return handler


async def count_tokens(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    body_ = await read_json(request, state.config.server.max_body_bytes)
    req = anthropic_messages.decode_request(body_, require_max_tokens=False)
    if not request.state.principal.allows(req.model):
        await admit(request, req.model)  # the allow-list's 403; counting tokens is not a generation
    return Response(anthropic_messages.count_tokens(req), media_type=JSON)


def ops() -> list[Op]:
    # serve() authenticates itself: a protocol's query checks come first
    return [
        Op("POST", "/v1/chat/completions", serving(CHAT), "OpenAI Chat Completions (streams when `stream` is true)",
           "openai", "chatCompletions", {"200": ok(ref("ChatCompletion"), stream=True), **openai_err},
           body=body(ref("ChatCompletionRequest")), errors=chat.encode_error, auth=False),
        Op("POST", "/v1/messages", serving(MESSAGES), "Anthropic Messages (streams when `stream` is true)",
           "anthropic", "messages", {"200": ok({"type": "object"}, stream=True), **anthropic_err},
           body=body(ref("MessagesRequest")), errors=anthropic_messages.encode_error, auth=False),
        Op("POST", "/v1/messages/count_tokens", count_tokens, "Anthropic token count (estimated)", "anthropic",
           "countTokens", {"200": ok(obj({"input_tokens": i()}, ("input_tokens",))),
                           **errors("AnthropicError", 400, 401, 403)},
           body=body(ref("CountTokensRequest")), errors=anthropic_messages.encode_error),
        Op("POST", "/v1/stream", serving(PLAIN),
           "Plain SSE: text deltas (format=text) or canonical JSON events (format=json)", "ui", "plainStream",
           {"200": ok(stream=True), **openai_err}, (query("format", s(enum=["text", "json"])),),
           body=body(ref("ChatCompletionRequest")), auth=False),
    ]


__all__ = ["Protocol", "RunStart", "ops", "serve", "serving", "start_run", "store_and_runs"]
