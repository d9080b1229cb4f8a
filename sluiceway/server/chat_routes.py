"""The session chat (``POST /chat``, ``POST /chat/stream``): chats that are
stored and answers that are runs.

The user message (and a ``streaming`` assistant placeholder) is committed
before the answer is read (a new session's model call is sent while it
commits); a turn may instead, or first, answer the tool
calls the last answer ended with (``tool_results``: a client's tools, which
the server cannot run), stored as a ``tool`` message; the generation is a
run (``engine.runs``),
saved by the recorder when it ends, however it ends. ``/chat/stream``
speaks the session-chat protocol (``protocols.session_chat``); the run,
session and message ids are also in the ``x-run-id`` / ``x-session-id`` /
``x-message-id`` headers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import BadRequest, ChatRequest, Message, NotFound, SluicewayError, WireTrace
from ..engine.runs import Recorder
from ..protocols import session_chat
from .auth import admit, owner, row_owner
from .errors import error_response, json_response, run_log_unavailable
from .protocol_routes import store_and_runs
from .requests import deadline_overrides, read_json
from .schemas import body, ok, openai_err, ref, s
from .state import AppState
from .streaming import ClientGone, RunSSE, until_disconnect
from .table import Op, query

log = logging.getLogger("sluiceway.chat")


@dataclass(slots=True)
class Started:
    run_id: str
    session: dict[str, Any]
    user: dict[str, Any] | None
    assistant: dict[str, Any]
    tool: dict[str, Any] | None = None

    def ids(self) -> dict[str, str]:
        out = {"run_id": self.run_id, "session_id": self.session["id"], "message_id": self.assistant["id"]}
        if self.user is not None:
            out["user_message_id"] = self.user["id"]
        if self.tool is not None:
            out["tool_message_id"] = self.tool["id"]
        return out

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-run-id", self.run_id.encode()), (b"x-session-id", self.session["id"].encode()),
                (b"x-message-id", self.assistant["id"].encode())]


async def start_chat(request: Request) -> Started:
    """Validate, commit the user turn, launch the run. Nothing is written
    when the input is bad, the session unknown or the model unknown."""
    state: AppState = request.app.state.sluiceway
    store, runs = store_and_runs(state)
    body_ = await read_json(request, state.config.server.max_body_bytes)
    inp = session_chat.decode_request(body_, state.config.store.max_message_chars)
    overrides = deadline_overrides(request)  # x-sluiceway-*-timeout, as on /v1 (a bad one is a 400 here)
    mine = owner(request)
    session = None
    if inp.session_id is not None:
        session = await store.get_session(inp.session_id, owner=mine)  # another key's session: 404
        if session is None:
            raise NotFound(f"session {inp.session_id!r} does not exist", code="session_not_found",
                           param="session_id")
    tool_parts = None
    if inp.tool_results:  # answers to the last answer's calls: checked against the stored session
        if session is None:
            raise BadRequest("'tool_results' answer a stored session's tool calls: 'session_id' is required",
                             param="session_id")
        tool_parts = session_chat.tool_result_parts(inp.tool_results, await store.list_messages(session["id"]))
    model = inp.model or (session or {}).get("model") or "default"
    state.gateway.router.resolve(model)  # unknown model → 404 before anything is written
    grant = await admit(request, model)  # the key's allow-list and limits, also before any write
    system = inp.system or (session or {}).get("system")
    router = state.gateway.router
    user_parts = session_chat.user_parts(inp)
    prefix = [Message.of("system", system)] if system else []
    traced = state.config.store.traces

    def request_for(rows: list[dict[str, Any]]) -> ChatRequest:
        req = ChatRequest(model=model, messages=prefix + session_chat.history_messages(rows), **inp.params)
        if traced:
            req.wire = WireTrace()  # before the request goes out, so that the trace records it
        return req

    early: asyncio.Future[Any] | None = None
    if session is None and tool_parts is None and user_parts is not None:
        # A new session has no history, so the model call need not wait for the turn's commit:
        # the upstream's round trip overlaps the local write. Nothing reaches the client (or the
        # store's answer) before the commit: the run, which reads the stream, starts after it.
        req = request_for([{"role": "user", "text": inp.message or "", "parts": user_parts}])
        early = asyncio.ensure_future(router.open(req, overrides))
    try:
        turn = await grant.guard(store.begin_turn(inp.session_id, inp.message, model=model, system=system,
                                                  owner=mine, user_parts=user_parts, tool_parts=tool_parts))
    except BaseException:
        if early is not None:
            await _discard(early)
        raise
    if early is None:
        req = request_for([*turn.history, *turn.inputs])
    rec = Recorder(store, turn.assistant["id"], req, checkpoint_interval=state.config.store.checkpoint_interval,
                   trace=traced)

    async def open_() -> Any:
        rec.opened = await (early if early is not None else router.open(req, overrides))
        return rec.opened

    started = Started(turn.assistant["id"], turn.session, turn.user, turn.assistant, turn.tool)
    rec.log_json = lambda: runs.log.json(started.run_id)  # the trace shares the readers' encoding
    try:
        await runs.start(started.run_id, open_, grant.observers(rec), meta={**started.ids(), "owner": row_owner(mine)})
    except Exception as e:  # e.g. Redis down: do not leave the placeholder streaming
        log.exception("starting run %s failed", started.run_id)
        if early is not None:
            await _discard(early)
        grant.release()  # the run never started: free its stream slot
        err = run_log_unavailable()
        await store.finish_message(started.run_id, status="error", parts=[],
                                   error={"code": err.code, "message": err.message, "status": err.status})
        raise err from e
    return started


async def _discard(opening: asyncio.Future[Any]) -> None:
    """An upstream opened ahead of a turn that was not stored: close it, or stop opening it."""
    opening.cancel()
    try:
        opened = await opening
    except BaseException:  # cancelled or failed: nothing is open
        return
    await opened.aclose()


async def chat_stream(request: Request) -> Any:
    state: AppState = request.app.state.sluiceway
    fmt = session_chat.check_format(request.query_params.get("format"))  # before anything is written
    started = await start_chat(request)
    runs = state.runs
    assert runs is not None

    async def left() -> None:
        if runs.disconnect == "cancel":
            await runs.stop(started.run_id, "disconnect")

    if fmt == "content":  # seed 001's page: data: {"content": …} frames only
        return RunSSE(runs, started.run_id, session_chat.encode_content, keepalive=state.keepalive,
                      stall_timeout=state.stall_timeout, headers=started.headers(), on_disconnect=left)
    return RunSSE(runs, started.run_id, session_chat.encode_entries, json=True, first=session_chat.run_frame(started.ids()),
                  keepalive=state.keepalive, stall_timeout=state.stall_timeout, headers=started.headers(),
                  on_disconnect=left)


async def chat(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    started = await start_chat(request)
    store, runs = store_and_runs(state)
    try:
        await until_disconnect(request.receive, runs.wait(started.run_id))
    except ClientGone:
        if runs.disconnect == "cancel":
            await runs.stop(started.run_id, "disconnect")
        return Response(status_code=499)
    msg = await store.get_message(started.assistant["id"])
    assert msg is not None
    headers = {k.decode(): v.decode() for k, v in started.headers()}
    if msg["status"] == "error" and not msg["parts"]:
        err = msg["error"] or {}
        e = SluicewayError(err.get("message", "generation failed"), status=err.get("status", 502),
                           code=err.get("code"))
        failed = error_response(e)
        return json_response({**orjson.loads(failed.body), **started.ids(), "message": msg}, failed.status_code,
                             headers)
    # content and raw_response: the fields a non-streaming chat page reads (seed 001); raw_response is
    # the upstream's reply as received (from the debug trace; null when store.traces is off)
    trace = await store.get_trace(started.assistant["id"]) if state.config.store.traces else None
    wire = ((trace or {}).get("request") or {}).get("wire") or {}
    return json_response({**started.ids(), "session": started.session, "user_message": started.user,
                          "tool_message": started.tool, "message": msg, "content": msg["text"],
                          "raw_response": wire.get("response")},
                         200, headers)


def ops() -> list[Op]:
    return [
        Op("POST", "/chat", chat, "Session chat: store the turn, run the model, return the saved answer",
           "sessions", "chat", {"200": ok(ref("SessionChatResult")), **openai_err},
           body=body(ref("SessionChatRequest"))),
        Op("POST", "/chat/stream", chat_stream, "Session chat as a resumable SSE run (ids for Last-Event-ID); "
           "format=content: only data: {\"content\": …} frames", "sessions", "chatStream",
           {"200": ok(stream=True), **openai_err}, (query("format", s(enum=list(session_chat.FORMATS))),),
           body=body(ref("SessionChatRequest"))),
    ]
