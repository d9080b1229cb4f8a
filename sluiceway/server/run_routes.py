"""The runs API: a run's state, reattaching to its events
(``Last-Event-ID`` or ``?after=n``), stopping it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..core import BadRequest, NotFound
from ..engine.runs import Runs
from ..protocols import session_chat
from ..store import owns
from .auth import owner
from .errors import json_response
from .protocol_routes import store_and_runs
from .schemas import errors, i, ok, s
from .state import AppState
from .streaming import RunSSE
from .table import Op, Param, path, query


def _after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest(f"Last-Event-ID / after must be an integer, not {raw[:40]!r}", param="after") from None
    if n < 0:
        raise BadRequest("Last-Event-ID / after must be >= 0", param="after")
    return n


async def _meta_or_404(request: Request, runs: Runs, run_id: str) -> dict[str, Any] | None:
    """A run's meta if the caller may see it (a run belongs to the key that started it); None when
    no run log exists. Another key's run is a 404, as a missing one."""
    meta = await runs.log.meta(run_id)
    if meta is not None and not owns(owner(request), meta.get("owner")):
        raise NotFound(f"run {run_id!r} not found", code="run_not_found")
    return meta


async def run_stream(request: Request) -> Any:
    state: AppState = request.app.state.sluiceway
    _, runs = store_and_runs(state)
    run_id = request.path_params["run_id"]
    after = _after(request)
    if await _meta_or_404(request, runs, run_id) is None and run_id not in runs.active:
        raise NotFound(f"run {run_id!r} is not active and its log has expired; "
                       "read the stored message instead", code="run_not_found")
    return RunSSE(runs, run_id, session_chat.encode_entries, json=True, after=after, keepalive=state.keepalive,
                  stall_timeout=state.stall_timeout, headers=[(b"x-run-id", run_id.encode())])


async def run_info(request: Request) -> Response:
    _, runs = store_and_runs(request.app.state.sluiceway)
    run_id = request.path_params["run_id"]
    meta = await _meta_or_404(request, runs, run_id)
    if meta is None:
        raise NotFound(f"run {run_id!r} not found", code="run_not_found")
    return json_response({"id": run_id, "live": await runs.log.is_live(run_id), **meta})


async def run_stop(request: Request) -> Response:
    store, runs = store_and_runs(request.app.state.sluiceway)
    run_id = request.path_params["run_id"]
    mine = owner(request)
    meta = await _meta_or_404(request, runs, run_id)
    if meta is None and await store.get_message(run_id, owner=mine) is None:
        raise NotFound(f"run {run_id!r} not found", code="run_not_found")  # no run, or not the caller's
    if not await runs.stop(run_id, "stopped"):
        return json_response({"id": run_id, "stopped": False, "reason": "the run had already ended",
                              "message": await store.get_message(run_id, owner=mine)})
    return json_response({"id": run_id, "stopped": True, "message": await store.get_message(run_id, owner=mine)})


def ops() -> list[Op]:
    run = path("run_id", description="Run id (the assistant message id)")
    return [
        Op("GET", "/runs/{run_id}", run_info, "A run's state", "runs", "runInfo",
           {"200": ok({"type": "object"}), **errors("OpenAIError", 401, 404)}, (run,)),
        Op("GET", "/runs/{run_id}/stream", run_stream, "Reattach to a run's events after an event id", "runs",
           "runStream", {"200": ok(stream=True), **errors("OpenAIError", 400, 401, 404)},
           (run, query("after", i(minimum=0), "Events after this id"),
            Param("Last-Event-ID", "header", s(pattern="^[0-9]{1,9}$")))),
        Op("POST", "/runs/{run_id}/stop", run_stop, "Stop a run (its partial answer is kept)", "runs", "runStop",
           {"200": ok({"type": "object"}), **errors("OpenAIError", 401, 404)}, (run,)),
    ]
