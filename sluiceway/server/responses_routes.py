"""OpenAI Responses: ``POST /v1/responses`` (through the generic protocol
flow) and the stored-Responses API — retrieve (and reattach to its stream
with ``starting_after``), input items, delete, cancel.

Background responses, and streamed ones that are stored, are runs: the
stored object is a run observer (``engine.runs.StoredResponse``) saved
before the run's end is logged, and readers replay the run's log through a
fresh encoder with the same ids."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import BadRequest, NotFound
from ..engine.runs import Runs, StoredResponse
from ..protocols import openai_responses as oai
from ..store import Store
from ..store.responses import delete_response, get_response, save_response
from .errors import error_response, internal_error, json_response
from .protocol_routes import Protocol, RunStart, serving, start_run, store_and_runs
from .schemas import BOOL, RESP_ID, body, errors, i, obj, ok, openai_err, ref, s
from .state import AppState
from .streaming import replay
from .table import IntQuery, Op, path, query

log = logging.getLogger("sluiceway.server")

INPUT_LIMIT = IntQuery("limit", 1, 100, 20, "Items per page")


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
    store, _ = store_and_runs(state)
    row = await get_response(store, prev)
    if row is None or row["owner"] != _owner(request):
        raise NotFound(f"Previous response with id '{prev}' not found.", param="previous_response_id",
                       code="previous_response_not_found")
    items = oai.continued_input(row["input"], row["response"].get("output") or [], body["input"])
    return {**body, "input": items}


def _encoder(rid: str, created: int, shell: oai.ResponseShell, skip_through: int = -1) -> oai.Encoder:
    return oai.Encoder(None, None, ids=oai.stable_ids(rid), rid=rid, created=created, shell=shell,
                       skip_through=skip_through)


async def responses_run(rs: RunStart) -> Any:
    """Background responses, and streamed ones that are stored, run in the
    runs service; the rest stream or fold the usual way (returns None)."""
    body, state = rs.body, rs.state
    background = body.get("background") is True
    streamed = body.get("stream") is True
    if not background and not (streamed and body.get("store") is not False):
        return None
    store, runs = store_and_runs(state)
    rid, created = oai.new_id("resp"), int(time.time())
    shell = oai.ResponseShell(body, rs.req)
    first = shell.build(rid, created, "in_progress", [])
    try:
        await save_response(store, first, input=_input_items(body), owner=_owner(rs.request))
    except Exception:
        log.exception("storing response %s failed", rid)
        await rs.abandon()
        return error_response(internal_error(), oai.encode_error)
    saver = StoredResponse(store, oai.ResponseFold(shell, ids=oai.stable_ids(rid), rid=rid, created=created))
    failed = await start_run(rs, rid, [saver], meta={"kind": "openai-responses"})
    if failed is not None:
        try:
            await delete_response(store, rid)
        except Exception:
            log.exception("removing response %s after a failed start", rid)
        return failed
    if not streamed:
        return json_response({**first, "status": "queued"})

    async def left() -> None:
        if not background:  # OpenAI: only background responses outlive their stream
            await runs.stop(rid, "disconnect")

    return replay(runs, rid, _encoder(rid, created, shell), keepalive=state.keepalive,
                  stall_timeout=state.stall_timeout, on_disconnect=left)


async def responses_keep(request: Request, state: AppState, body: dict[str, Any], data: bytes) -> None:
    if body.get("store") is not False and state.store is not None:
        await save_response(state.store, orjson.loads(data), input=_input_items(body), owner=_owner(request))


RESPONSES = Protocol(
    "openai-responses", oai.decode_request, oai.encode_error,
    lambda request, body, req: oai.Encoder(body, req),
    oai.wants_stream,
    lambda c, body, req: oai.encode_completion(c, body, req),
    prepare=responses_prepare,
    run=responses_run,
    keep=responses_keep,
)


# ------------------------------------------------------------ stored Responses
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


async def _stored(request: Request) -> tuple[Store, Runs, str, dict[str, Any]]:
    store, runs = store_and_runs(request.app.state.sluiceway)
    rid = request.path_params["response_id"]
    row = await get_response(store, rid)
    if row is None or row["owner"] != _owner(request):
        raise NotFound(f"Response with id '{rid}' not found.", param="response_id", code="response_not_found")
    return store, runs, rid, row


async def response_get(request: Request) -> Any:
    """The stored Response; with ``stream=true`` its events after
    ``starting_after`` (a sequence number), then the live tail."""
    stream = request.query_params.get("stream", "false")
    if stream not in ("true", "false"):
        raise BadRequest("stream must be true or false", param="stream")
    after = _starting_after(request)
    store, runs, rid, row = await _stored(request)
    resp = row["response"]
    if stream == "false":
        return json_response(resp)
    if not await runs.exists(rid):
        raise BadRequest(f"the event stream of response '{rid}' is no longer available (or it was not "
                         "streamed through a run); retrieve it without stream=true", param="stream")
    state: AppState = request.app.state.sluiceway
    enc = _encoder(rid, resp["created_at"], oai.ResponseShell.from_response(resp), skip_through=after)
    return replay(runs, rid, enc, keepalive=state.keepalive, stall_timeout=state.stall_timeout)


async def response_input_items(request: Request) -> Response:
    """``GET /v1/responses/{id}/input_items``: the input items the response
    answered (the conversation as expanded through ``previous_response_id``),
    as OpenAI's paged list: ``limit``, ``order`` (``desc`` by default) and
    ``after`` (an item id)."""
    q = request.query_params
    try:
        limit = int(q.get("limit", str(INPUT_LIMIT.default)))
    except ValueError:
        limit = INPUT_LIMIT.lo - 1
    if not INPUT_LIMIT.lo <= limit <= INPUT_LIMIT.hi:
        raise BadRequest(f"limit must be an integer from {INPUT_LIMIT.lo} to {INPUT_LIMIT.hi}", param="limit")
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
    return json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


async def response_delete(request: Request) -> Response:
    store, runs, rid, _ = await _stored(request)
    if await runs.is_running(rid):
        await runs.stop(rid, "deleted")  # its answer has nowhere to go
    await delete_response(store, rid)
    return json_response({"id": rid, "object": "response.deleted", "deleted": True})


async def response_cancel(request: Request) -> Response:
    """Stop a background response; it is saved ``cancelled`` with what it had
    streamed. A response that has already ended is returned as it is."""
    store, runs, rid, row = await _stored(request)
    if not row["background"]:
        raise BadRequest("only background responses can be cancelled", param="response_id")
    if await runs.stop(rid, "cancelled"):
        row = await get_response(store, rid) or row
    return json_response(row["response"])


def ops() -> list[Op]:
    rid = path("response_id", RESP_ID)
    err = oai.encode_error
    return [
        Op("POST", "/v1/responses", serving(RESPONSES), "OpenAI Responses (streams when `stream` is true)",
           "openai", "responses", {"200": ok({"type": "object"}, stream=True), **openai_err},
           body=body(ref("ResponsesRequest")), errors=err, auth=False),
        Op("GET", "/v1/responses/{response_id}", response_get,
           "A stored Response; with stream=true its events after starting_after, then the live tail", "openai",
           "getResponse", {"200": ok({"type": "object"}, stream=True), **errors("OpenAIError", 400, 401, 404)},
           (rid, query("stream", s(enum=["true", "false"])), query("starting_after", i(minimum=0),
                                                                   "A sequence number")), errors=err),
        Op("DELETE", "/v1/responses/{response_id}", response_delete,
           "Delete a stored Response (stopping it if it runs)", "openai", "deleteResponse",
           {"200": ok(obj({"id": s(), "object": {"const": "response.deleted"}, "deleted": BOOL})),
            **errors("OpenAIError", 401, 404)}, (rid,), errors=err),
        Op("POST", "/v1/responses/{response_id}/cancel", response_cancel,
           "Cancel a background Response (saved cancelled with what it had streamed)", "openai", "cancelResponse",
           {"200": ok({"type": "object"}), **errors("OpenAIError", 400, 401, 404)}, (rid,), errors=err),
        Op("GET", "/v1/responses/{response_id}/input_items", response_input_items,
           "The input items a stored Response answered, as a paged list", "openai", "listResponseInputItems",
           {"200": ok(obj({"object": {"const": "list"}, "data": {"type": "array"}, "first_id": s(),
                           "last_id": s(), "has_more": BOOL})), **errors("OpenAIError", 400, 401, 404)},
           (rid, INPUT_LIMIT, query("order", s(enum=["asc", "desc"])), query("after", s(), "An item id")),
           errors=err),
    ]
