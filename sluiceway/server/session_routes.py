"""Sessions: CRUD, their messages (list, truncate to regenerate, tool
results recorded without a model call), a model-written title, export (JSON,
Markdown) and debug traces."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import BadRequest, ChatRequest, Message, NotFound, SluicewayError, fold
from ..engine.runs import Runs
from ..protocols import session_chat
from ..store import Store
from .auth import admit, owner, row_owner
from .errors import JSON, json_response
from .protocol_routes import store_and_runs
from .requests import read_json
from .schemas import ID, MODEL, TITLE_MAX, arr, body, errors, nullable, obj, ok, ref, s
from .state import AppState
from .streaming import until_disconnect
from .table import IntQuery, Op, path, query

LIMIT = IntQuery("limit", 0, 500, 50)
OFFSET = IntQuery("offset", 0, 1 << 31, 0)


async def _body_fields(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    state: AppState = request.app.state.sluiceway
    raw = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(raw, dict):
        raise BadRequest("the raw must be a JSON object")
    out = {}
    for k, v in raw.items():
        if k not in allowed:
            raise BadRequest(f"unknown field {k!r}; allowed: {', '.join(allowed)}", param=k)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"'{k}' must be a string", param=k)
        if k == "title" and v is not None and len(v) > TITLE_MAX:
            raise BadRequest(f"'title' is longer than {TITLE_MAX} characters", param=k)
        out[k] = v
    return out


async def _session_or_404(request: Request, store: Store, session_id: str) -> dict[str, Any]:
    """The session if it exists and the caller owns it: another key's session is a 404, as a missing one."""
    s = await store.get_session(session_id, owner=owner(request))
    if s is None:
        raise NotFound(f"session {session_id!r} does not exist", code="session_not_found")
    return s


async def create_session(request: Request) -> Response:
    store, _ = store_and_runs(request.app.state.sluiceway)
    fields = await _body_fields(request, ("title", "model", "system"))
    return json_response(await store.create_session(**fields, owner=row_owner(owner(request))), 201)


async def list_sessions(request: Request) -> Response:
    store, _ = store_and_runs(request.app.state.sluiceway)
    limit, offset = LIMIT.read(request), OFFSET.read(request)
    return json_response({"data": await store.list_sessions(limit=limit, offset=offset, owner=owner(request))})


async def session(request: Request) -> Response:
    store, runs = store_and_runs(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    found = await _session_or_404(request, store, sid)
    if request.method == "GET":
        return json_response(found)
    if request.method == "PATCH":
        fields = await _body_fields(request, ("title", "model", "system"))
        s = await store.update_session(sid, **fields)
        if s is None:
            raise NotFound(f"session {sid!r} does not exist", code="session_not_found")
        return json_response(s)
    for run in [r for r in runs.active.values() if r.meta.get("session_id") == sid]:
        await runs.stop(run.id, "session deleted")  # its answer has nowhere to go
    if not await store.delete_session(sid):
        raise NotFound(f"session {sid!r} does not exist", code="session_not_found")
    return Response(status_code=204)


TITLE_PROMPT = ("Write a short title (at most six words) for the conversation below. "
                "Reply with the title only, without quotes.")


async def session_title(request: Request) -> Response:
    """Ask the model for a title from the start of the conversation and save it."""
    state: AppState = request.app.state.sluiceway
    store, _ = store_and_runs(state)
    sid = request.path_params["session_id"]
    s = await _session_or_404(request, store, sid)
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
        grant.release()
    if completion.error is not None and not completion.text:
        raise completion.error
    title = " ".join(completion.text.split()).strip("\"'“”‘’ ").removesuffix(".")[:200]
    if not title:
        raise SluicewayError("the model returned an empty title", status=502, code="upstream_error")
    return json_response(await store.update_session(sid, title=title))


async def session_messages(request: Request) -> Response:
    store, runs = store_and_runs(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    await _session_or_404(request, store, sid)
    if request.method == "DELETE":
        return await _truncate(request, store, runs, sid)
    return json_response({"data": await store.list_messages(sid)})


async def _truncate(request: Request, store: Store, runs: Runs, sid: str) -> Response:
    """``DELETE /sessions/{id}/messages?from=<message_id>``: drop that message
    and every later one (regenerate, edit and resend). Refused while one of the
    session's answers is still being generated, here or on another replica."""
    start = request.query_params.get("from")
    if not start:
        raise BadRequest("'from' (the first message id to delete) is required", param="from")
    streaming = [m["id"] for m in await store.list_messages(sid) if m["status"] == "streaming"]
    if await runs.running_among(streaming):
        raise SluicewayError("the session has an answer being generated; stop it (POST /runs/{id}/stop) "
                             "or wait for it to end", status=409, code="run_active")
    deleted = await store.truncate_session(sid, start)
    if deleted is None:
        raise NotFound(f"message {start!r} is not in session {sid!r}", code="message_not_found", param="from")
    return json_response({"session_id": sid, "deleted": deleted})


async def session_tool_results(request: Request) -> Response:
    """``POST /sessions/{id}/tool-results``: store results for the tool calls
    the session's last answer is waiting on, without asking the model (a
    user dismissed them and goes on with a new message later). ``/chat``
    with ``tool_results`` stores them and has the model go on at once."""
    state: AppState = request.app.state.sluiceway
    store, _ = store_and_runs(state)
    sid = request.path_params["session_id"]
    await _session_or_404(request, store, sid)
    raw = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(raw, dict) or set(raw) != {"tool_results"}:
        raise BadRequest("the body must be an object {tool_results: [{tool_call_id, content, dismissed?}]}",
                         param="tool_results")
    results = session_chat.decode_tool_results(raw["tool_results"], state.config.store.max_message_chars)
    parts = session_chat.tool_result_parts(results, await store.list_messages(sid))
    stored = await store.append_message(sid, "tool", parts)
    if stored is None:
        raise NotFound(f"session {sid!r} does not exist", code="session_not_found")
    return json_response(stored, 201)


def to_markdown(s: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    out = [f"# {s['title'] or 'Untitled chat'}", ""]
    for m in messages:
        who = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}.get(m["role"], m["role"])
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
            elif p["type"] == "image":
                out.extend(["_(image)_", ""])
    return "\n".join(out)


async def session_export(request: Request) -> Response:
    store, _ = store_and_runs(request.app.state.sluiceway)
    sid = request.path_params["session_id"]
    s = await _session_or_404(request, store, sid)
    messages = await store.list_messages(sid)
    fmt = request.query_params.get("format", "json")
    if fmt in ("md", "markdown"):
        return Response(to_markdown(s, messages), media_type="text/markdown; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="chat-{sid}.md"'})
    if fmt != "json":
        raise BadRequest("'format' must be json or markdown", param="format")
    return Response(orjson.dumps({"session": s, "messages": messages}, option=orjson.OPT_INDENT_2),
                    media_type=JSON, headers={"content-disposition": f'attachment; filename="chat-{sid}.json"'})


async def message_trace(request: Request) -> Response:
    store, _ = store_and_runs(request.app.state.sluiceway)
    mid = request.path_params["message_id"]
    mine = await store.get_message(mid, owner=owner(request)) is not None
    trace = await store.get_trace(mid) if mine else None
    if trace is None:
        raise NotFound(f"no trace for message {mid!r} (not an assistant message, still streaming, "
                       "traces off, or pruned)", code="trace_not_found")
    return json_response(trace)


def ops() -> list[Op]:
    sid = path("session_id", description="Session id")
    return [
        Op("GET", "/sessions", list_sessions, "List sessions, newest first", "sessions", "listSessions",
           {"200": ok(obj({"data": arr(ref("Session"))})), **errors("OpenAIError", 400, 401)}, (LIMIT, OFFSET)),
        Op("POST", "/sessions", create_session, "Create a session", "sessions", "createSession",
           {"201": ok(ref("Session")), **errors("OpenAIError", 400, 401)}, body=body(ref("SessionFields"))),
        Op("GET", "/sessions/{session_id}", session, "A session", "sessions", "getSession",
           {"200": ok(ref("Session")), **errors("OpenAIError", 401, 404)}, (sid,)),
        Op("PATCH", "/sessions/{session_id}", session, "Update a session", "sessions", "updateSession",
           {"200": ok(ref("Session")), **errors("OpenAIError", 400, 401, 404)}, (sid,),
           body=body(ref("SessionFields"))),
        Op("DELETE", "/sessions/{session_id}", session, "Delete a session and its messages", "sessions",
           "deleteSession", {"204": {"description": "Deleted"}, **errors("OpenAIError", 401, 404)}, (sid,)),
        Op("GET", "/sessions/{session_id}/messages", session_messages, "A session's messages", "sessions",
           "sessionMessages", {"200": ok(obj({"data": arr(ref("StoredMessage"))})),
                               **errors("OpenAIError", 401, 404)}, (sid,)),
        Op("DELETE", "/sessions/{session_id}/messages", session_messages,
           "Delete a session's messages from one on (to regenerate or edit and resend)", "sessions",
           "truncateSession", {"200": ok(obj({"session_id": s(), "deleted": arr(s())})),
                               **errors("OpenAIError", 400, 401, 404, 409)},
           (sid, query("from", ID, "The first message to delete", required=True))),
        Op("POST", "/sessions/{session_id}/tool-results", session_tool_results,
           "Store results for the tool calls the last answer waits on, without running the model "
           "(POST /chat with tool_results runs it)", "sessions", "sessionToolResults",
           {"201": ok(ref("StoredMessage")), **errors("OpenAIError", 400, 401, 404, 413)}, (sid,),
           body=body(obj({"tool_results": ref("ToolResults")}, ("tool_results",), extra=False))),
        Op("POST", "/sessions/{session_id}/title", session_title, "Ask the model for a title and save it",
           "sessions", "titleSession",
           {"200": ok(ref("Session")), **errors("OpenAIError", 400, 401, 403, 404, 429, 502, 503, 504)}, (sid,),
           body=body(obj({"model": nullable(MODEL)}, extra=False), required=False)),
        Op("GET", "/sessions/{session_id}/export", session_export, "Export a session as JSON or Markdown",
           "sessions", "exportSession",
           {"200": {"description": "The export", "content": {JSON: {"schema": {"type": "object"}},
                                                             "text/markdown": {"schema": s()}}},
            **errors("OpenAIError", 400, 401, 404)}, (sid, query("format", s(enum=["json", "md", "markdown"])))),
        Op("GET", "/messages/{message_id}/trace", message_trace,
           "The debug trace of an assistant message (secrets redacted)", "sessions", "messageTrace",
           {"200": ok({"type": "object"}), **errors("OpenAIError", 401, 404)}, (path("message_id"),)),
    ]
