"""Virtual API keys and per-key limits over real sockets: keys made by the
CLI and the admin API, model allow-lists (403), RPM / TPM / concurrent-stream
limits (429 + Retry-After in each protocol's error shape), limits shared by
two replicas through Redis, and only hashes in the database."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from sluiceway.core import RateLimited
from sluiceway.engine.limits import Limits, MemoryLimiter

from .conftest import require_service
from .upstream import HANG, Script, chat_chunk, chat_text_stream, sse, usage_wire

ADMIN = "admin-secret-for-tests"
STATIC = "sk-static-test-key"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", autouse=True)
def scripts(upstream):
    upstream.add("kl-ok", chat_text_stream(["Hel", "lo"], usage=usage_wire(12, 9)))
    upstream.add("kl-other", chat_text_stream(["other"], usage=usage_wire(1, 1)))
    upstream.add("kl-hang", Script([sse(chat_chunk({"role": "assistant", "content": "first"})), HANG]))


def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/keys.db"


def start(make_server, tmp_path: Path, *, api_keys: list[str] | None = None, admin: str | None = ADMIN,
          redis_url: str | None = None, **overrides):
    server = {"keepalive": 15, "admin_key": admin, "api_keys": api_keys or []}
    runs = {"redis_url": redis_url} if redis_url else {}
    return make_server(store={"url": db_url(tmp_path)}, server=server, runs=runs, **overrides)


def admin_create(srv, **fields) -> dict:
    r = httpx.post(f"{srv.url}/admin/keys", json={"name": "test", **fields},
                   headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key"].startswith("sk-sw-")
    return body


def chat(srv, key: str, model: str = "up/kl-ok", **kw) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/chat/completions", json={"model": model, "messages": MSG, **kw},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)


def oai(srv, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0, timeout=20)


def ant(srv, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.url, api_key=key, max_retries=0, timeout=20)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sluiceway.cli", "keys", *args], capture_output=True, text=True,
                          timeout=60)


def wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def assert_retry_after(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    ra = int(r.headers["retry-after"])
    assert 1 <= ra <= 60
    return ra


# ------------------------------------------------------- the limiter itself
async def test_memory_limiter_windows_slide():
    now = [1000.0]
    lim = MemoryLimiter(clock=lambda: now[0])
    rpm = Limits(rpm=2)
    await lim.acquire("k", rpm)
    now[0] += 30
    await lim.acquire("k", rpm)
    with pytest.raises(RateLimited) as e:
        await lim.acquire("k", rpm)
    assert e.value.retry_after == pytest.approx(30)  # when the first request leaves the window
    now[0] += 30.5
    await lim.acquire("k", rpm)  # a sliding window: one slot came back, not all of them

    tpm = Limits(tpm=100)
    await lim.acquire("t", tpm)
    await lim.add_tokens("t", 70)
    now[0] += 20
    await lim.acquire("t", tpm)  # 70 < 100: a request may start (and overshoot)
    await lim.add_tokens("t", 50)
    with pytest.raises(RateLimited) as e:
        await lim.acquire("t", tpm)
    assert e.value.retry_after == pytest.approx(40)  # the 70 age out first, leaving 50 < 100
    now[0] += 40.5
    await lim.acquire("t", tpm)

    streams = Limits(max_streams=1)
    lease = await lim.acquire("s", streams)
    with pytest.raises(RateLimited):
        await lim.acquire("s", streams)
    await lim.release("s", lease)
    await lim.acquire("s", streams)


# ------------------------------------------------------------ the store
@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield db_url(tmp_path)
        return
    from .test_sessions_store import pg_database

    url, drop = await pg_database()
    try:
        yield url
    finally:
        await drop()


async def test_key_store_on_each_database(store_url):
    from sqlalchemy import inspect

    from sluiceway.store import Store
    from sluiceway.store import keys as store_keys

    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            cols = await conn.run_sync(lambda c: {col["name"]: col["nullable"]
                                                  for col in inspect(c).get_columns("api_keys")})
        model = {c.name: c.nullable for c in store_keys.ApiKeyRow.__table__.columns}
        assert cols == model  # the migration and the model agree
        assert not await store_keys.has_active_keys(store)
        rec, raw = await store_keys.create_key(store, name=" ci ", models=["a", "a", "b"], tpm=10)
        assert rec["name"] == "ci" and rec["models"] == ["a", "b"] and rec["tpm"] == 10 and rec["rpm"] is None
        assert await store_keys.has_active_keys(store)
        assert (await store_keys.find_key(store, raw))["id"] == rec["id"]
        assert await store_keys.find_key(store, raw + "x") is None
        first = await store_keys.revoke_key(store, rec["id"])
        assert first["revoked_at"] is not None
        assert (await store_keys.revoke_key(store, rec["id"]))["revoked_at"] == first["revoked_at"]
        assert (await store_keys.find_key(store, raw))["revoked_at"] == first["revoked_at"]
        assert not await store_keys.has_active_keys(store)
        assert [k["id"] for k in await store_keys.list_keys(store, include_revoked=False)] == []
        assert await store_keys.revoke_key(store, "missing") is None
    finally:
        await store.close()


# ---------------------------------------------------------------- keys
def test_cli_key_works_and_revoked_key_gets_401(make_server, tmp_path):
    cfg = tmp_path / "sluiceway.yaml"
    cfg.write_text(f"store:\n  url: {db_url(tmp_path)}\n")
    made = cli("create", "--config", str(cfg), "--name", "cli-key", "--models", "up/kl-ok,up/kl-other",
               "--rpm", "100", "--json")
    assert made.returncode == 0, made.stderr
    rec = json.loads(made.stdout)
    raw = rec["key"]
    assert raw.startswith("sk-sw-") and rec["prefix"] == raw[:12] and rec["models"] == ["up/kl-ok", "up/kl-other"]
    assert rec["rpm"] == 100 and rec["tpm"] is None and rec["revoked_at"] is None

    srv = start(make_server, tmp_path, api_keys=[STATIC])
    with oai(srv, raw) as client:
        out = client.chat.completions.create(model="up/kl-ok", messages=MSG)
        assert out.choices[0].message.content == "Hello"
    # the human listing shows the prefix, never the key
    listed = cli("list", "--config", str(cfg))
    assert listed.returncode == 0 and rec["id"] in listed.stdout and raw not in listed.stdout
    assert rec["prefix"] in listed.stdout

    revoked = cli("revoke", rec["id"], "--config", str(cfg))
    assert revoked.returncode == 0, revoked.stderr
    # another process revoked it: this server notices once its short lookup cache lapses
    assert wait_for(lambda: chat(srv, raw).status_code == 401, timeout=6)
    with oai(srv, raw) as client, pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="up/kl-ok", messages=MSG)
    assert "revoked" in e.value.message
    # the static key keeps working, with no limits; unknown and missing keys do not
    assert all(chat(srv, STATIC).status_code == 200 for _ in range(3))
    assert chat(srv, "sk-sw-" + "x" * 43).status_code == 401
    assert httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "up/kl-ok", "messages": MSG}).status_code == 401
    assert cli("revoke", "nope", "--config", str(cfg)).returncode == 1


def test_virtual_keys_close_an_open_server(make_server, tmp_path):
    srv = start(make_server, tmp_path)  # no static keys: open until a virtual key exists
    assert chat(srv, "anything").status_code == 200
    key = admin_create(srv)
    assert chat(srv, key["key"]).status_code == 200
    r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "up/kl-ok", "messages": MSG})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert chat(srv, "anything").status_code == 401
    assert httpx.get(f"{srv.url}/sessions", headers={"x-api-key": key["key"]}).status_code == 200
    assert httpx.get(f"{srv.url}/sessions").status_code == 401


def test_allow_list_gives_403_in_each_protocol_shape(make_server, tmp_path):
    srv = start(make_server, tmp_path, api_keys=[STATIC], models={"ok-alias": "up/kl-ok", "other-alias": "up/kl-other"},
                default_model="ok-alias")
    raw = admin_create(srv, models=["up/kl-ok", "ok-alias"])["key"]
    with oai(srv, raw) as client:
        assert client.chat.completions.create(model="up/kl-ok", messages=MSG).choices[0].message.content == "Hello"
        with pytest.raises(openai.PermissionDeniedError) as e:
            client.chat.completions.create(model="up/kl-other", messages=MSG)
        assert e.value.status_code == 403
        assert e.value.body["type"] == "permission_error" and e.value.body["code"] == "model_not_allowed"
        # the model list shows only what the key may use
        with oai(srv, STATIC) as static:
            assert {"ok-alias", "other-alias"} <= {m.id for m in static.models.list()}
        assert {m.id for m in client.models.list()} <= {"ok-alias", "up/kl-ok"}
        assert "ok-alias" in {m.id for m in client.models.list()}
        assert client.models.retrieve("ok-alias").id == "ok-alias"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("other-alias")
        assert client.chat.completions.create(model="ok-alias", messages=MSG).choices[0].message.content == "Hello"
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="other-alias", messages=MSG)
        # "default" is the default model (ok-alias), which the key may use
        assert client.chat.completions.create(model="default", messages=MSG).choices[0].message.content == "Hello"
        with pytest.raises(openai.PermissionDeniedError):
            client.responses.create(model="up/kl-other", input="hi")
    with ant(srv, raw) as client:
        msg = client.messages.create(model="up/kl-ok", max_tokens=50, messages=MSG)
        assert msg.content[0].text == "Hello"
        with pytest.raises(anthropic.PermissionDeniedError) as ae:
            client.messages.create(model="up/kl-other", max_tokens=50, messages=MSG)
        assert ae.value.status_code == 403
        assert ae.value.body == {"type": "error", "error": {"type": "permission_error",
                                                            "message": ae.value.body["error"]["message"]}}
        assert "up/kl-other" in ae.value.body["error"]["message"]
    # the session chat API checks the same list before anything is stored
    r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/kl-other"},
                   headers={"authorization": f"Bearer {raw}"}, timeout=20)
    assert r.status_code == 403, r.text
    assert httpx.get(f"{srv.url}/sessions", headers={"authorization": f"Bearer {raw}"}).json()["data"] == []
    r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/kl-ok"},
                   headers={"authorization": f"Bearer {raw}"}, timeout=20)
    assert r.status_code == 200 and r.json()["message"]["text"] == "Hello"


# -------------------------------------------------------------- limits
def test_rpm_limit_is_429_with_retry_after_in_each_protocol_shape(make_server, tmp_path):
    srv = start(make_server, tmp_path, api_keys=[STATIC])
    keys = [admin_create(srv, rpm=2)["key"] for _ in range(3)]
    auth = [{"authorization": f"Bearer {k}"} for k in keys]

    # OpenAI Chat Completions
    assert chat(srv, keys[0]).status_code == 200
    assert chat(srv, keys[0], stream=True).status_code == 200
    r = chat(srv, keys[0])
    assert_retry_after(r)
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded" and "2 requests" in err["message"]
    with oai(srv, keys[0]) as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up/kl-ok", messages=MSG)

    # Anthropic Messages
    body = {"model": "up/kl-ok", "max_tokens": 50, "messages": MSG}
    for _ in range(2):
        assert httpx.post(f"{srv.url}/v1/messages", json=body, headers=auth[1], timeout=20).status_code == 200
    r = httpx.post(f"{srv.url}/v1/messages", json=body, headers=auth[1], timeout=20)
    assert_retry_after(r)
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
    with ant(srv, keys[1]) as client, pytest.raises(anthropic.RateLimitError):
        client.messages.create(**body)

    # OpenAI Responses
    body = {"model": "up/kl-ok", "input": "hi"}
    for _ in range(2):
        assert httpx.post(f"{srv.url}/v1/responses", json=body, headers=auth[2], timeout=20).status_code == 200
    r = httpx.post(f"{srv.url}/v1/responses", json=body, headers=auth[2], timeout=20)
    assert_retry_after(r)
    assert r.json()["error"]["type"] == "rate_limit_error"
    # other keys and the static key are not affected
    assert chat(srv, STATIC).status_code == 200


def test_tpm_is_enforced_once_usage_accumulates(make_server, tmp_path):
    srv = start(make_server, tmp_path, api_keys=[STATIC])
    streamed, folded = admin_create(srv, tpm=40)["key"], admin_create(srv, tpm=40)["key"]
    # each answer uses 12 + 9 = 21 tokens: the first fits, the second crosses 40, the third must wait
    with oai(srv, streamed) as client:
        for _ in range(2):
            chunks = list(client.chat.completions.create(model="up/kl-ok", messages=MSG, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert wait_for(lambda: chat(srv, streamed).status_code == 429)
    r = chat(srv, streamed)
    assert_retry_after(r)
    assert "40 tokens per minute" in r.json()["error"]["message"]
    # the non-streaming path counts its usage too
    assert chat(srv, folded).status_code == 200
    assert chat(srv, folded).status_code == 200
    assert wait_for(lambda: chat(srv, folded).status_code == 429)


def test_concurrent_stream_limit_holds_and_frees(make_server, tmp_path):
    srv = start(make_server, tmp_path, api_keys=[STATIC])
    raw = admin_create(srv, max_concurrent_streams=1)["key"]
    headers = {"authorization": f"Bearer {raw}"}
    with httpx.Client(timeout=20) as c:
        body = {"model": "up/kl-hang", "messages": MSG, "stream": True}
        with c.stream("POST", f"{srv.url}/v1/chat/completions", json=body, headers=headers) as held:
            assert held.status_code == 200
            chunks = held.iter_raw()  # kept: a dropped iterator would close the response
            assert b"first" in next(chunks)
            r = chat(srv, raw)
            assert_retry_after(r)
            assert "concurrent" in r.json()["error"]["message"]
            r = httpx.post(f"{srv.url}/v1/messages", json={"model": "up/kl-ok", "max_tokens": 9, "messages": MSG},
                           headers=headers)
            assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
            r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/kl-ok"}, headers=headers)
            assert_retry_after(r)  # the session chat API shares the limit, and stores nothing
            assert httpx.get(f"{srv.url}/sessions", headers=headers).json()["data"] == []
    # the held stream's client left: its slot is freed, and finished requests free theirs
    assert wait_for(lambda: chat(srv, raw).status_code == 200)
    assert chat(srv, raw).status_code == 200
    r = httpx.post(f"{srv.url}/chat", json={"message": "hi", "model": "up/kl-ok"}, headers=headers, timeout=20)
    assert r.status_code == 200 and r.json()["message"]["text"] == "Hello"
    assert wait_for(lambda: chat(srv, raw).status_code == 200)  # the finished run freed its slot


def test_rpm_limit_holds_across_two_replicas_sharing_redis(make_server, tmp_path):
    require_service("Redis", "127.0.0.1", 6379)
    url = "redis://127.0.0.1:6379/0"
    a = start(make_server, tmp_path, api_keys=[STATIC], redis_url=url)
    b = start(make_server, tmp_path, api_keys=[STATIC], redis_url=url)
    raw = admin_create(a, rpm=3)["key"]
    assert [chat(a, raw).status_code, chat(b, raw).status_code, chat(a, raw).status_code] == [200, 200, 200]
    assert_retry_after(chat(b, raw))
    assert_retry_after(chat(a, raw))
    r = httpx.post(f"{b.url}/v1/messages", json={"model": "up/kl-ok", "max_tokens": 9, "messages": MSG},
                   headers={"x-api-key": raw})
    assert_retry_after(r)
    assert r.json()["error"]["type"] == "rate_limit_error"
    # the stream limit is shared too: a stream held on A blocks B
    raw2 = admin_create(a, max_concurrent_streams=1)["key"]
    holding, done = threading.Event(), threading.Event()
    seen: list[bytes] = []

    def hold() -> None:
        with httpx.stream("POST", f"{a.url}/v1/chat/completions", timeout=20,
                          json={"model": "up/kl-hang", "messages": MSG, "stream": True},
                          headers={"authorization": f"Bearer {raw2}"}) as held:
            chunks = held.iter_raw()  # kept: a dropped iterator would close the response
            seen.append(next(chunks))
            holding.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10) and b"first" in seen[0]
        r = chat(b, raw2)
        assert_retry_after(r)
        assert "concurrent" in r.json()["error"]["message"]
    finally:
        done.set()
        t.join(10)
    assert wait_for(lambda: chat(b, raw2).status_code == 200)


# ----------------------------------------------------------- storage, admin
def test_only_hashes_are_stored(make_server, tmp_path):
    srv = start(make_server, tmp_path)
    made = admin_create(srv, models=["up/kl-ok"], rpm=5, tpm=1000, max_concurrent_streams=2)
    raw = made["key"]
    assert chat(srv, raw).status_code == 200
    with sqlite3.connect(tmp_path / "keys.db") as db:
        rows = db.execute("SELECT id, name, key_hash, prefix, models, rpm, tpm, max_concurrent_streams "
                          "FROM api_keys").fetchall()
        assert rows == [(made["id"], "test", hashlib.sha256(raw.encode()).hexdigest(), raw[:12], '["up/kl-ok"]',
                         5, 1000, 2)]
        dump = "\n".join(db.iterdump())
    assert raw not in dump and raw[12:] not in dump
    for f in tmp_path.glob("keys.db*"):  # the file and its WAL
        assert raw.encode() not in f.read_bytes()


def test_admin_api_create_list_revoke_and_its_guard(make_server, tmp_path):
    (tmp_path / "off").mkdir()
    off = start(make_server, tmp_path / "off", admin=None)
    assert httpx.get(f"{off.url}/admin/keys", headers={"authorization": "Bearer x"}).status_code == 404
    assert httpx.post(f"{off.url}/admin/keys", json={"name": "x"}).status_code == 404

    srv = start(make_server, tmp_path, api_keys=[STATIC])
    url = f"{srv.url}/admin/keys"
    adm = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {STATIC}"}).status_code == 401
    assert httpx.get(url, headers={"x-api-key": ADMIN}).json() == {"object": "list", "data": []}

    made = admin_create(srv, models=["up/kl-ok"], rpm=7)
    assert httpx.get(url, headers={"authorization": f"Bearer {made['key']}"}).status_code == 401
    listed = httpx.get(url, headers=adm)
    assert listed.status_code == 200 and made["key"] not in listed.text
    [row] = listed.json()["data"]
    assert row == {k: v for k, v in made.items() if k != "key"}
    assert chat(srv, made["key"]).status_code == 200

    for bad in ({"name": ""}, {"name": "x", "rpm": 0}, {"name": "x", "rpm": "5"}, {"name": "x", "models": "a"},
                {"name": "x", "colour": "red"}, {"rpm": 5}, [1]):
        r = httpx.post(url, json=bad, headers=adm)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"

    gone = httpx.delete(f"{url}/{made['id']}", headers=adm)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert chat(srv, made["key"]).status_code == 401  # revoked through this process: at once
    again = httpx.delete(f"{url}/{made['id']}", headers=adm)
    assert again.json()["revoked_at"] == gone.json()["revoked_at"]
    assert httpx.delete(f"{url}/{uuid.uuid4().hex}", headers=adm).status_code == 404
    assert httpx.delete(f"{url}/{made['id']}").status_code == 401
