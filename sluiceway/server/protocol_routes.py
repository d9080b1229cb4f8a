"""Routes for the other client protocols: OpenAI Responses, Anthropic
Messages, the AI SDK UI message stream and plain SSE.

They all run the same flow as ``/v1/chat/completions``: check the key, read
and decode the body, open the route (fallback happens inside), then either
stream through an ``SSEResponse`` with the protocol's encoder or fold the
stream into one object. A ``Protocol`` names the pieces that differ, so the
flow lives once in ``serve``. Errors before the first byte are HTTP errors
in the protocol's own shape; after it, the encoder turns them into the
protocol's in-stream error frame.

Some generations are *runs* in the hub (``engine.hub``) rather than streams
tied to their request: ``/api/chat`` (so the AI SDK can resume a chat with
``GET /api/chat/{chatId}/stream``) and stored or background Responses (so
``GET /v1/responses/{id}?stream=true&starting_after=N`` can reattach). The
run log holds canonical events; a ``RunReplay`` feeds them, from the start,
through a fresh protocol encoder, so every reader gets the protocol's own
frames, numbered the same way.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import (
    ChatRequest,
    Completion,
    Event,
    SluicewayError,
    UpstreamUnavailable,
    fold,
)
from ..engine.hub import Hub, decode_event
from ..protocols import ai_sdk_ui, anthropic_messages, openai_responses, plain_sse, sse
from ..protocols import openai_chat as chat
from ..store import Store
from .auth import FREE, admit, authenticate
from .observe import StreamObserver, Taps
from .openai_routes import CLIENT_GONE, JSON, error_response, internal_error
from .requests import deadline_overrides, read_json
from .state import AppState
from .streaming import ClientGone, Encoder, Receive, Scope, Send, SSEResponse, until_disconnect

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
    # serve the stream as a hub run; None from it means "stream it the usual way"
    run: Callable[[RunStart], Awaitable[Any]] | None = None
    # after a non-streamed answer is encoded (e.g. store it)
    keep: Callable[[AppState, dict[str, Any], bytes], Awaitable[None]] | None = None


@dataclass(slots=True)
class RunStart:
    """What a protocol's ``run`` gets: the request, decoded, and its open upstream."""

    request: Request
    state: AppState
    proto: Protocol
    body: dict[str, Any]
    req: ChatRequest
    opened: Any
    tap: Taps  # metrics and the key's grant


async def serve(request: Request, proto: Protocol) -> Response | SSEResponse:
    t0 = time.perf_counter()
    state: AppState = request.app.state.sluiceway
    grant = FREE
    try:
        if proto.check is not None:
            proto.check(request)
        await authenticate(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        if proto.prepare is not None:
            body = await proto.prepare(request, state, body)
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
    if proto.run is not None and state.hub is not None:
        ran = await proto.run(RunStart(request, state, proto, body, req, opened, Taps(observer, grant)))
        if ran is not None:
            return ran
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
    data = proto.complete(completion, body, req)
    if proto.keep is not None:
        try:
            await proto.keep(state, body, data)
        except Exception:
            log.exception("%s: keeping the answer failed", proto.name)
            return error_response(internal_error(), proto.encode_error)
    return Response(data, media_type=JSON)


# ------------------------------------------------------------------- runs

class HubObserver:
    """A hub ``Observer`` over the streaming taps (metrics, the key's grant)
    and an optional saver that must finish before the run's end is logged."""

    __slots__ = ("tap", "saver")

    def __init__(self, tap: Taps, saver: Any = None) -> None:
        self.tap, self.saver = tap, saver

    def batch(self, events: list[Event], encoded: list[bytes]) -> None:
        self.tap.batch(events)
        if self.saver is not None:
            self.saver.batch(events)

    async def end(self, status: str) -> None:
        try:
            if self.saver is not None:
                await self.saver.end(status)
        finally:
            self.tap.end({"interrupted": "disconnect"}.get(status, status))


async def _ready(opened: Any) -> Any:
    return opened  # opened before the run, so failures to open are still HTTP errors


async def start_run(rs: RunStart, run_id: str, saver: Any = None, meta: dict[str, Any] | None = None) -> Any:
    """Hand the opened stream to the hub. An error response if that fails."""
    hub = rs.state.hub
    assert hub is not None
    try:
        await hub.start(run_id, lambda: _ready(rs.opened), HubObserver(rs.tap, saver), meta)
    except Exception:
        log.exception("starting run %s failed", run_id)
        with contextlib.suppress(Exception):
            await rs.opened.aclose()
        rs.tap.end("error")
        err = UpstreamUnavailable("the run log is unavailable; try again", code="run_log_unavailable")
        return error_response(err, rs.proto.encode_error)
    return None


class RunReplay:
    """One run's log, from its start, through a fresh protocol encoder: the
    replay, then the live tail. ``on_disconnect`` runs if the client leaves
    first, ``on_delivered`` once it has had the whole answer."""

    def __init__(self, hub: Hub, run_id: str, encoder: Encoder, *, keepalive: float,
                 headers: list[tuple[bytes, bytes]] | None = None,
                 on_disconnect: Callable[[], Awaitable[Any]] | None = None,
                 on_delivered: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.hub, self.run_id, self.encoder, self.keepalive = hub, run_id, encoder, keepalive
        self.headers = sse.HEADERS + (headers or [])
        self.on_disconnect, self.on_delivered = on_disconnect, on_delivered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        try:
            await until_disconnect(receive, self._pump(send))
        except (ClientGone, OSError):
            await self._call(self.on_disconnect)
            return
        await self._call(self.on_delivered)

    async def _call(self, hook: Callable[[], Awaitable[Any]] | None) -> None:
        if hook is None:
            return
        try:
            await hook()
        except Exception:
            log.exception("run %s: stream hook failed", self.run_id)

    async def _pump(self, send: Send) -> None:
        enc = self.encoder
        async for entries in self.hub.read(self.run_id, 0, heartbeat=self.keepalive or None):
            body = enc.feed([decode_event(p) for _, p in entries]) if entries else sse.KEEPALIVE
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if enc.done:
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _hub(state: AppState) -> tuple[Store, Hub]:
    if state.store is None or state.hub is None:
        raise SluicewayError("the store is not open", status=503, code="unavailable")
    return state.store, state.hub


# ------------------------------------------------------- AI SDK runs, resume

def _chat_alias(request: Request, chat_id: str) -> str:
    """Chat ids are chosen by clients: scope them by API key, so one key
    cannot resume another's chat."""
    principal = getattr(request.state, "principal", None)
    return f"ai-chat:{getattr(principal, 'key_id', None) or ''}:{chat_id}"


def _ui_encoder(run_id: str) -> ai_sdk_ui.Encoder:
    return ai_sdk_ui.Encoder(ids=lambda prefix: f"{prefix}_{run_id}")  # the same messageId on every replay


async def ui_run(rs: RunStart) -> Any:
    hub = rs.state.hub
    assert hub is not None
    run_id = uuid.uuid4().hex
    chat_id = rs.body.get("id") if isinstance(rs.body.get("id"), str) and rs.body.get("id") else None
    failed = await start_run(rs, run_id, meta={"kind": "ai-sdk-ui", "chat_id": chat_id})
    if failed is not None:
        return failed
    alias = _chat_alias(rs.request, chat_id) if chat_id else None
    if alias is not None:
        try:
            await hub.log.set_alias(alias, run_id)
        except Exception as e:  # the answer still streams; only resuming it is lost
            log.warning("run %s: naming it for chat resume failed: %s", run_id, e)

    async def left() -> None:
        if hub.disconnect == "cancel":
            if alias is not None:
                await hub.log.drop_alias(alias, run_id)  # stopped on purpose: nothing to resume
            await hub.stop(run_id, "disconnect")

    async def delivered() -> None:
        if alias is not None:  # the client has it all: a later resume gets 204
            await hub.log.drop_alias(alias, run_id)

    return RunReplay(hub, run_id, _ui_encoder(run_id), keepalive=rs.state.keepalive,
                     headers=list(ai_sdk_ui.HEADERS), on_disconnect=left, on_delivered=delivered)


async def ui_resume(request: Request) -> Any:
    """``GET /api/chat/{chatId}/stream``: the chat's run that its client has
    not had in full (it is live, or ended while nobody was reading), replayed
    from the start, then its live tail; 204 when there is none."""
    state: AppState = request.app.state.sluiceway
    try:
        await authenticate(request)
        _, hub = _hub(state)
        alias = _chat_alias(request, request.path_params["chat_id"])
        run_id = await hub.log.get_alias(alias)
        if run_id is None or not await hub.exists(run_id):
            return Response(status_code=204)
    except SluicewayError as e:
        return error_response(e, ai_sdk_ui.encode_error)
    except Exception:
        log.exception("resuming a chat failed")
        return error_response(UpstreamUnavailable("the run log is unavailable; try again"), ai_sdk_ui.encode_error)

    async def delivered() -> None:
        await hub.log.drop_alias(alias, run_id)

    return RunReplay(hub, run_id, _ui_encoder(run_id), keepalive=state.keepalive,
                     headers=list(ai_sdk_ui.HEADERS), on_delivered=delivered)


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
    run=ui_run,
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
        Route("/api/chat/{chat_id}/stream", ui_resume, methods=["GET"]),
        Route("/v1/stream", plain_stream, methods=["POST"]),
    ]
