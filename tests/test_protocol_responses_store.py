"""Stored Responses with the official openai SDK: previous_response_id
continues a conversation (the upstream sees the earlier turns), retrieve,
delete, background mode with cancel, and reattaching to a stream with
``starting_after``. Runs in memory and, across two servers, in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from .conftest import ServerThread, make_config, require_service, running
from .test_sessions_chat import no_env_store_overrides  # noqa: F401 (autouse fixture)
from .upstream import HANG, chat_chunk, chat_text_stream, sse, usage_wire

PIECES = [f"t{i} " for i in range(12)]
TEXT = "".join(PIECES)


def sdk(srv: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="anything", max_retries=0, timeout=20)


@pytest.fixture
def client(make_server) -> Iterator[openai.OpenAI]:
    c = sdk(make_server())
    yield c
    c.close()


def model(upstream, steps) -> str:
    name = upstream.add(f"rs-{uuid.uuid4().hex[:8]}", steps)
    return name


def wait_status(client: openai.OpenAI, rid: str, want: set[str], timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        r = client.responses.retrieve(rid)
        if r.status in want:
            return r
        assert time.monotonic() < deadline, f"{rid} still {r.status}"
        time.sleep(0.05)


def hanging(upstream, text: str = "partial ") -> str:
    return model(upstream, [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": text})), HANG])


# ------------------------------------------------------------ continuation

@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_sends_the_earlier_turns_upstream(upstream, client, stream):
    first = model(upstream, chat_text_stream(["Hello ", "Ada."], usage=usage_wire(5, 2)))
    second = model(upstream, chat_text_stream(["You are ", "Ada."]))
    third = model(upstream, chat_text_stream(["Bye."]))

    def ask(name: str, text: str, prev: str | None, **kw):
        extra = {"previous_response_id": prev} if prev else {}
        if not stream:
            return client.responses.create(model=f"up/{name}", input=text, **extra, **kw)
        events = list(client.responses.create(model=f"up/{name}", input=text, stream=True, **extra, **kw))
        assert events[-1].type == "response.completed"
        return events[-1].response

    r1 = ask(first, "My name is Ada", None, instructions="Be brief.")
    assert r1.output_text == "Hello Ada." and r1.store is True
    r2 = ask(second, "What is my name?", r1.id)
    assert r2.previous_response_id == r1.id and r2.output_text == "You are Ada."
    # the instructions of the first turn are not carried over (as with OpenAI)
    assert upstream.last(second).body["messages"] == [
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    ask(third, "Thanks", r2.id)  # a chain: every earlier turn, in order
    assert [m["content"] for m in upstream.last(third).body["messages"]] == [
        "My name is Ada", "Hello Ada.", "What is my name?", "You are Ada.", "Thanks"]


def test_tool_call_turn_continues_with_its_output(upstream, client):
    call = model(upstream, [sse(chat_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_W", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]})),
        sse(chat_chunk(finish="tool_calls")), sse("[DONE]")])
    answer = model(upstream, chat_text_stream(["4 C"]))
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    r1 = client.responses.create(model=f"up/{call}", input="Weather?", tools=tools)
    fc = next(o for o in r1.output if o.type == "function_call")
    r2 = client.responses.create(model=f"up/{answer}", previous_response_id=r1.id, tools=tools,
                                 input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "4"}])
    assert r2.output_text == "4 C"
    msgs = upstream.last(answer).body["messages"]
    assert msgs[0] == {"role": "user", "content": "Weather?"}
    assert msgs[1]["tool_calls"][0]["id"] == "call_W" and msgs[2] == {
        "role": "tool", "tool_call_id": "call_W", "content": "4"}


def test_unknown_previous_response_id_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="up/x", input="hi", previous_response_id="resp_nope")
    assert info.value.body["code"] == "previous_response_not_found"
    assert info.value.body["param"] == "previous_response_id"


# -------------------------------------------------------- retrieve, delete

def test_retrieve_and_delete(upstream, client):
    name = model(upstream, chat_text_stream(["stored ", "answer"], usage=usage_wire(3, 2)))
    events = list(client.responses.create(model=f"up/{name}", input="hi", stream=True))
    final = events[-1].response
    got = client.responses.retrieve(final.id)  # saved before the terminal event was sent
    assert got.status == "completed" and got.output_text == "stored answer"
    assert got.model_dump() == final.model_dump()  # the same object, item ids and all
    assert client.responses.delete(final.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(final.id)


def test_store_false_is_not_kept(upstream, client):
    name = model(upstream, chat_text_stream(["gone"]))
    for stream in (False, True):
        if stream:
            rid = list(client.responses.create(model=f"up/{name}", input="x", store=False, stream=True))[-1].response.id
        else:
            rid = client.responses.create(model=f"up/{name}", input="x", store=False).id
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(rid)
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model=f"up/{name}", input="y", previous_response_id=rid)


def test_leaving_a_foreground_stream_stops_it_and_stores_it_cancelled(upstream, make_server):
    srv = make_server()  # runs.disconnect=continue does not apply: only background responses outlive their stream
    name = hanging(upstream)
    with httpx.Client(timeout=10) as c, c.stream("POST", f"{srv.url}/v1/responses",
                                                 json={"model": f"up/{name}", "input": "x", "stream": True}) as r:
        seen = b""
        for chunk in r.iter_raw():
            seen += chunk
            if b"partial" in seen:
                break
        rid = seen.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
    assert upstream.last(name).wait_closed(2.0)
    with sdk(srv) as client:
        got = wait_status(client, rid, {"cancelled"})
    assert got.output[0].content[0].text == "partial "


# ------------------------------------------------------------- background

def test_background_runs_detached_and_can_be_polled(upstream, client):
    name = model(upstream, chat_text_stream(PIECES, delay=0.02, usage=usage_wire(4, 12)))
    r = client.responses.create(model=f"up/{name}", input="go", background=True)
    assert r.status in ("queued", "in_progress") and r.background is True and r.output == []
    done = wait_status(client, r.id, {"completed"})
    assert done.output_text == TEXT and done.usage.output_tokens == 12 and done.background is True


def test_background_cancel(upstream, client):
    name = hanging(upstream)
    r = client.responses.create(model=f"up/{name}", input="go", background=True)
    rec = None
    deadline = time.monotonic() + 5
    while rec is None or not rec.raw:  # the run has reached the upstream
        assert time.monotonic() < deadline
        time.sleep(0.02)
        rec = upstream.for_model(name)[-1] if upstream.for_model(name) else None
    time.sleep(0.2)  # "partial " has arrived
    cancelled = client.responses.cancel(r.id)
    assert cancelled.status == "cancelled" and cancelled.output[0].content[0].text == "partial "
    assert rec.wait_closed(1.0), "cancel did not close the upstream"
    assert client.responses.retrieve(r.id).status == "cancelled"
    assert client.responses.cancel(r.id).status == "cancelled"  # again: already ended, returned as is


def test_only_background_responses_can_be_cancelled(upstream, client):
    name = model(upstream, chat_text_stream(["x"]))
    rid = client.responses.create(model=f"up/{name}", input="x").id
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(rid)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


# --------------------------------------------------------------- reattach

@pytest.fixture(scope="module", params=["memory", "redis"])
def pair(request, upstream, tmp_path_factory) -> Iterator[tuple[ServerThread, ServerThread]]:
    """(where responses start, where clients reattach); with Redis, two servers
    sharing the database and the run logs."""
    runs: dict = {"shutdown_grace": 0}
    if request.param == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        runs["redis_url"] = "redis://127.0.0.1:6379/0"
    db = tmp_path_factory.mktemp("responses") / "r.db"
    cfg = make_config(upstream, store={"url": f"sqlite+aiosqlite:///{db}"}, runs=runs)
    with running(cfg, replicas=request.param == "redis") as pair:
        yield pair


@pytest.mark.parametrize("cut", [0, 3, 9])
def test_reattach_with_starting_after_gets_the_rest_exactly_once(upstream, pair, cut):
    a, b = pair
    name = model(upstream, chat_text_stream(PIECES, delay=0.03, usage=usage_wire(4, 12)))
    with sdk(a) as ca, sdk(b) as cb:
        stream = ca.responses.create(model=f"up/{name}", input="go", background=True, stream=True)
        first = []
        for ev in stream:
            first.append(ev)
            if ev.sequence_number == cut:
                break
        stream.close()  # background: the run goes on without us
        rid = first[0].response.id
        rest = list(cb.responses.retrieve(rid, stream=True, starting_after=cut))
        seqs = [e.sequence_number for e in first + rest]
        assert seqs == list(range(len(seqs)))  # no gap, no duplicate
        assert rest[-1].type == "response.completed"
        text = "".join(e.delta for e in first + rest if e.type == "response.output_text.delta")
        assert text == TEXT
        assert rest[-1].response.output_text == TEXT
        # the same item ids on both connections, and in the stored object
        ids = {e.item_id for e in first + rest if e.type == "response.output_text.delta"}
        stored = cb.responses.retrieve(rid)
        assert ids == {stored.output[0].id} and stored.status == "completed"
        # after the end the log is still there: a late reattach replays the tail
        late = list(ca.responses.retrieve(rid, stream=True, starting_after=len(seqs) - 3))
        assert [e.sequence_number for e in late] == [len(seqs) - 2, len(seqs) - 1]


def test_reattach_and_cancel_from_the_other_server(upstream, pair):
    a, b = pair
    name = hanging(upstream, "so far ")
    with sdk(a) as ca, sdk(b) as cb:
        r = ca.responses.create(model=f"up/{name}", input="go", background=True)
        with httpx.stream("GET", f"{b.url}/v1/responses/{r.id}", params={"stream": "true", "starting_after": 1},
                          timeout=10) as watch:
            assert watch.status_code == 200
            lines = watch.iter_lines()
            for line in lines:
                if "so far" in line:
                    break
            cancelled = cb.responses.cancel(r.id)
            rest = "\n".join(lines)  # the watcher's stream ends when the run does
        assert cancelled.status == "cancelled" and cancelled.output[0].content[0].text == "so far "
        assert "response.completed" not in rest
        assert upstream.last(name).wait_closed(1.0)


def test_reattach_errors(upstream, client):
    name = model(upstream, chat_text_stream(["x"]))
    rid = client.responses.create(model=f"up/{name}", input="x").id  # not streamed: no run log
    with pytest.raises(openai.BadRequestError):
        list(client.responses.retrieve(rid, stream=True))
    with pytest.raises(openai.NotFoundError):
        list(client.responses.retrieve("resp_missing", stream=True, starting_after=2))
    r = httpx.get(f"{client.base_url}responses/{rid}", params={"stream": "true", "starting_after": "-1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "starting_after"


def test_a_response_left_in_progress_by_a_dead_process_is_failed_at_startup(make_server, tmp_path):
    from datetime import UTC, datetime

    from sqlalchemy import update

    from sluiceway.store import Store
    from sluiceway.store.responses import ResponseRow, save_response

    url = f"sqlite+aiosqlite:///{tmp_path}/dead.db"

    async def leave_one_behind() -> None:
        store = await Store.open(url)
        base = {"object": "response", "created_at": 1, "model": "m", "output": [], "error": None}
        await save_response(store, {**base, "id": "resp_dead", "status": "in_progress", "background": True}, input=[])
        await save_response(store, {**base, "id": "resp_fresh", "status": "in_progress"}, input=[])
        async with store.tx() as s:  # written long ago, by a process that is gone
            await s.execute(update(ResponseRow).where(ResponseRow.id == "resp_dead")
                            .values(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))
        await store.close()

    asyncio.run(leave_one_behind())
    srv = make_server(store={"url": url})
    with sdk(srv) as client:
        dead = client.responses.retrieve("resp_dead")
        assert dead.status == "failed" and dead.error.code == "server_error"
        # one just written may belong to a run that another replica is starting: left alone
        assert client.responses.retrieve("resp_fresh").status == "in_progress"


def test_stored_responses_belong_to_the_key_that_made_them(upstream, make_server, tmp_path):
    admin = "admin-for-responses"
    srv = make_server(store={"url": f"sqlite+aiosqlite:///{tmp_path}/own.db"},
                      server={"keepalive": 15, "admin_key": admin, "api_keys": []})

    def key() -> str:
        r = httpx.post(f"{srv.url}/admin/keys", json={"name": "k"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    name = model(upstream, chat_text_stream(["mine"]))
    with (openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key(), max_retries=0) as mine,
          openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key(), max_retries=0) as other):
        rid = mine.responses.create(model=f"up/{name}", input="x").id
        assert mine.responses.retrieve(rid).output_text == "mine"
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(rid)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=f"up/{name}", input="y", previous_response_id=rid)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(rid)
        assert mine.responses.retrieve(rid).status == "completed"  # still there


def test_input_items_list_the_expanded_conversation_with_paging(upstream, client):
    first = model(upstream, chat_text_stream(["Hi Ada."]))
    second = model(upstream, chat_text_stream(["Ada."]))
    r1 = client.responses.create(model=f"up/{first}", input="My name is Ada")
    r2 = client.responses.create(model=f"up/{second}", input="What is my name?", previous_response_id=r1.id)
    items = client.responses.input_items.list(r2.id, order="asc")
    texts = [getattr(it, "content", None) for it in items.data]
    assert len(items.data) == 3 and texts[0] is not None
    assert [it.role for it in items.data] == ["user", "assistant", "user"]
    assert len({it.id for it in items.data}) == 3
    newest = client.responses.input_items.list(r2.id, limit=1)  # desc by default: the newest first
    assert newest.has_more and newest.data[0].id == items.data[-1].id
    after = client.responses.input_items.list(r2.id, order="asc", after=items.data[0].id)
    assert [it.id for it in after.data] == [it.id for it in items.data[1:]] and not after.has_more
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(r2.id, limit=500)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_nope")


def test_stored_responses_past_retention_are_pruned_at_startup(make_server, tmp_path):
    from datetime import UTC, datetime

    from sqlalchemy import update

    from sluiceway.store import Store
    from sluiceway.store.responses import ResponseRow, save_response

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"

    async def store_two() -> None:
        store = await Store.open(url)
        base = {"object": "response", "created_at": 1, "model": "m", "output": [], "error": None}
        await save_response(store, {**base, "id": "resp_old", "status": "completed"}, input=[])
        await save_response(store, {**base, "id": "resp_new", "status": "completed"}, input=[])
        async with store.tx() as s:
            await s.execute(update(ResponseRow).where(ResponseRow.id == "resp_old")
                            .values(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))
        await store.close()

    asyncio.run(store_two())
    srv = make_server(store={"url": url, "response_retention_days": 30})
    with sdk(srv) as client:
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve("resp_old")
        assert client.responses.retrieve("resp_new").id == "resp_new"
