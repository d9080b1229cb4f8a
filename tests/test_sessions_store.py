"""The store on real SQLite files and (when running) real PostgreSQL:
migrations from empty and from the first schema, ordering under concurrency,
the startup sweep of messages left ``streaming``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from sqlalchemy import inspect

from sluiceway.core import NotFound
from sluiceway.store import Store, Trace, migrate
from sluiceway.store.store import create_engine

from .conftest import require_service

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def pg_database() -> tuple[str, object]:
    """A fresh, empty PostgreSQL database; returns (url, dropper)."""
    import asyncpg

    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = "sw_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        c = await asyncpg.connect(PG_ADMIN)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    url, drop = await pg_database()
    try:
        yield url
    finally:
        await drop()


async def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_create_schema_from_empty(db_url):
    assert not {"sessions", "messages", "traces"} & await tables(db_url)
    store = await Store.open(db_url)
    try:
        assert {"sessions", "messages", "traces", migrate.VERSION_TABLE} <= await tables(db_url)
        assert await migrate.current(store.engine) == migrate.head()
    finally:
        await store.close()
    # opening again is a no-op upgrade
    store = await Store.open(db_url)
    await store.close()


async def test_upgrade_from_first_schema_keeps_data(db_url):
    store = await Store.open(db_url, migrate_to="0001")
    assert "traces" not in await tables(db_url)
    # write with the first schema's columns only
    async with store.engine.begin() as conn:
        from sqlalchemy import text
        await conn.execute(text("INSERT INTO sessions (id, title, next_seq, created_at, updated_at) "
                                "VALUES ('s1', 'old', 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        await conn.execute(text("INSERT INTO messages (id, session_id, seq, role, parts, status, created_at, "
                                "updated_at) VALUES ('m1', 's1', 0, 'user', '[{\"type\": \"text\", \"text\": "
                                "\"hi\"}]', 'complete', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    await store.close()
    store = await Store.open(db_url)
    try:
        assert "traces" in await tables(db_url)
        msgs = await store.list_messages("s1")
        assert [(m["id"], m["text"], m["run_id"]) for m in msgs] == [("m1", "hi", None)]
        turn = await store.begin_turn("s1", "next")
        assert (turn.user["seq"], turn.assistant["seq"]) == (2, 3)
    finally:
        await store.close()


async def test_concurrent_turns_keep_order(db_url):
    store = await Store.open(db_url)
    try:
        s = await store.create_session(title="race")
        texts = [f"message {i}" for i in range(12)]
        turns = await asyncio.gather(*(store.begin_turn(s["id"], t) for t in texts))
        msgs = await store.list_messages(s["id"])
        assert [m["seq"] for m in msgs] == list(range(24))
        # every user message is directly followed by its own assistant placeholder
        for turn in turns:
            assert turn.assistant["seq"] == turn.user["seq"] + 1
        by_seq = {m["seq"]: m for m in msgs}
        assert sorted(by_seq[t.user["seq"]]["text"] for t in turns) == sorted(texts)
        assert all(by_seq[t.assistant["seq"]]["status"] == "streaming" for t in turns)
    finally:
        await store.close()


async def test_streaming_messages_become_interrupted_and_checkpoints_stop(db_url):
    store = await Store.open(db_url)
    try:
        turn = await store.begin_turn(None, "tell me")
        assert turn.session["title"] == "tell me"
        aid = turn.assistant["id"]
        await store.checkpoint(aid, [{"type": "text", "text": "partial"}])
        assert await store.streaming_messages() == [aid]
        assert await store.interrupt_streaming() == 1
        # a late checkpoint cannot resurrect or overwrite an interrupted message
        await store.checkpoint(aid, [{"type": "text", "text": "later"}])
        m = await store.get_message(aid)
        assert (m["status"], m["text"]) == ("interrupted", "partial")
        assert await store.streaming_messages() == []
    finally:
        await store.close()


async def test_unknown_session_writes_nothing(db_url):
    store = await Store.open(db_url)
    try:
        with pytest.raises(NotFound):
            await store.begin_turn("nope", "hello")
        assert await store.list_messages("nope") == []
        assert await store.list_sessions() == []
    finally:
        await store.close()


async def test_delete_session_cascades(db_url):
    store = await Store.open(db_url)
    try:
        turn = await store.begin_turn(None, "x")
        await store.finish_message(turn.assistant["id"], status="complete", parts=[],
                                   trace=Trace("canonical-events", {"a": 1}, []))
        assert await store.delete_session(turn.session["id"])
        assert await store.get_message(turn.user["id"]) is None
        assert await store.get_trace(turn.assistant["id"]) is None
        assert not await store.delete_session(turn.session["id"])
    finally:
        await store.close()


async def test_new_chats_and_answers_written_alongside_other_writes_read_back_whole(db_url):
    """On SQLite, new chats' turns and finished answers are written by a thread of their own
    (store/sqlite_writer.py) while other writes go through SQLAlchemy: concurrently, nothing
    fails on the file lock, and every read (through SQLAlchemy) sees exactly what was written."""
    store = await Store.open(db_url)
    try:
        old = await store.create_session(title="existing")
        new_turns, old_turns = await asyncio.gather(
            asyncio.gather(*(store.begin_turn(None, f"new chat {i}", model="m", owner="k1") for i in range(10))),
            asyncio.gather(*(store.begin_turn(old["id"], f"more {i}") for i in range(10))))
        usage = {"input": 3, "output": 5, "cached_input": 0, "reasoning": 0, "estimated": False}
        trace = Trace("canonical-events", {"model": "m", "n": 1}, orjson.Fragment(b'[{"type":"finish"}]'))
        done = await asyncio.gather(*(
            store.finish_message(t.assistant["id"], status="complete", parts=[{"type": "text", "text": f"answer {i}"}],
                                 finish_reason="stop", usage=usage, ttft_ms=1.5, tokens_per_s=9.0, provider="up",
                                 trace=trace)
            for i, t in enumerate([*new_turns, *old_turns])))
        assert all(done)
        assert not await store.finish_message("gone", status="complete", parts=[], trace=trace)
        for i, t in enumerate(new_turns):
            assert t.session["title"] == f"new chat {i}" and t.user["seq"] == 0 and t.assistant["seq"] == 1
            assert await store.get_session(t.session["id"], owner="k1") == t.session
            assert await store.get_session(t.session["id"], owner="k2") is None
            user, answer = await store.list_messages(t.session["id"])
            assert user == t.user and (user["text"], user["status"], user["error"]) == (f"new chat {i}", "complete", None)
            assert (answer["text"], answer["status"], answer["usage"], answer["ttft_ms"], answer["provider"]) == \
                (f"answer {i}", "complete", usage, 1.5, "up")
            assert answer["created_at"] == t.assistant["created_at"] and answer["model"] == "m"
            got = await store.get_trace(t.assistant["id"])
            assert got["request"] == {"model": "m", "n": 1} and got["response"] == [{"type": "finish"}]
        msgs = await store.list_messages(old["id"])
        assert [m["seq"] for m in msgs] == list(range(20))
        assert {m["text"] for m in msgs if m["role"] == "assistant"} == {f"answer {i}" for i in range(10, 20)}
        sessions = await store.list_sessions()
        assert len(sessions) == 11 and old["id"] in {s["id"] for s in sessions}
    finally:
        await store.close()
