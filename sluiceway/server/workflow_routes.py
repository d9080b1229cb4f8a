"""Workflows over HTTP: model-compose's API (same paths, bodies, status codes
and ``{"detail": ...}`` errors) and the seed's Langflow-style run endpoint.

- ``POST /api/workflows/runs``, ``GET /api/workflows[?include_schema=true]``,
  ``GET /api/workflows/{id}/schema``, ``GET /api/tasks/{task_id}``: a streamed
  output is ``text/event-stream`` with one ``data:`` line per line of each
  chunk, as model-compose sends it. Where model-compose drops a mid-stream
  failure silently, sluiceway ends the stream with ``event: error``.
- ``POST /api/v1/run/{workflow_id}?stream=true``: Langflow's event-manager
  events (``add_message``, ``token``, ``end``, ``error``) as
  ``data: {"event": ..., "data": ...}``; the client leaving cancels the run.
  With ``"background": true`` the run answers 202 with an ``events_url``
  that an ``EventSource`` can open: it carries a per-run token, so no custom
  header is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import SluicewayError
from ..engine.workflows import LiveStream, Task, Workflows
from ..engine.workflows.provider import chat_input_name, workflows_of
from .auth import authenticate

JSON = "application/json"
MAX_BODY = 16 * 1024 * 1024


class Detail(Exception):
    """An error answered as FastAPI does: ``{"detail": message}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), status, media_type=JSON)


def _handler(fn):
    async def route(request: Request) -> Any:
        try:
            return await fn(request)
        except Detail as e:
            return _json({"detail": e.detail}, e.status)
        except SluicewayError as e:  # authentication, mostly
            return _json({"detail": e.message}, e.status)

    route.__name__ = fn.__name__
    route.__doc__ = fn.__doc__
    return route


def _workflows(request: Request) -> Workflows:
    wf = workflows_of(request.app.state.sluiceway.gateway)
    if wf is None:
        return Workflows([])  # none loaded: every lookup is a 404, the list is empty
    return wf


async def _body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON:
        raise Detail(400, "Missing or empty Content-Type header." if not ctype else f"Unsupported Content-Type: {ctype}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Detail(413, "Request body too large.")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as e:
        raise Detail(400, f"Invalid request body: {e}") from None
    if not isinstance(body, dict):
        raise Detail(400, "Invalid request body: expected a JSON object")
    return body


def _flag(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise Detail(400, f"Invalid request body: {name} must be a boolean")


# ------------------------------------------------------------ model-compose

@_handler
async def list_workflows(request: Request) -> Response:
    """List loaded workflows (with their input/output schema when include_schema=true)"""
    await authenticate(request)
    wfs = _workflows(request)
    if _flag(request.query_params.get("include_schema"), "include_schema", False):
        return _json([wfs.schema(wf, c) for c, wf in wfs.list()])
    return _json([{"workflow_id": wf.id, **({"title": wf.title} if wf.title else {}),
                   **({"default": True} if wf.default else {})} for _, wf in wfs.list()])


@_handler
async def workflow_schema(request: Request) -> Response:
    """One workflow's input/output schema"""
    await authenticate(request)
    wfs = _workflows(request)
    found = wfs.by_id.get(request.path_params["workflow_id"])
    if found is None:
        raise Detail(404, "Workflow not found.")
    return _json(wfs.schema(found[1], found[0]))


@_handler
async def run_workflow(request: Request) -> Response:
    """Run a workflow (model-compose's POST /api/workflows/runs)"""
    await authenticate(request)
    body = await _body(request)
    wait = _flag(body.get("wait_for_completion"), "wait_for_completion", True)
    output_only = _flag(body.get("output_only"), "output_only", False)
    wfs = _workflows(request)
    wid = body.get("workflow_id")
    if wid is not None and not isinstance(wid, str):
        raise Detail(400, "Invalid request body: workflow_id must be a string")
    if wfs.resolve(wid) is None:
        raise Detail(404, f"Workflow '{wid or '__default__'}' not found.")
    if output_only and not wait:
        raise Detail(400, "output_only=true requires wait_for_completion=true.")
    task = wfs.start(wid, body.get("input"), session_id=body.get("session_id"), metadata=body.get("metadata"),
                     collect=not wait)
    if not wait:
        return _json(task.state())
    await task.ready.wait()
    return await _render(wfs, task, output_only, allow_streaming=True)


@_handler
async def get_task(request: Request) -> Response:
    """A task's state, or its output with output_only=true (202 while it runs)"""
    await authenticate(request)
    wfs = _workflows(request)
    task = wfs.tasks.get(request.path_params["task_id"])
    if task is None:
        raise Detail(404, "Task not found.")
    return await _render(wfs, task, _flag(request.query_params.get("output_only"), "output_only", False))


async def _render(wfs: Workflows, task: Task, output_only: bool, allow_streaming: bool = False) -> Response:
    if task.streaming and task.status == "processing":
        if not output_only:
            if allow_streaming:  # nobody may read it: stop the upstream now
                await wfs.cancel(task)
            raise Detail(400, 'Streaming output requires output_only=true. Retry with {"output_only": true} in the request body.')
        if not allow_streaming or task.output.taken:
            return _json(task.state(), 202)
        return EventStream(_mc_stream(wfs, task), on_leave=lambda: wfs.cancel(task))
    if not output_only:
        return _json(task.state())
    if task.status in ("pending", "processing"):
        return _json(task.state(), 202)
    if task.status == "cancelled":
        return _json(task.state(), 409)
    if task.status == "failed":
        raise Detail(task.error_status, task.error or "failed")  # 400: the input could not be bound
    out = task.output
    if isinstance(out, bytes):
        return Response(out, media_type="application/octet-stream")
    return _json(out)


def sse_data(chunk: Any, fmt: str | None) -> bytes:
    """One chunk as model-compose frames it: each line of it a ``data:`` line."""
    if fmt == "json" or (fmt is None and not isinstance(chunk, str | bytes)):
        # model-compose encodes with json.dumps (", " and ": " separators, UTF-8 kept)
        raw = json.dumps(chunk, ensure_ascii=False, default=str).encode()
    elif isinstance(chunk, bytes):
        raw = chunk
    else:
        raw = (chunk if isinstance(chunk, str) else str(chunk)).encode()
    return b"".join(b"data: " + line + b"\n" for line in raw.split(b"\n")) + b"\n"


async def _mc_stream(wfs: Workflows, task: Task) -> AsyncIterator[bytes]:
    out: LiveStream = task.output
    collected: list[Any] = []
    try:
        async for chunk in out:
            collected.append(chunk)
            yield sse_data(chunk, out.format)
    except asyncio.CancelledError:
        wfs.stream_done(task, asyncio.CancelledError(), _joined(collected))
        raise
    except Exception as e:  # model-compose drops this silently; say it in the stream
        wfs.stream_done(task, e, _joined(collected))
        yield b"event: error\ndata: " + orjson.dumps({"detail": str(e)}) + b"\n\n"
        return
    wfs.stream_done(task, None, _joined(collected))


def _joined(chunks: list[Any]) -> Any:
    return "".join(chunks) if all(isinstance(c, str) for c in chunks) else chunks


class EventStream:
    """Pure-ASGI SSE: sends what ``chunks`` yields, and cancels it the moment
    the client disconnects (a stalled upstream must not outlive its reader)."""

    def __init__(self, chunks: AsyncIterator[bytes], on_leave: Any = None) -> None:
        self.chunks, self.on_leave = chunks, on_leave

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})

        async def pump() -> None:
            async for data in self.chunks:
                await send({"type": "http.response.body", "body": data, "more_body": True})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping, watching = asyncio.ensure_future(pump()), asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pumping.done():
                pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pumping
                if self.on_leave is not None:
                    await self.on_leave()
            watching.cancel()
        if pumping in done and not pumping.cancelled():
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


# ------------------------------------------------------------- Langflow run

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


@_handler
async def langflow_run(request: Request) -> Response:
    """Run a workflow, Langflow style; ?stream=true streams add_message/token/end/error events"""
    await authenticate(request)
    body = await _body(request) if await request.body() else {}
    wfs = _workflows(request)
    wid = request.path_params["workflow_id"]
    found = wfs.resolve(wid)
    if found is None:
        raise Detail(404, f"Flow identifier {wid} not found")
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
    if _flag(body.get("background"), "background", False):
        return _json({"run_id": run.id, "session_id": session,
                      "events_url": f"/api/v1/runs/{run.id}/events?token={run.token}"}, 202)
    if _flag(request.query_params.get("stream"), "stream", False):
        return EventStream(run.follow(), on_leave=run.cancel)
    await asyncio.gather(run.pump, return_exceptions=True)
    if task.status == "failed":
        raise Detail(task.error_status, task.error or "failed")  # 400: the input could not be bound
    text = task.output if isinstance(task.output, str) else orjson.dumps(task.output).decode()
    return _json(run.result(text))


@_handler
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


def routes() -> list[Route]:
    return [
        Route("/api/workflows", list_workflows, methods=["GET"]),
        Route("/api/workflows/runs", run_workflow, methods=["POST"]),
        Route("/api/workflows/{workflow_id}/schema", workflow_schema, methods=["GET"]),
        Route("/api/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/api/v1/run/{workflow_id:path}", langflow_run, methods=["POST"]),
        Route("/api/v1/runs/{run_id}/events", langflow_events, methods=["GET"]),
    ]
