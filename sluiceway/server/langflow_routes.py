"""The seed's Langflow-style run endpoint over a workflow (seed 000):
``POST /api/v1/run/{workflow_id}?stream=true`` streams Langflow's
event-manager events (``add_message``, ``token``, ``end``, ``error``) as
``data: {"event": ..., "data": ...}``; the client leaving cancels the run.
With ``"background": true`` the run answers 202 with an ``events_url`` that an
``EventSource`` can open: it carries a per-run token, so no custom header is
needed. Registered through ``workflow_routes.routes()``.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..engine.workflows import LiveStream, Task, Workflows
from ..engine.workflows.provider import chat_input_name
from .auth import authenticate
from .workflow_routes import (
    Detail,
    EventStream,
    check_allowed,
    detail_errors,
    flag,
    read_body,
    respond,
    workflows_for,
)


class LangflowRun:
    """A workflow run as Langflow's event-manager events, kept so that an
    EventSource can (re)read them from the start and then follow."""

    def __init__(self, wfs: Workflows, task: Task, input_value: str, session_id: str) -> None:
        self.id = uuid.uuid4().hex
        self.token = secrets.token_urlsafe(24)
        self.wfs, self.task, self.input_value, self.session_id = wfs, task, input_value, session_id
        self.events: list[bytes] = []
        self.changed = asyncio.Condition()
        self.finished = False
        self.pump: asyncio.Task[None] = asyncio.create_task(self._run())

    async def _emit(self, event: str, data: Any) -> None:
        async with self.changed:
            self.events.append(b"data: " + orjson.dumps({"event": event, "data": data}) + b"\n\n")
            self.changed.notify_all()

    def _message(self, mid: str, sender: str, name: str, text: str) -> dict[str, Any]:
        return {"id": mid, "flow_id": self.task.workflow_id, "session_id": self.session_id, "sender": sender,
                "sender_name": name, "text": text, "timestamp": _now()}

    async def _run(self) -> None:
        ai = uuid.uuid4().hex
        text: list[str] = []
        try:
            await self._emit("add_message", self._message(uuid.uuid4().hex, "User", "User", self.input_value))
            await self.task.ready.wait()
            if self.task.status == "failed":
                raise RuntimeError(self.task.error or "workflow failed")
            await self._emit("add_message", self._message(ai, "Machine", "AI", ""))
            out = self.task.output
            if isinstance(out, LiveStream):
                try:
                    async for chunk in out:
                        piece = chunk if isinstance(chunk, str) else orjson.dumps(chunk).decode()
                        text.append(piece)
                        await self._emit("token", {"chunk": piece, "id": ai, "timestamp": _now()})
                except BaseException as e:
                    self.wfs.stream_done(self.task, e, "".join(text))
                    raise
                self.wfs.stream_done(self.task, None, "".join(text))
            elif out is not None:
                text.append(out if isinstance(out, str) else orjson.dumps(out).decode())
            full = "".join(text)
            await self._emit("add_message", self._message(ai, "Machine", "AI", full))
            await self._emit("end", {"result": self.result(full)})
        except asyncio.CancelledError:
            await self.wfs.cancel(self.task)
            raise
        except Exception as e:
            await self._emit("error", {"error": str(e), "text": "".join(text)})
        finally:
            async with self.changed:
                self.finished = True
                self.changed.notify_all()

    def result(self, text: str) -> dict[str, Any]:
        return {"session_id": self.session_id,
                "outputs": [{"inputs": {"input_value": self.input_value},
                             "outputs": [{"results": {"message": {"text": text, "sender": "Machine",
                                                                  "sender_name": "AI"}},
                                          "outputs": {"output": self.task.output if not isinstance(
                                              self.task.output, LiveStream) else text}}]}]}

    async def follow(self) -> AsyncIterator[bytes]:
        sent = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(lambda n=sent: len(self.events) > n or self.finished)
                batch, sent = self.events[sent:], len(self.events)
                over = self.finished and sent == len(self.events)
            for data in batch:
                yield data
            if over:
                return

    async def cancel(self) -> None:
        if not self.pump.done():
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _lf_runs(request: Request) -> dict[str, LangflowRun]:
    runs = getattr(request.app.state, "langflow_runs", None)
    if runs is None:
        runs = request.app.state.langflow_runs = {}
    return runs


@detail_errors
async def langflow_run(request: Request) -> Response:
    """Run a workflow, Langflow style; ?stream=true streams add_message/token/end/error events"""
    principal = await authenticate(request)
    body = await read_body(request) if await request.body() else {}
    wfs = workflows_for(request)
    wid = request.path_params["workflow_id"]
    found = wfs.resolve(wid)
    if found is None:
        raise Detail(404, f"Flow identifier {wid} not found")
    check_allowed(principal, found[1].id)
    value = body.get("input_value")
    if value is not None and not isinstance(value, str):
        raise Detail(422, "input_value must be a string")
    inputs = body.get("inputs") if isinstance(body.get("inputs"), dict) else {}
    if value is not None:
        inputs = {chat_input_name(wfs.inputs(found[1], found[0])): value, **inputs}
    session = str(body.get("session_id") or uuid.uuid4().hex)
    task = wfs.start(found[1].id, inputs, session_id=session)
    run = LangflowRun(wfs, task, value or "", session)
    runs = _lf_runs(request)
    runs[run.id] = run
    for old in [k for k, r in runs.items() if r.finished and len(runs) > 256]:
        runs.pop(old, None)
    if flag(body.get("background"), "background", False):
        return respond({"run_id": run.id, "session_id": session,
                      "events_url": f"/api/v1/runs/{run.id}/events?token={run.token}"}, 202)
    if flag(request.query_params.get("stream"), "stream", False):
        return EventStream(run.follow(), on_leave=run.cancel)
    await asyncio.gather(run.pump, return_exceptions=True)
    if task.status == "failed":
        raise Detail(task.error_status, task.error or "failed")  # 400: the input could not be bound
    text = task.output if isinstance(task.output, str) else orjson.dumps(task.output).decode()
    return respond(run.result(text))


@detail_errors
async def langflow_events(request: Request) -> Response:
    """Follow a background Langflow-style run (EventSource: ?token= from the run's events_url)"""
    runs = _lf_runs(request)
    run = runs.get(request.path_params["run_id"])
    token = request.query_params.get("token")
    if token is None or run is None or not hmac.compare_digest(token.encode(), run.token.encode()):
        await authenticate(request)  # without the run's token, an API key is needed
    if run is None:
        raise Detail(404, "Run not found.")
    return EventStream(run.follow())
