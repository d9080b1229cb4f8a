"""The session chat API: chats that are stored and runs that can be resumed.

- ``POST /chat`` and ``POST /chat/stream`` take ``{session_id?, message,
  model?, system?, params?}``. The user message (and a ``streaming``
  assistant placeholder) is committed before the model is called; the
  generation is a *run* owned by the server (``engine.hub``), saved by the
  recorder when it ends, however it ends.
- ``/chat/stream`` and ``GET /runs/{id}/stream`` speak our own SSE framing:
  ``id: <n>`` + ``data: <canonical event JSON>`` per event, so a client
  reattaches with ``Last-Event-ID`` (or ``?after=n``). ``/chat/stream`` first
  sends one ``event: run`` frame (no id) naming the run, session and messages;
  the same ids are in the ``x-run-id`` / ``x-session-id`` / ``x-message-id``
  headers.
- Sessions CRUD, messages, export (JSON, Markdown), debug traces.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import (
    BadRequest,
    ChatRequest,
    Message,
    NotFound,
    RequestTooLarge,
    SluicewayError,
    TextPart,
    UpstreamUnavailable,
    fold,
)
from ..engine.hub import Hub, MemoryRunLog
from ..store import Store
from ..store.responses import fail_responses, prune_responses, unfinished_responses
from .auth import admit, authenticate
from .openai_routes import error_response, internal_error
from .recorder import Recorder
from .requests import read_json
from .state import AppState
from .streaming import ClientGone, RunSSE, until_disconnect

log = logging.getLogger("sluiceway.chat")
JSON = "application/json"
PARAMS = {"temperature": (int, float), "top_p": (int, float), "max_tokens": int, "seed": int,
          "stop": list, "reasoning_effort": str}


# ------------------------------------------------------------------ lifecycle
async def startup(state: AppState) -> None:
    """Open the store (running migrations) and the hub; mark answers whose run
    died with an earlier process ``interrupted``."""
    cfg = state.config
    url = os.environ.get("DATABASE_URL") or cfg.store.url
    store = await Store.open(url)
    redis_url = os.environ.get("REDIS_URL") or cfg.runs.redis_url
    runlog: Any
    if redis_url:
        from ..engine.hub_redis import RedisRunLog

        runlog = RedisRunLog(redis_url, ttl=cfg.runs.ttl, live_ttl=cfg.runs.live_ttl)
    else:
        runlog = MemoryRunLog(ttl=cfg.runs.ttl)
    hub = Hub(runlog, disconnect=cfg.runs.disconnect, shutdown_grace=cfg.runs.shutdown_grace)
    try:
        await hub.open()
        await sweep_orphans(store, hub)
        if redis_url:  # a crashed replica's runs stop looking live only after their heartbeat TTL
            hub.every(runlog.live_ttl, lambda: sweep_orphans(store, hub))
        if cfg.store.trace_retention_days > 0:
            keep = timedelta(days=cfg.store.trace_retention_days)
            await store.prune_traces(keep)
            hub.every(3600, lambda: store.prune_traces(keep))
        if cfg.store.response_retention_days > 0:
            keep_responses = timedelta(days=cfg.store.response_retention_days)
            await prune_responses(store, keep_responses)
            hub.every(3600, lambda: prune_responses(store, keep_responses))
    except BaseException:
        await hub.aclose()
        await store.close()
        raise
    state.store, state.hub = store, hub


async def sweep_orphans(store: Store, hub: Hub) -> int:
    """Answers left ``streaming`` whose run is not running anywhere (their
    process died) become ``interrupted``, keeping the text checkpointed so far."""
    stuck = [m for m in await store.streaming_messages() if m not in hub.runs]
    live = await hub.log.live_among(stuck)  # another replica may still be running some
    n = await store.interrupt_streaming([m for m in stuck if m not in live])
    if n:
        log.warning("%d answer(s) left streaming by a process that died marked interrupted", n)
    # the same for background / streamed Responses (their run id is the response id)
    stuck = [r for r in await unfinished_responses(store) if r not in hub.runs]
    live = await hub.log.live_among(stuck)
    gone = await fail_responses(store, [r for r in stuck if r not in live],
                                "the server generating this response stopped before it finished")
    if gone:
        log.warning("%d response(s) left in progress by a process that died marked failed", gone)
    return n


async def shutdown(state: AppState) -> None:
    """Graceful: active runs get ``runs.shutdown_grace`` seconds, then are
    saved as interrupted; only then does the store close."""
    if state.hub is not None:
        await state.hub.aclose()
    if state.store is not None:
        await state.store.close()


def _parts(state: AppState) -> tuple[Store, Hub]:
    if state.store is None or state.hub is None:
        raise SluicewayError("the chat store is not open", status=503, code="unavailable")
    return state.store, state.hub


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status, media_type=JSON)


def handles_errors(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
    async def route(request: Request) -> Any:
        try:
            await authenticate(request)
            return await fn(request)
        except SluicewayError as e:
            return error_response(e)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(internal_error())
    route.__name__ = fn.__name__
    return route


# ---------------------------------------------------------------- chat input
@dataclass(slots=True)
class ChatInput:
    message: str
    session_id: str | None = None
    model: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def parse_chat(body: Any, max_chars: int) -> ChatInput:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    msg = body.get("message")
    if isinstance(msg, dict):  # {"role": "user", "content": "…"} is accepted too
        msg = msg.get("content")
    if not isinstance(msg, str) or not msg.strip():
        raise BadRequest("'message' must be a non-empty string", param="message")
    if len(msg) > max_chars:
        raise RequestTooLarge(f"'message' is longer than {max_chars} characters", param="message")
    out = ChatInput(msg)
    for name in ("session_id", "model", "system"):
        v = body.get(name)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"'{name}' must be a string", param=name)
        setattr(out, name, v or None)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object", param="params")
    params = {**params, **{k: body[k] for k in PARAMS if k in body}}
    for k, v in params.items():
        if k not in PARAMS:
            raise BadRequest(f"unknown parameter {k!r}; known: {', '.join(PARAMS)}", param=k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, PARAMS[k])):
            raise BadRequest(f"parameter {k!r} has the wrong type", param=k)
    out.params = {k: v for k, v in params.items() if v is not None}
    return out


def history_messages(rows: list[dict[str, Any]]) -> list[Message]:
    """Stored messages → the model's context. Answers still streaming (a
    concurrent turn) and failed answers with no text are left out."""
    out: list[Message] = []
    for r in rows:
        text = r["text"]
        if r["role"] == "assistant" and (r["status"] == "streaming" or not text):
            continue
        out.append(Message(role=r["role"], content=[TextPart(text)]))
    return out


@dataclass(slots=True)
class Started:
    run_id: str
    session: dict[str, Any]
    user: dict[str, Any]
    assistant: dict[str, Any]

    def ids(self) -> dict[str, str]:
        return {"run_id": self.run_id, "session_id": self.session["id"], "message_id": self.assistant["id"],
                "user_message_id": self.user["id"]}


async def start_chat(request: Request) -> Started:
    """Validate, commit the user turn, launch the run. Nothing is written
    when the input is bad, the session unknown or the model unknown."""
    state: AppState = request.app.state.sluiceway
    store, hub = _parts(state)
    body = await read_json(request, state.config.server.max_body_bytes)
    inp = parse_chat(body, state.config.store.max_message_chars)
    session = None
    if inp.session_id is not None:
        session = await store.get_session(inp.session_id)
        if session is None:
            raise NotFound(f"session {inp.session_id!r} does not exist", code="session_not_found",
                           param="session_id")
    model = inp.model or (session or {}).get("model") or "default"
    state.gateway.router.resolve(model)  # unknown model → 404 before anything is written
    grant = await admit(request, model)  # the key's allow-list and limits, also before any write
    system = inp.system or (session or {}).get("system")
    turn = await grant.guard(store.begin_turn(inp.session_id, inp.message, model=model, system=system))
    messages = ([Message.of("system", system)] if system else []) + history_messages(turn.history)
    messages.append(Message.of("user", inp.message))
    req = ChatRequest(model=model, messages=messages, **inp.params)
    rec = Recorder(store, turn.assistant["id"], req, checkpoint_interval=state.config.store.checkpoint_interval,
                   trace=state.config.store.traces)
    router = state.gateway.router

    async def open_() -> Any:
        rec.opened = await router.open(req)
        return rec.opened

    started = Started(turn.assistant["id"], turn.session, turn.user, turn.assistant)
    try:
        await hub.start(started.run_id, open_, grant.observe(rec), meta=started.ids())
    except Exception as e:  # e.g. Redis down: do not leave the placeholder streaming
        log.exception("starting run %s failed", started.run_id)
        grant.end("error")  # the run never started: free its stream slot
        err = UpstreamUnavailable("the run log is unavailable; try again", code="run_log_unavailable")
        await store.finish_message(started.run_id, status="error", parts=[],
                                   error={"code": err.code, "message": err.message, "status": err.status})
        raise err from e
    return started


# ---------------------------------------------------------------- streaming
def _frame_entries(entries: list[tuple[int, bytes]]) -> bytes:
    """Our own SSE framing: ``id: <n>`` + ``data: <canonical event JSON>``, ready-made from the log."""
    return b"".join(b"id: %d\ndata: %s\n\n" % e for e in entries)


def RunStream(hub: Hub, run_id: str, after: int, *, keepalive: float, stall_timeout: float = 60.0,
              first: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
              on_disconnect: Callable[[], Awaitable[Any]] | None = None) -> RunSSE:
    """SSE of one run's log from ``after``: replay, then the live tail."""
    return RunSSE(hub, run_id, _frame_entries, after=after, first=first, keepalive=keepalive,
                  stall_timeout=stall_timeout, headers=headers, on_disconnect=on_disconnect)


def _id_headers(s: Started) -> list[tuple[bytes, bytes]]:
    return [(b"x-run-id", s.run_id.encode()), (b"x-session-id", s.session["id"].encode()),
            (b"x-message-id", s.assistant["id"].encode())]


async def chat_stream(request: Request) -> Any:
    state: AppState = request.app.state.sluiceway
    try:
        await authenticate(request)
        started = await start_chat(request)
    except SluicewayError as e:
        return error_response(e)
    except Exception:
        log.exception("POST /chat/stream failed before streaming")
        return error_response(internal_error())
    hub = state.hub
    assert hub is not None

    async def left() -> None:
        if hub.disconnect == "cancel":
            await hub.stop(started.run_id, "disconnect")

    first = b"event: run\ndata: " + orjson.dumps(started.ids()) + b"\n\n"
    return RunStream(hub, started.run_id, 0, keepalive=state.keepalive, stall_timeout=state.stall_timeout, first=first,
                     headers=_id_headers(started), on_disconnect=left)


async def chat(request: Request) -> Response:
    state: AppState = request.app.state.sluiceway
    try:
        await authenticate(request)
        started = await start_chat(request)
        store, hub = _parts(state)
        try:
            await until_disconnect(request.receive, hub.wait(started.run_id))
        except ClientGone:
            if hub.disconnect == "cancel":
                await hub.stop(started.run_id, "disconnect")
            return Response(status_code=499)
        msg = await store.get_message(started.assistant["id"])
    except SluicewayError as e:
        return error_response(e)
    except Exception:
        log.exception("POST /chat failed")
        return error_response(internal_error())
    assert msg is not None
    headers = {k.decode(): v.decode() for k, v in _id_headers(started)}
    if msg["status"] == "error" and not msg["parts"]:
        err = msg["error"] or {}
        e = SluicewayError(err.get("message", "generation failed"), status=err.get("status", 502),
                           code=err.get("code"))
        failed = error_response(e)
        body = {**orjson.loads(failed.body), **started.ids(), "message": msg}
        return Response(orjson.dumps(body), failed.status_code, media_type=JSON, headers=headers)
    body = {**started.ids(), "session": started.session, "user_message": started.user, "message": msg}
    return Response(orjson.dumps(body), 200, media_type=JSON, headers=headers)


# --------------------------------------------------------------------- runs
def _after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest(f"Last-Event-ID / after must be an integer, not {raw[:40]!r}", param="after") from None
    if n < 0:
        raise BadRequest("Last-Event-ID / after must be >= 0", param="after")
    return n


async def run_stream(request: Request) -> Any:
    state: AppState = request.app.state.sluiceway
    try:
        await authenticate(request)
        _, hub = _parts(state)
        run_id = request.path_params["run_id"]
        after = _after(request)
        if not await hub.exists(run_id):
            raise NotFound(f"run {run_id!r} is not active and its log has expired; "
                           "read the stored message instead", code="run_not_found")
    except SluicewayError as e:
        return error_response(e)
    return RunStream(hub, run_id, after, keepalive=state.keepalive, stall_timeout=state.stall_timeout, headers=[(b"x-run-id", run_id.encode())])


@handles_errors
async def run_info(request: Request) -> Response:
    _, hub = _parts(request.app.state.sluiceway)
    run_id = request.path_params["run_id"]
    meta = await hub.log.meta(run_id)
    if meta is None:
        raise NotFound(f"run {run_id!r} not found", code="run_not_found")
    return _json({"id": run_id, "live": await hub.log.is_live(run_id), **meta})


@handles_errors
async def run_stop(request: Request) -> Response:
    store, hub = _parts(request.app.state.sluiceway)
    run_id = request.path_params["run_id"]
    if not await hub.stop(run_id, "stopped"):
        if not await hub.exists(run_id) and await store.get_message(run_id) is None:
            raise NotFound(f"run {run_id!r} not found", code="run_not_found")
        return _json({"id": run_id, "stopped": False, "reason": "the run had already ended",
                      "message": await store.get_message(run_id)})
    return _json({"id": run_id, "stopped": True, "message": await store.get_message(run_id)})


# ----------------------------------------------------------------- sessions
async def _body_fields(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    state: AppState = request.app.state.sluiceway
    body = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    out = {}
    for k, v in body.items():
        if k not in allowed:
            raise BadRequest(f"unknown field {k!r}; allowed: {', '.join(allowed)}", param=k)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"'{k}' must be a string", param=k)
        if k == "title" and v is not None and len(v) > 200:
            raise BadRequest("'title' is longer than 200 characters", param=k)
        out[k] = v
    return out


async def _session_or_404(store: Store, session_id: str) -> dict[str, Any]:
    s = await store.get_session(session_id)
    if s is None:
        raise NotFound(f"session {session_id!r} does not exist", code="session_not_found")
    return s


def _int_param(request: Request, name: str, default: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer", param=name) from None
    if not 0 <= v <= hi:
        raise BadRequest(f"'{name}' must be between 0 and {hi}", param=name)
    return v


@handles_errors
async def sessions(request: Request) -> Response:
    store, _ = _parts(request.app.state.sluiceway)
    if request.method == "POST":
        fields = await _body_fields(request, ("title", "model", "system"))
        return _json(await store.create_session(**fields), 201)
    limit = _int_param(request, "limit", 50, 500)
    offset = _int_param(request, "offset", 0, 1 << 31)
    return _json({"data": await store.list_sessions(limit=limit, offset=offset)})


@handles_errors
async def session(request: Request) -> Response:
    store, _ = _parts(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    if request.method == "GET":
        return _json(await _session_or_404(store, sid))
    if request.method == "PATCH":
        fields = await _body_fields(request, ("title", "model", "system"))
        s = await store.update_session(sid, **fields)
        if s is None:
            raise NotFound(f"session {sid!r} does not exist", code="session_not_found")
        return _json(s)
    _, hub = _parts(request.app.state.sluiceway)
    for run in [r for r in hub.runs.values() if r.meta.get("session_id") == sid]:
        await hub.stop(run.id, "session deleted")  # its answer has nowhere to go
    if not await store.delete_session(sid):
        raise NotFound(f"session {sid!r} does not exist", code="session_not_found")
    return Response(status_code=204)


TITLE_PROMPT = ("Write a short title (at most six words) for the conversation below. "
                "Reply with the title only, without quotes.")


@handles_errors
async def session_title(request: Request) -> Response:
    """Ask the model for a title from the start of the conversation and save it."""
    state: AppState = request.app.state.sluiceway
    store, _ = _parts(state)
    sid = request.path_params["session_id"]
    s = await _session_or_404(store, sid)
    fields = await _body_fields(request, ("model",)) if request.headers.get("content-length", "0") != "0" else {}
    model = fields.get("model") or s["model"] or "default"
    rows = [m for m in await store.list_messages(sid) if m["text"]][:6]
    if not rows:
        raise BadRequest("the session has no messages to title yet")
    transcript = "\n".join(f"{m['role']}: {m['text'][:500]}" for m in rows)
    req = ChatRequest(model=model, messages=[Message.of("system", TITLE_PROMPT), Message.of("user", transcript)],
                      max_tokens=24)
    grant = await admit(request, model)  # a generation too: the key's allow-list and limits apply
    opened = await until_disconnect(request.receive, grant.guard(state.gateway.router.open(req)))
    try:
        completion = await until_disconnect(request.receive, fold(opened.batches()))
        grant.count(completion.usage)
    finally:
        await opened.aclose()
        grant.end()
    if completion.error is not None and not completion.text:
        raise completion.error
    title = " ".join(completion.text.split()).strip("\"'“”‘’ ").removesuffix(".")[:200]
    if not title:
        raise SluicewayError("the model returned an empty title", status=502, code="upstream_error")
    return _json(await store.update_session(sid, title=title))


@handles_errors
async def session_messages(request: Request) -> Response:
    store, hub = _parts(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    await _session_or_404(store, sid)
    if request.method == "DELETE":
        return await _truncate(request, store, hub, sid)
    return _json({"data": await store.list_messages(sid)})


async def _truncate(request: Request, store: Store, hub: Hub, sid: str) -> Response:
    """``DELETE /sessions/{id}/messages?from=<message_id>``: drop that message
    and every later one (regenerate, edit and resend). Refused while one of the
    session's answers is still being generated, here or on another replica."""
    start = request.query_params.get("from")
    if not start:
        raise BadRequest("'from' (the first message id to delete) is required", param="from")
    streaming = [m["id"] for m in await store.list_messages(sid) if m["status"] == "streaming"]
    if any(m in hub.runs for m in streaming) or await hub.log.live_among(streaming):
        raise SluicewayError("the session has an answer being generated; stop it (POST /runs/{id}/stop) "
                             "or wait for it to end", status=409, code="run_active")
    deleted = await store.truncate_session(sid, start)
    if deleted is None:
        raise NotFound(f"message {start!r} is not in session {sid!r}", code="message_not_found", param="from")
    return _json({"session_id": sid, "deleted": deleted})


def to_markdown(s: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    out = [f"# {s['title'] or 'Untitled chat'}", ""]
    for m in messages:
        who = {"user": "User", "assistant": "Assistant", "system": "System"}.get(m["role"], m["role"])
        note = "" if m["status"] == "complete" else f" _({m['status']})_"
        out.append(f"## {who}{note}")
        out.append("")
        for p in m["parts"]:
            if p["type"] == "reasoning" and p.get("text"):
                out.extend("> " + ln for ln in p["text"].splitlines())
                out.append("")
            elif p["type"] == "text":
                out.extend([p["text"], ""])
            elif p["type"] == "tool_call":
                out.extend([f"Tool call `{p['name']}`:", "", "```json", p["arguments"], "```", ""])
            elif p["type"] == "tool_result":
                out.extend([f"Tool result `{p['name']}`:", "", "```", p["output"], "```", ""])
    return "\n".join(out)


@handles_errors
async def session_export(request: Request) -> Response:
    store, _ = _parts(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    s = await _session_or_404(store, sid)
    messages = await store.list_messages(sid)
    fmt = request.query_params.get("format", "json")
    if fmt in ("md", "markdown"):
        return Response(to_markdown(s, messages), media_type="text/markdown; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="chat-{sid}.md"'})
    if fmt != "json":
        raise BadRequest("'format' must be json or markdown", param="format")
    return Response(orjson.dumps({"session": s, "messages": messages}, option=orjson.OPT_INDENT_2),
                    media_type=JSON, headers={"content-disposition": f'attachment; filename="chat-{sid}.json"'})


@handles_errors
async def message_trace(request: Request) -> Response:
    store, _ = _parts(request.app.state.sluiceway)
    mid = request.path_params["message_id"]
    trace = await store.get_trace(mid)
    if trace is None:
        raise NotFound(f"no trace for message {mid!r} (not an assistant message, still streaming, "
                       "traces off, or pruned)", code="trace_not_found")
    return _json(trace)


def routes() -> list[Route]:
    return [
        Route("/chat", chat, methods=["POST"]),
        Route("/chat/stream", chat_stream, methods=["POST"]),
        Route("/runs/{run_id}", run_info, methods=["GET"]),
        Route("/runs/{run_id}/stream", run_stream, methods=["GET"]),
        Route("/runs/{run_id}/stop", run_stop, methods=["POST"]),
        Route("/sessions", sessions, methods=["GET", "POST"]),
        Route("/sessions/{session_id}", session, methods=["GET", "PATCH", "DELETE"]),
        Route("/sessions/{session_id}/messages", session_messages, methods=["GET", "DELETE"]),
        Route("/sessions/{session_id}/title", session_title, methods=["POST"]),
        Route("/sessions/{session_id}/export", session_export, methods=["GET"]),
        Route("/messages/{message_id}/trace", message_trace, methods=["GET"]),
    ]


