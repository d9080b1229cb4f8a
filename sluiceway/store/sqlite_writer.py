"""SQLite's two hot writes, each one hop to a thread of its own.

A chat turn is stored before its answer is read, and the answer with its
trace when the run ends. Through SQLAlchemy's async engine and aiosqlite a
transaction is about ten hand-offs to the driver's thread and a thousand
Python calls of statement machinery, milliseconds of the event loop's time
on every message. Here the whole transaction runs in one function on a
dedicated thread with its own ``sqlite3`` connection: the loop hands it
over once and is free while SQLite works.

The values are written exactly as SQLAlchemy writes them (JSON as text,
datetimes as naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``), so every read still
goes through the store's SQLAlchemy queries. Both connections open the file
in WAL mode with ``BEGIN IMMEDIATE`` transactions, so their writes queue on
SQLite's lock instead of failing. PostgreSQL needs none of this: asyncpg
talks to the server from the event loop itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

MESSAGE_COLUMNS = ("id", "session_id", "seq", "role", "parts", "status", "model", "provider", "run_id",
                   "created_at", "updated_at")
_JSON_COLUMNS = frozenset({"parts", "error", "usage"})


def sql_time(dt: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it (naive UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def sql_json(value: Any) -> str | None:
    """JSON as text, as the store's JSON columns hold it (None: SQL NULL)."""
    return None if value is None else orjson.dumps(value).decode()


def _value(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return sql_json(value)
    if isinstance(value, datetime):
        return sql_time(value)
    return value


class SQLiteWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sluiceway-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def _tx(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one transaction on the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._tx, fn, args)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)


def insert_turn(conn: sqlite3.Connection, session: dict[str, Any] | None, messages: list[dict[str, Any]]) -> None:
    """A new session (when given) and the turn's messages."""
    if session is not None:
        conn.execute("INSERT INTO sessions (id, title, model, system, next_seq, created_at, updated_at, owner) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (session["id"], session["title"], session["model"], session["system"], session["next_seq"],
                      sql_time(session["created_at"]), sql_time(session["updated_at"]), session["owner"]))
    conn.executemany(f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})",
                     [tuple(_value(c, m.get(c)) for c in MESSAGE_COLUMNS) for m in messages])


def finish_message(conn: sqlite3.Connection, message_id: str, values: dict[str, Any],
                   trace: tuple[str, Any, Any] | None, at: datetime) -> bool:
    """The answer's final columns and (kind, request, response) its trace; False if it is gone."""
    columns = list(values)  # our own column names, never a client's
    cur = conn.execute(f"UPDATE messages SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                       [*(_value(c, values[c]) for c in columns), message_id])
    if cur.rowcount == 0:
        return False
    if trace is not None:
        kind, request, response = trace
        conn.execute("DELETE FROM traces WHERE message_id = ?", (message_id,))
        conn.execute("INSERT INTO traces (message_id, kind, request, response, created_at) VALUES (?, ?, ?, ?, ?)",
                     (message_id, kind, sql_json(request), sql_json(response), sql_time(at)))
    return True
