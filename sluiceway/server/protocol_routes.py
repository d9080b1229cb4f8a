"""Routes for the client protocols: OpenAI Chat Completions and Responses,
Anthropic Messages, the AI SDK UI message stream and plain SSE.

They all run the same flow: check the key, read
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

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import (
    BadRequest,
    ChatRequest,
    Completion,
    Event,
    NotFound,
    SluicewayError,
    UpstreamUnavailable,
    fold,
)
from ..engine.hub import Hub, decode_event
from ..protocols import ai_sdk_ui, anthropic_messages, openai_responses, plain_sse
from ..protocols import openai_chat as chat
from ..store import Store
from ..store.responses import delete_response, get_response, save_response
from .auth import FREE, admit, authenticate
from .observe import StreamObserver, Taps
from .openai_routes import CLIENT_GONE, JSON, error_response, internal_error
from .requests import deadline_overrides, read_json
from .state import AppState
from .streaming import ClientGone, Encoder, RunSSE, SSEResponse, until_disconnect

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
    tap: Taps  # metrics and the key's grant


async def serve(request: Request, proto: Protocol) -> Response | SSEResponse | RunReplay:
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
    observer = StreamObserver(state.gateway.metrics, proto.name, req.model, t0, headers=request.headers,
                              deployment=opened.deployment.label)
    if proto.run is not None and state.hub is not None:
        taps = Taps(observer, grant)
        try:
            ran = await proto.run(RunStart(request, state, proto, body, req, opened, taps))
        except Exception:  # nothing was handed to the hub: close what was opened here
            log.exception("%s: starting the run failed", proto.name)
            with contextlib.suppress(Exception):
                await opened.aclose()
            taps.end("error")
            return error_response(internal_error(), proto.encode_error)
        if ran is not None:
            return ran
    if proto.complete is None or proto.wants_stream(body):
        return SSEResponse(opened, proto.encoder(request, body, req), keepalive=state.keepalive,
                           headers=list(proto.headers), stall_timeout=state.stall_timeout,
                           tap=Taps.of(observer, grant))
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
            await proto.keep(request, state, body, data)
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


def RunReplay(hub: Hub, run_id: str, encoder: Encoder, *, keepalive: float, stall_timeout: float = 60.0,
              headers: list[tuple[bytes, bytes]] | None = None,
              on_disconnect: Callable[[], Awaitable[Any]] | None = None,
              on_delivered: Callable[[], Awaitable[Any]] | None = None) -> RunSSE:
    """One run's log, from its start, through a fresh protocol encoder: every
    reader gets the protocol's own frames, numbered the same way."""
    return RunSSE(hub, run_id, lambda entries: encoder.feed([decode_event(p) for _, p in entries]),
                  keepalive=keepalive, stall_timeout=stall_timeout, headers=headers,
                  finished=lambda: encoder.done, on_disconnect=on_disconnect, on_delivered=on_delivered)


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

    return RunReplay(hub, run_id, _ui_encoder(run_id), keepalive=rs.state.keepalive, stall_timeout=rs.state.stall_timeout,
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

    return RunReplay(hub, run_id, _ui_encoder(run_id), keepalive=state.keepalive, stall_timeout=state.stall_timeout,
                     headers=list(ai_sdk_ui.HEADERS), on_delivered=delivered)


# ------------------------------------------------ stored and background Responses

def _owner(request: Request) -> str | None:
    """Stored responses belong to the virtual key that made them; other keys get a 404."""
    return getattr(getattr(request.state, "principal", None), "key_id", None)


def _input_items(body: dict[str, Any]) -> list[Any]:
    raw = body.get("input")
    return [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])


async def responses_prepare(request: Request, state: AppState, body: Any) -> Any:
    """``previous_response_id``: the stored input and output items go in front of this input."""
    if not isinstance(body, dict) or not isinstance(body.get("previous_response_id"), str) or "input" not in body:
        return body  # the decoder reports what is wrong
    prev = body["previous_response_id"]
    store, _ = _hub(state)
    row = await get_response(store, prev)
    if row is None or row["owner"] != _owner(request):
        raise NotFound(f"Previous response with id '{prev}' not found.", param="previous_response_id",
                       code="previous_response_not_found")
    items = openai_responses.continued_input(row["input"], row["response"].get("output") or [], body["input"])
    return {**body, "input": items}


class ResponseSaver:
    """The stored Response object of a run: the same encoder as the readers'
    (same ids), fed as the run goes; saved before the run's end is logged,
    so a client that has seen the end can retrieve it."""

    def __init__(self, store: Store, rid: str, created: int, shell: openai_responses.ResponseShell) -> None:
        self.store = store
        self.enc = _responses_encoder(rid, created, shell)

    def batch(self, events: list[Event]) -> None:
        self.enc.feed(events)

    async def end(self, status: str) -> None:
        await save_response(self.store, self.enc.final or self.enc.cancelled())


def _responses_encoder(rid: str, created: int, shell: openai_responses.ResponseShell,
                       skip_through: int = -1) -> openai_responses.Encoder:
    return openai_responses.Encoder(None, None, ids=openai_responses.stable_ids(rid), rid=rid, created=created,
                                    shell=shell, skip_through=skip_through)


async def responses_run(rs: RunStart) -> Any:
    """Background responses, and streamed ones that are stored, run in the
    hub; the rest stream or fold the usual way (returns None)."""
    body, state = rs.body, rs.state
    background = body.get("background") is True
    streamed = body.get("stream") is True
    if not background and not (streamed and body.get("store") is not False):
        return None
    store, hub = _hub(state)
    rid, created = openai_responses.new_id("resp"), int(time.time())
    shell = openai_responses.ResponseShell(body, rs.req)
    first = shell.build(rid, created, "in_progress", [])
    try:
        await save_response(store, first, input=_input_items(body), owner=_owner(rs.request))
    except Exception:
        log.exception("storing response %s failed", rid)
        with contextlib.suppress(Exception):
            await rs.opened.aclose()
        rs.tap.end("error")
        return error_response(internal_error(), openai_responses.encode_error)
    failed = await start_run(rs, rid, ResponseSaver(store, rid, created, shell), meta={"kind": "openai-responses"})
    if failed is not None:
        with contextlib.suppress(Exception):
            await delete_response(store, rid)
        return failed
    if not streamed:
        return Response(orjson.dumps({**first, "status": "queued"}), media_type=JSON)

    async def left() -> None:
        if not background:  # OpenAI: only background responses outlive their stream
            await hub.stop(rid, "disconnect")

    return RunReplay(hub, rid, _responses_encoder(rid, created, shell), keepalive=state.keepalive, stall_timeout=state.stall_timeout,
                     on_disconnect=left)


async def responses_keep(request: Request, state: AppState, body: dict[str, Any], data: bytes) -> None:
    if body.get("store") is not False and state.store is not None:
        await save_response(state.store, orjson.loads(data), input=_input_items(body), owner=_owner(request))


def _starting_after(request: Request) -> int:
    raw = request.query_params.get("starting_after")
    if raw is None:
        return -1
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest("starting_after must be an integer", param="starting_after") from None
    if n < 0:
        raise BadRequest("starting_after must be >= 0", param="starting_after")
    return n


async def _stored(request: Request) -> tuple[Store, Hub, str, dict[str, Any]]:
    await authenticate(request)
    store, hub = _hub(request.app.state.sluiceway)
    rid = request.path_params["response_id"]
    row = await get_response(store, rid)
    if row is None or row["owner"] != _owner(request):
        raise NotFound(f"Response with id '{rid}' not found.", param="response_id", code="response_not_found")
    return store, hub, rid, row


def _responses_errors(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
    async def route(request: Request) -> Any:
        try:
            return await fn(request)
        except SluicewayError as e:
            return error_response(e, openai_responses.encode_error)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(internal_error(), openai_responses.encode_error)
    route.__name__ = fn.__name__
    return route


@_responses_errors
async def response_get(request: Request) -> Any:
    """The stored Response; with ``stream=true`` its events after
    ``starting_after`` (a sequence number), then the live tail."""
    stream = request.query_params.get("stream", "false")
    if stream not in ("true", "false"):
        raise BadRequest("stream must be true or false", param="stream")
    after = _starting_after(request)
    store, hub, rid, row = await _stored(request)
    resp = row["response"]
    if stream == "false":
        return Response(orjson.dumps(resp), media_type=JSON)
    if not await hub.exists(rid):
        raise BadRequest(f"the event stream of response '{rid}' is no longer available (or it was not "
                         "streamed through a run); retrieve it without stream=true", param="stream")
    shell = openai_responses.ResponseShell.from_response(resp)
    enc = _responses_encoder(rid, resp["created_at"], shell, skip_through=after)
    return RunReplay(hub, rid, enc, keepalive=request.app.state.sluiceway.keepalive,
                     stall_timeout=request.app.state.sluiceway.stall_timeout)


@_responses_errors
async def response_input_items(request: Request) -> Response:
    """``GET /v1/responses/{id}/input_items``: the input items the response
    answered (the conversation as expanded through ``previous_response_id``),
    as OpenAI's paged list: ``limit`` (1–100, default 20), ``order`` (``desc``
    by default) and ``after`` (an item id)."""
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise BadRequest("limit must be an integer from 1 to 100", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", param="order")
    _, _, rid, row = await _stored(request)
    items = [item if isinstance(item, dict) and item.get("id") else
             {**(item if isinstance(item, dict) else {"type": "message", "content": item}), "id": f"{rid}_in{i}"}
             for i, item in enumerate(row["input"] or [])]
    if order == "desc":
        items.reverse()
    after = q.get("after")
    if after is not None:
        ids = [it["id"] for it in items]
        if after not in ids:
            raise BadRequest(f"no input item {after!r} in response {rid!r}", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return Response(orjson.dumps({"object": "list", "data": page,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None,
                                  "has_more": len(items) > limit}), media_type=JSON)


@_responses_errors
async def response_delete(request: Request) -> Response:
    store, hub, rid, _ = await _stored(request)
    if rid in hub.runs or await hub.log.is_live(rid):
        await hub.stop(rid, "deleted")  # its answer has nowhere to go
    await delete_response(store, rid)
    return Response(orjson.dumps({"id": rid, "object": "response.deleted", "deleted": True}), media_type=JSON)


@_responses_errors
async def response_cancel(request: Request) -> Response:
    """Stop a background response; it is saved ``cancelled`` with what it had
    streamed. A response that has already ended is returned as it is."""
    store, hub, rid, row = await _stored(request)
    if not row["background"]:
        raise BadRequest("only background responses can be cancelled", param="response_id")
    if await hub.stop(rid, "cancelled"):
        row = await get_response(store, rid) or row
    return Response(orjson.dumps(row["response"]), media_type=JSON)


# ------------------------------------------------------------------ protocols

CHAT = Protocol(
    "openai-chat", chat.decode_request, chat.encode_error,
    lambda request, body, req: chat.Encoder(body, req.model),
    chat.wants_stream,
    lambda c, body, req: chat.encode_completion(c, req.model),
)

RESPONSES = Protocol(
    "openai-responses", openai_responses.decode_request, openai_responses.encode_error,
    lambda request, body, req: openai_responses.Encoder(body, req),
    openai_responses.wants_stream,
    lambda c, body, req: openai_responses.encode_completion(c, body, req),
    prepare=responses_prepare,
    run=responses_run,
    keep=responses_keep,
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


async def chat_completions(request: Request) -> Response | SSEResponse | RunReplay:
    return await serve(request, CHAT)


async def responses(request: Request) -> Response | SSEResponse | RunReplay:
    return await serve(request, RESPONSES)


async def messages(request: Request) -> Response | SSEResponse | RunReplay:
    return await serve(request, MESSAGES)


async def ui_chat(request: Request) -> Response | SSEResponse | RunReplay:
    return await serve(request, UI_CHAT)


async def plain_stream(request: Request) -> Response | SSEResponse | RunReplay:
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
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/responses/{response_id}", response_get, methods=["GET"]),
        Route("/v1/responses/{response_id}", response_delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/cancel", response_cancel, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_items", response_input_items, methods=["GET"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/api/chat", ui_chat, methods=["POST"]),
        Route("/api/chat/{chat_id}/stream", ui_resume, methods=["GET"]),
        Route("/v1/stream", plain_stream, methods=["POST"]),
    ]
