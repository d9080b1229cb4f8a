"""The AI SDK UI message stream (``POST /api/chat``, ``useChat``) as a run,
so the SDK can resume a chat's answer (``GET /api/chat/{chatId}/stream``):
the run's log is replayed from the start through a fresh encoder, then its
live tail."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..protocols import ai_sdk_ui
from .errors import run_log_unavailable
from .protocol_routes import Protocol, RunStart, serving, start_run, store_and_runs
from .schemas import GEN_ERRORS, body, errors, ok, ref, s
from .state import AppState
from .streaming import replay
from .table import Op, path

log = logging.getLogger("sluiceway.server")


def _chat_alias(request: Request, chat_id: str) -> str:
    """Chat ids are chosen by clients: scope them by API key, so one key
    cannot resume another's chat."""
    principal = getattr(request.state, "principal", None)
    return f"ai-chat:{getattr(principal, 'key_id', None) or ''}:{chat_id}"


def _encoder(run_id: str) -> ai_sdk_ui.Encoder:
    return ai_sdk_ui.Encoder(ids=lambda prefix: f"{prefix}_{run_id}")  # the same messageId on every replay


async def ui_run(rs: RunStart) -> Any:
    runs = rs.state.runs
    assert runs is not None
    run_id = uuid.uuid4().hex
    chat_id = rs.body.get("id") if isinstance(rs.body.get("id"), str) and rs.body.get("id") else None
    failed = await start_run(rs, run_id, meta={"kind": "ai-sdk-ui", "chat_id": chat_id})
    if failed is not None:
        return failed
    alias = _chat_alias(rs.request, chat_id) if chat_id else None
    if alias is not None:
        try:
            await runs.log.set_alias(alias, run_id)
        except Exception as e:  # the answer still streams; only resuming it is lost
            log.warning("run %s: naming it for chat resume failed: %s", run_id, e)

    async def left() -> None:
        if runs.disconnect == "cancel":
            if alias is not None:
                await runs.log.drop_alias(alias, run_id)  # stopped on purpose: nothing to resume
            await runs.stop(run_id, "disconnect")

    async def delivered() -> None:
        if alias is not None:  # the client has it all: a later resume gets 204
            await runs.log.drop_alias(alias, run_id)

    return replay(runs, run_id, _encoder(run_id), keepalive=rs.state.keepalive, stall_timeout=rs.state.stall_timeout,
                  headers=list(ai_sdk_ui.HEADERS), on_disconnect=left, on_delivered=delivered)


async def ui_resume(request: Request) -> Any:
    """``GET /api/chat/{chatId}/stream``: the chat's run that its client has
    not had in full (it is live, or ended while nobody was reading), replayed
    from the start, then its live tail; 204 when there is none."""
    state: AppState = request.app.state.sluiceway
    _, runs = store_and_runs(state)
    alias = _chat_alias(request, request.path_params["chat_id"])
    try:
        run_id = await runs.log.get_alias(alias)
        if run_id is None or not await runs.exists(run_id):
            return Response(status_code=204)
    except Exception as e:
        log.exception("resuming a chat failed")
        raise run_log_unavailable() from e

    async def delivered() -> None:
        await runs.log.drop_alias(alias, run_id)

    return replay(runs, run_id, _encoder(run_id), keepalive=state.keepalive, stall_timeout=state.stall_timeout,
                  headers=list(ai_sdk_ui.HEADERS), on_delivered=delivered)


UI_CHAT = Protocol(
    "ai-sdk-ui", ai_sdk_ui.decode_request, ai_sdk_ui.encode_error,
    lambda request, body, req: ai_sdk_ui.Encoder(body, req),
    headers=tuple(ai_sdk_ui.HEADERS),
    run=ui_run,
)


def ops() -> list[Op]:
    return [
        Op("POST", "/api/chat", serving(UI_CHAT), "AI SDK UI message stream (useChat)", "ui", "uiChat",
           {"200": ok(stream=True), **errors("UIError", *GEN_ERRORS)}, body=body(ref("UIChatRequest")),
           errors=ai_sdk_ui.encode_error, auth=False),
        Op("GET", "/api/chat/{chat_id}/stream", ui_resume,
           "Resume a chat's answer (the AI SDK's resumeStream): replay, then the live tail", "ui", "uiChatResume",
           {"200": ok(stream=True), "204": {"description": "Nothing to resume"}, **errors("UIError", 401, 503)},
           (path("chat_id", s(minLength=1, maxLength=200), "The chat id (useChat's id)"),),
           errors=ai_sdk_ui.encode_error),
    ]
