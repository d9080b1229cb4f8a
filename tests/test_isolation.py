"""Every key sees only its own sessions, messages, traces and runs: another key's ids are a 404 (as if
they did not exist), the admin key sees all, and no key at all is a 401. Rows made before ownership
existed (owner NULL) belong to the static and admin keys."""

from __future__ import annotations

import threading

import httpx
import pytest

from .test_keys_limits import ADMIN, admin_create, start
from .upstream import HANG, chat_chunk, chat_text_stream, sse

STATIC = "static-key-for-isolation"


def h(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


@pytest.fixture
def world(make_server, tmp_path, upstream):
    srv = start(make_server, tmp_path, api_keys=[STATIC])
    upstream.add("iso", chat_text_stream(["mine ", "only"]))
    upstream.add("iso-hang", [sse(chat_chunk({"role": "assistant", "content": "live "})), HANG])
    a, b = admin_create(srv, name="a")["key"], admin_create(srv, name="b")["key"]
    r = httpx.post(f"{srv.url}/chat", json={"message": "secret plans", "model": "up/iso"}, headers=h(a), timeout=10)
    assert r.status_code == 200, r.text
    s = httpx.post(f"{srv.url}/chat", json={"message": "static's own", "model": "up/iso"}, headers=h(STATIC),
                   timeout=10).json()
    return {"srv": srv, "a": a, "b": b, "session": r.json()["session_id"], "message": r.json()["message"]["id"],
            "user_message": r.json()["user_message"]["id"], "static_session": s["session_id"]}


def session_routes(w) -> list[tuple[str, str, dict]]:
    sid, mid = w["session"], w["message"]
    return [("GET", f"/sessions/{sid}", {}), ("PATCH", f"/sessions/{sid}", {"json": {"title": "taken"}}),
            ("GET", f"/sessions/{sid}/messages", {}), ("GET", f"/sessions/{sid}/export?format=json", {}),
            ("GET", f"/sessions/{sid}/export?format=markdown", {}), ("POST", f"/sessions/{sid}/title", {}),
            ("GET", f"/messages/{mid}/trace", {}), ("GET", f"/runs/{mid}", {}), ("POST", f"/runs/{mid}/stop", {}),
            ("GET", f"/runs/{mid}/stream", {}),
            ("POST", "/chat", {"json": {"message": "let me in", "session_id": sid, "model": "up/iso"}}),
            ("DELETE", f"/sessions/{sid}/messages?from={w['user_message']}", {}),
            ("DELETE", f"/sessions/{sid}", {})]


def call(w, key, method, path, kw) -> httpx.Response:
    return httpx.request(method, f"{w['srv'].url}{path}", headers=h(key), timeout=10, **kw)


@pytest.mark.parametrize("who", ["other key", "static key", "no key"])
def test_others_cannot_read_change_stream_stop_or_delete(world, who):
    key = {"other key": world["b"], "static key": STATIC, "no key": None}[who]
    for method, path, kw in session_routes(world):
        r = call(world, key, method, path, kw)
        expected = 401 if key is None else 404
        assert r.status_code == expected, (who, method, path, r.status_code, r.text[:200])
        assert "secret plans" not in r.text
    listed = call(world, key, "GET", "/sessions", {})
    if key is not None:
        assert world["session"] not in listed.text
    # nothing changed for the owner
    mine = call(world, world["a"], "GET", f"/sessions/{world['session']}/messages", {})
    assert mine.status_code == 200 and len(mine.json()["data"]) == 2


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_the_owner_and_the_admin_can(world, who):
    key = world["a"] if who == "owner" else ADMIN
    for method, path, kw in session_routes(world):
        r = call(world, key, method, path, kw)
        assert r.status_code < 400 or (r.status_code == 404 and "/runs/" in path and path.endswith("stream")), (
            who, method, path, r.status_code, r.text[:200])
    listed = call(world, ADMIN, "GET", "/sessions", {}).json()["data"]
    assert world["static_session"] in [s["id"] for s in listed]  # the admin lists every key's sessions


def test_a_static_key_sees_its_own_and_older_rows_not_a_virtual_keys(world):
    listed = [s["id"] for s in call(world, STATIC, "GET", "/sessions", {}).json()["data"]]
    assert world["static_session"] in listed and world["session"] not in listed
    a_listed = [s["id"] for s in call(world, world["a"], "GET", "/sessions", {}).json()["data"]]
    assert a_listed == [world["session"]]


def test_a_live_run_can_be_followed_and_stopped_only_by_its_key(world, upstream):
    srv = world["srv"]
    started = threading.Event()
    got: dict = {}

    def run() -> None:
        with httpx.stream("POST", f"{srv.url}/chat/stream", json={"message": "go", "model": "up/iso-hang"},
                          headers=h(world["a"]), timeout=30) as resp:
            got["run"] = resp.headers["x-run-id"]
            started.set()
            for _ in resp.iter_lines():
                pass

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(10)
    rid = got["run"]
    for key in (world["b"], STATIC):
        for method, path in (("GET", f"/runs/{rid}"), ("GET", f"/runs/{rid}/stream"), ("POST", f"/runs/{rid}/stop")):
            assert call(world, key, method, path, {}).status_code == 404, (method, path)
    assert call(world, world["a"], "GET", f"/runs/{rid}", {}).json()["live"] is True  # still running
    r = call(world, world["a"], "POST", f"/runs/{rid}/stop", {})
    assert r.status_code == 200 and r.json()["stopped"] is True
    t.join(10)
    assert not t.is_alive()  # the owner's stop ended the stream
