"""The conversation store: sessions, messages and debug traces.

SQLite (a file, WAL) by default, PostgreSQL through asyncpg. Every write is
one short transaction; message positions come from an atomic
``UPDATE sessions SET next_seq = next_seq + n … RETURNING`` so concurrent
turns on one session never collide and a turn's messages (tool results, user
message, assistant answer) sit next to each other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..core import NotFound
from . import migrate, sqlite_writer
from .models import MessageRow, SessionRow, TraceRow
from .sqlite_writer import SQLiteWriter

log = logging.getLogger("sluiceway.store")

DEFAULT_URL = "sqlite+aiosqlite:///./sluiceway.db"
TITLE_CHARS = 60


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """Accept the usual ``postgres://`` / ``postgresql://`` / ``sqlite:///``
    spellings (e.g. from DATABASE_URL) and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    return url


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; they were written as UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat()


def session_dict(r: SessionRow) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "model": r.model, "system": r.system,
            "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}


def message_text(parts: Iterable[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


def message_dict(r: MessageRow) -> dict[str, Any]:
    return {"id": r.id, "session_id": r.session_id, "seq": r.seq, "role": r.role, "parts": r.parts,
            "text": message_text(r.parts), "status": r.status, "finish_reason": r.finish_reason,
            "error": r.error, "usage": r.usage, "ttft_ms": r.ttft_ms, "tokens_per_s": r.tokens_per_s,
            "model": r.model, "provider": r.provider, "run_id": r.run_id,
            "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}


# An owner filter: a virtual key's id, None (static keys, admin, open server) or ANY (no check: the admin
# key, and the server's own bookkeeping).
ANY = "*"
Owner = str | None


def _turn_rows(session_id: str, seq: int, inputs: list[tuple[str, list[dict[str, Any]]]], model: str | None,
               provider: str | None, t: datetime) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """A turn's input messages (by role) and its ``streaming`` assistant placeholder, as column values
    (JSON columns that start empty are left out: SQL NULL, as the ORM wrote them)."""
    blank = {"finish_reason": None, "ttft_ms": None, "tokens_per_s": None, "model": None, "provider": None,
             "run_id": None, "created_at": t, "updated_at": t, "session_id": session_id}
    made = {role: {**blank, "id": new_id(), "seq": seq + k, "role": role, "parts": parts, "status": "complete"}
            for k, (role, parts) in enumerate(inputs)}
    asst_id = new_id()
    asst = {**blank, "id": asst_id, "seq": seq + len(inputs), "role": "assistant", "parts": [],
            "status": "streaming", "model": model, "provider": provider, "run_id": asst_id}
    return made, asst


def _turn(session: dict[str, Any], made: dict[str, dict[str, Any]], asst: dict[str, Any],
          history: list[dict[str, Any]]) -> Turn:
    user, tool = made.get("user"), made.get("tool")
    return Turn(session, _message(user) if user else None, _message(asst), history,
                _message(tool) if tool else None)


def _message(values: dict[str, Any]) -> dict[str, Any]:
    """A message as the API shows it, from the column values just inserted."""
    blank = {"error": None, "usage": None}
    return message_dict(SimpleNamespace(**{**blank, **values}))  # type: ignore[arg-type]


def owns(owner: Owner, row_owner: str | None) -> bool:
    """Whether an owner filter lets a caller see a row owned by ``row_owner``."""
    return owner in (ANY, row_owner)


@dataclass(slots=True)
class Turn:
    """What ``begin_turn`` committed: the session, the user message (None in
    a turn of tool results only), the assistant message (status
    ``streaming``) that the run will fill in, and the ``tool`` message of
    the results the turn answered, if any."""

    session: dict[str, Any]
    user: dict[str, Any] | None
    assistant: dict[str, Any]
    history: list[dict[str, Any]]  # the session's messages before this turn, in order
    tool: dict[str, Any] | None = None

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The messages this turn added before its answer, in order."""
        return [m for m in (self.tool, self.user) if m is not None]


@dataclass(slots=True)
class Trace:
    """A message's debug trace: the upstream request and the response's events
    (``response`` may be an ``orjson.Fragment`` holding a JSON array)."""

    kind: str
    request: dict[str, Any]
    response: list[Any] | orjson.Fragment


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite (a file): a new chat's turn and every finished answer are written in one hop to a
        # thread of their own (sqlite_writer); everything else, and PostgreSQL, through SQLAlchemy
        u = engine.url
        self._writer = (SQLiteWriter(u.database) if u.get_backend_name() == "sqlite" and u.database
                        and u.database != ":memory:" and not u.database.startswith("file:") else None)

    # ------------------------------------------------------------ lifecycle
    @classmethod
    async def open(cls, url: str = DEFAULT_URL, *, migrate_to: str = "head") -> Store:
        url = normalize_url(url)
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine, migrate_to)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as s, s.begin():
            yield s

    # ------------------------------------------------------------- sessions
    async def create_session(self, *, title: str | None = None, model: str | None = None,
                             system: str | None = None, owner: str | None = None) -> dict[str, Any]:
        t = now()
        row = SessionRow(id=new_id(), title=title, model=model, system=system, next_seq=0,
                         created_at=t, updated_at=t, owner=owner)
        async with self.tx() as s:
            s.add(row)
        return session_dict(row)

    async def get_session(self, session_id: str, *, owner: Owner = ANY) -> dict[str, Any] | None:
        """The session, or None when it does not exist or belongs to another owner."""
        async with self.tx() as s:
            row = await s.get(SessionRow, session_id)
            return session_dict(row) if row and owns(owner, row.owner) else None

    async def list_sessions(self, *, limit: int = 50, offset: int = 0, owner: Owner = ANY) -> list[dict[str, Any]]:
        q = select(SessionRow)
        if owner != ANY:
            q = q.where(SessionRow.owner.is_(None) if owner is None else SessionRow.owner == owner)
        async with self.tx() as s:
            rows = await s.scalars(q.order_by(SessionRow.updated_at.desc(), SessionRow.id).limit(limit).offset(offset))
            return [session_dict(r) for r in rows]

    async def update_session(self, session_id: str, **fields: Any) -> dict[str, Any] | None:
        allowed = {k: v for k, v in fields.items() if k in ("title", "model", "system")}
        async with self.tx() as s:
            row = await s.get(SessionRow, session_id)
            if row is None:
                return None
            for k, v in allowed.items():
                setattr(row, k, v)
            row.updated_at = now()
        return session_dict(row)

    async def delete_session(self, session_id: str) -> bool:
        async with self.tx() as s:
            ids = select(MessageRow.id).where(MessageRow.session_id == session_id)
            await s.execute(delete(TraceRow).where(TraceRow.message_id.in_(ids)))
            await s.execute(delete(MessageRow).where(MessageRow.session_id == session_id))
            res = await s.execute(delete(SessionRow).where(SessionRow.id == session_id))
            return res.rowcount > 0

    # ------------------------------------------------------------- messages
    async def begin_turn(self, session_id: str | None, user_text: str | None, *, model: str | None = None,
                         provider: str | None = None, system: str | None = None, owner: Owner = ANY,
                         user_parts: list[dict[str, Any]] | None = None,
                         tool_parts: list[dict[str, Any]] | None = None) -> Turn:
        """Commit the turn's input and a ``streaming`` assistant placeholder in
        one transaction, creating the session when ``session_id`` is None. The
        input: ``tool_parts`` (tool results, stored as a ``tool`` message) and
        the user message, ``user_text`` or its ``user_parts`` (text and
        images); ``user_text`` None: no user message."""
        t = now()
        inputs: list[tuple[str, list[dict[str, Any]]]] = [("tool", tool_parts)] if tool_parts else []
        if user_text is not None:
            inputs.append(("user", user_parts if user_parts is not None else [{"type": "text", "text": user_text}]))
        n = len(inputs) + 1
        title = title_from(user_text) if user_text else None
        if session_id is None and self._writer is not None:
            return await self._new_session_turn(inputs, n, title, model, provider, system, owner, t)
        # Core statements, not the ORM's unit of work: this transaction sits between a chat message
        # and its model call, and the ORM's flush cost milliseconds of CPU here
        async with self.engine.begin() as conn:
            if session_id is None:  # a new session: insert it at its first positions, no history
                session_id = new_id()
                srow = {"id": session_id, "title": title, "model": model, "system": system, "next_seq": n,
                        "created_at": t, "updated_at": t, "owner": None if owner == ANY else owner}
                await conn.execute(insert(SessionRow), srow)
                session, seq, history = session_dict(SimpleNamespace(**srow)), 0, []
            else:
                mine = [] if owner == ANY else [SessionRow.owner.is_(None) if owner is None else
                                                SessionRow.owner == owner]
                res = await conn.execute(
                    update(SessionRow).where(SessionRow.id == session_id, *mine)
                    .values(next_seq=SessionRow.next_seq + n, updated_at=t,
                            title=func.coalesce(SessionRow.title, title))
                    .returning(SessionRow.next_seq, SessionRow.title, SessionRow.model, SessionRow.system,
                               SessionRow.created_at))
                got = res.first()
                if got is None:
                    raise NotFound(f"session {session_id!r} does not exist", code="session_not_found",
                                   param="session_id")
                seq = got.next_seq - n
                session = {"id": session_id, "title": got.title, "model": got.model, "system": got.system,
                           "created_at": _iso(got.created_at), "updated_at": _iso(t)}
                rows = await conn.execute(select(MessageRow.__table__).where(
                    MessageRow.session_id == session_id, MessageRow.seq < seq).order_by(MessageRow.seq))
                history = [message_dict(r) for r in rows]
            made, asst = _turn_rows(session_id, seq, inputs, model, provider, t)
            await conn.execute(insert(MessageRow), [*made.values(), asst])
        return _turn(session, made, asst, history)

    async def _new_session_turn(self, inputs: list[tuple[str, list[dict[str, Any]]]], n: int, title: str | None,
                                model: str | None, provider: str | None, system: str | None, owner: Owner,
                                t: datetime) -> Turn:
        """``begin_turn`` of a new session on SQLite: one hop to the writer's thread."""
        srow = {"id": new_id(), "title": title, "model": model, "system": system, "next_seq": n,
                "created_at": t, "updated_at": t, "owner": None if owner == ANY else owner}
        made, asst = _turn_rows(srow["id"], 0, inputs, model, provider, t)
        assert self._writer is not None
        await self._writer.run(sqlite_writer.insert_turn, srow, [*made.values(), asst])
        return _turn(session_dict(SimpleNamespace(**srow)), made, asst, [])  # type: ignore[arg-type]

    async def append_message(self, session_id: str, role: str, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Store one complete message at the session's end (tool results the
        model need not answer now); None when the session does not exist."""
        t = now()
        async with self.tx() as s:
            got = (await s.execute(update(SessionRow).where(SessionRow.id == session_id)
                                   .values(next_seq=SessionRow.next_seq + 1, updated_at=t)
                                   .returning(SessionRow.next_seq))).first()
            if got is None:
                return None
            row = MessageRow(id=new_id(), session_id=session_id, seq=got.next_seq - 1, role=role, parts=parts,
                             status="complete", created_at=t, updated_at=t)
            s.add(row)
        return message_dict(row)

    async def truncate_session(self, session_id: str, from_message_id: str) -> list[str] | None:
        """Delete a session's messages from ``from_message_id`` on (with their
        traces); their ids, or None when that message is not in the session."""
        async with self.tx() as s:
            start = await s.scalar(select(MessageRow.seq).where(MessageRow.id == from_message_id,
                                                               MessageRow.session_id == session_id))
            if start is None:
                return None
            ids = list(await s.scalars(select(MessageRow.id).where(MessageRow.session_id == session_id,
                                                                  MessageRow.seq >= start)))
            await s.execute(delete(TraceRow).where(TraceRow.message_id.in_(ids)))
            await s.execute(delete(MessageRow).where(MessageRow.id.in_(ids)))
            await s.execute(update(SessionRow).where(SessionRow.id == session_id).values(updated_at=now()))
            return ids

    async def get_message(self, message_id: str, *, owner: Owner = ANY) -> dict[str, Any] | None:
        """The message, or None when it does not exist or its session belongs to another owner."""
        async with self.tx() as s:
            row = await s.get(MessageRow, message_id)
            if row is None:
                return None
            if owner != ANY and not owns(owner, await s.scalar(select(SessionRow.owner).where(
                    SessionRow.id == row.session_id))):
                return None
            return message_dict(row)

    async def list_messages(self, session_id: str, *, before_seq: int | None = None) -> list[dict[str, Any]]:
        q = select(MessageRow).where(MessageRow.session_id == session_id)
        if before_seq is not None:
            q = q.where(MessageRow.seq < before_seq)
        async with self.tx() as s:
            return [message_dict(r) for r in await s.scalars(q.order_by(MessageRow.seq))]

    async def checkpoint(self, message_id: str, parts: list[dict[str, Any]]) -> None:
        """Persist the partial answer of a message that is still streaming
        (never overwrites a finished one)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(MessageRow)
                               .where(MessageRow.id == message_id, MessageRow.status == "streaming")
                               .values(parts=parts, updated_at=now()))

    async def finish_message(self, message_id: str, *, status: str, parts: list[dict[str, Any]],
                             finish_reason: str | None = None, error: dict[str, Any] | None = None,
                             usage: dict[str, Any] | None = None, ttft_ms: float | None = None,
                             tokens_per_s: float | None = None, model: str | None = None,
                             provider: str | None = None, trace: Trace | None = None) -> bool:
        """False when the message no longer exists (its session was deleted).
        ``trace`` (its debug trace) is written in the same transaction."""
        t = now()
        values: dict[str, Any] = {"status": status, "parts": parts, "finish_reason": finish_reason,
                                  "error": error, "usage": usage, "ttft_ms": ttft_ms,
                                  "tokens_per_s": tokens_per_s, "updated_at": t}
        if model is not None:
            values["model"] = model
        if provider is not None:
            values["provider"] = provider
        if self._writer is not None:
            return await self._writer.run(sqlite_writer.finish_message, message_id, values,
                                          (trace.kind, trace.request, trace.response) if trace else None, t)
        # Core statements on a connection: the ORM session's bookkeeping cost more than the writes
        async with self.engine.begin() as conn:
            res = await conn.execute(update(MessageRow).where(MessageRow.id == message_id).values(**values))
            if res.rowcount == 0:
                return False
            if trace is not None:
                await self._put_trace(conn, message_id, trace, t)
            return True

    async def streaming_messages(self) -> list[str]:
        async with self.tx() as s:
            return list(await s.scalars(select(MessageRow.id).where(MessageRow.status == "streaming")))

    async def interrupt_streaming(self, ids: Iterable[str] | None = None) -> int:
        """Mark ``streaming`` messages (all, or those in ``ids``) ``interrupted``:
        their run died with a previous process."""
        q = update(MessageRow).where(MessageRow.status == "streaming")
        if ids is not None:
            ids = list(ids)
            if not ids:
                return 0
            q = q.where(MessageRow.id.in_(ids))
        async with self.tx() as s:
            res = await s.execute(q.values(status="interrupted", updated_at=now()))
            return res.rowcount

    # --------------------------------------------------------------- traces
    @staticmethod
    async def _put_trace(conn: AsyncConnection, message_id: str, trace: Trace, t: datetime) -> None:
        # replace, in any dialect: a message has one trace
        await conn.execute(delete(TraceRow).where(TraceRow.message_id == message_id))
        await conn.execute(insert(TraceRow), {"message_id": message_id, "kind": trace.kind, "request": trace.request,
                                              "response": trace.response, "created_at": t})

    async def get_trace(self, message_id: str) -> dict[str, Any] | None:
        async with self.tx() as s:
            row = await s.get(TraceRow, message_id)
            if row is None:
                return None
            return {"message_id": row.message_id, "kind": row.kind, "request": row.request,
                    "response": row.response, "created_at": _iso(row.created_at)}

    async def prune_traces(self, older_than: timedelta) -> int:
        async with self.tx() as s:
            res = await s.execute(delete(TraceRow).where(TraceRow.created_at < now() - older_than))
            return res.rowcount


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def create_engine(url: str) -> AsyncEngine:
    u = make_url(url)
    # orjson for JSON columns: a long answer's trace holds thousands of events
    kw: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    if u.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, **kw)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    # no rollback when a connection goes back to the pool: every transaction here is a context that
    # commits or rolls back itself, and on SQLite that reset was one more hop to the driver's thread
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_reset_on_return=None, **kw)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # take over transaction control so that every transaction can be
        # BEGIN IMMEDIATE: no read→write lock upgrades, so no SQLITE_BUSY
        # deadlocks between concurrent writers (they queue on busy_timeout)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
