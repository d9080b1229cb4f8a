"""Workflows over HTTP: model-compose's API (same paths, bodies, status codes
and ``{"detail": ...}`` errors) and the seed's Langflow-style run endpoint.

- ``POST /api/workflows/runs``, ``GET /api/workflows[?include_schema=true]``,
  ``GET /api/workflows/{id}/schema``, ``GET /api/tasks/{task_id}``: a streamed
  output is ``text/event-stream`` with one ``data:`` line per line of each
  chunk, as model-compose sends it. Where model-compose drops a mid-stream
  failure silently, sluiceway ends the stream with ``event: error``.
- ``POST /api/v1/run/{workflow_id}?stream=true`` and its EventSource
  follow-up: the seed's Langflow-style endpoint (``langflow_routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import SluicewayError
from ..engine.workflows import LiveStream, Task, Workflows
from ..engine.workflows.provider import workflows_of
from .auth import authenticate

JSON = "application/json"
MAX_BODY = 16 * 1024 * 1024


class Detail(Exception):
    """An error answered as FastAPI does: ``{"detail": message}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def respond(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), status, media_type=JSON)


def detail_errors(fn):
    async def route(request: Request) -> Any:
        try:
            return await fn(request)
        except Detail as e:
            return respond({"detail": e.detail}, e.status)
        except SluicewayError as e:  # authentication, mostly
            return respond({"detail": e.message}, e.status)

    route.__name__ = fn.__name__
    route.__doc__ = fn.__doc__
    return route


def check_allowed(principal: object, workflow_id: str) -> None:
    """A virtual key limited to some models runs only the workflows among them (``workflow/<id>``)."""
    allows = getattr(principal, "allows", None)
    if allows is not None and not allows(f"workflow/{workflow_id}"):
        raise Detail(403, f"This API key may not use workflow/{workflow_id}.")


def workflows_for(request: Request) -> Workflows:
    wf = workflows_of(request.app.state.sluiceway.gateway)
    if wf is None:
        return Workflows([])  # none loaded: every lookup is a 404, the list is empty
    return wf


async def read_body(request: Request) -> dict[str, Any]:
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


def flag(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise Detail(400, f"Invalid request body: {name} must be a boolean")


# ------------------------------------------------------------ model-compose

@detail_errors
async def list_workflows(request: Request) -> Response:
    """List loaded workflows (with their input/output schema when include_schema=true)"""
    await authenticate(request)
    wfs = workflows_for(request)
    if flag(request.query_params.get("include_schema"), "include_schema", False):
        return respond([wfs.schema(wf, c) for c, wf in wfs.list()])
    return respond([{"workflow_id": wf.id, **({"title": wf.title} if wf.title else {}),
                   **({"default": True} if wf.default else {})} for _, wf in wfs.list()])


@detail_errors
async def workflow_schema(request: Request) -> Response:
    """One workflow's input/output schema"""
    await authenticate(request)
    wfs = workflows_for(request)
    found = wfs.by_id.get(request.path_params["workflow_id"])
    if found is None:
        raise Detail(404, "Workflow not found.")
    return respond(wfs.schema(found[1], found[0]))


@detail_errors
async def run_workflow(request: Request) -> Response:
    """Run a workflow (model-compose's POST /api/workflows/runs)"""
    principal = await authenticate(request)
    body = await read_body(request)
    wait = flag(body.get("wait_for_completion"), "wait_for_completion", True)
    output_only = flag(body.get("output_only"), "output_only", False)
    wfs = workflows_for(request)
    wid = body.get("workflow_id")
    if wid is not None and not isinstance(wid, str):
        raise Detail(400, "Invalid request body: workflow_id must be a string")
    found = wfs.resolve(wid)
    if found is None:
        raise Detail(404, f"Workflow '{wid or '__default__'}' not found.")
    check_allowed(principal, found[1].id)
    if output_only and not wait:
        raise Detail(400, "output_only=true requires wait_for_completion=true.")
    task = wfs.start(wid, body.get("input"), session_id=body.get("session_id"), metadata=body.get("metadata"),
                     collect=not wait)
    if not wait:
        return respond(task.state())
    await task.ready.wait()
    return await _render(wfs, task, output_only, allow_streaming=True)


@detail_errors
async def get_task(request: Request) -> Response:
    """A task's state, or its output with output_only=true (202 while it runs)"""
    await authenticate(request)
    wfs = workflows_for(request)
    task = wfs.tasks.get(request.path_params["task_id"])
    if task is None:
        raise Detail(404, "Task not found.")
    return await _render(wfs, task, flag(request.query_params.get("output_only"), "output_only", False))


async def _render(wfs: Workflows, task: Task, output_only: bool, allow_streaming: bool = False) -> Response:
    if task.streaming and task.status == "processing":
        if not output_only:
            if allow_streaming:  # nobody may read it: stop the upstream now
                await wfs.cancel(task)
            raise Detail(400, 'Streaming output requires output_only=true. Retry with {"output_only": true} in the request body.')
        if not allow_streaming or task.output.taken:
            return respond(task.state(), 202)
        return EventStream(_mc_stream(wfs, task), on_leave=lambda: wfs.cancel(task))
    if not output_only:
        return respond(task.state())
    if task.status in ("pending", "processing"):
        return respond(task.state(), 202)
    if task.status == "cancelled":
        return respond(task.state(), 409)
    if task.status == "failed":
        raise Detail(task.error_status, task.error or "failed")  # 400: the input could not be bound
    out = task.output
    if isinstance(out, bytes):
        return Response(out, media_type="application/octet-stream")
    return respond(out)


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


def routes() -> list[Route]:
    from . import langflow_routes  # it builds on this module's helpers

    return [
        Route("/api/workflows", list_workflows, methods=["GET"]),
        Route("/api/workflows/runs", run_workflow, methods=["POST"]),
        Route("/api/workflows/{workflow_id}/schema", workflow_schema, methods=["GET"]),
        Route("/api/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/api/v1/run/{workflow_id:path}", langflow_routes.langflow_run, methods=["POST"]),
        Route("/api/v1/runs/{run_id}/events", langflow_routes.langflow_events, methods=["GET"]),
    ]
