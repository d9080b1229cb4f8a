"""Everything a client can get wrong gets a clear 4xx in OpenAI's error shape,
and the server keeps serving afterwards."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import UPSTREAM_KEY
from .upstream import chat_text_stream

KEY = "sk-gateway-test-key"


@pytest.fixture(scope="module")
def keyed(upstream):
    from sluiceway.server.app import create_app

    from .conftest import ServerThread, make_config

    upstream.add("ok", chat_text_stream(["fine"]))
    srv = ServerThread(create_app(make_config(upstream, server={"api_keys": [KEY], "max_body_bytes": 4096}))).start()
    yield srv
    srv.stop()


def post(srv, body=None, *, content=None, headers=None):
    h = {"authorization": f"Bearer {KEY}", **(headers or {})}
    return httpx.post(f"{srv.url}/v1/chat/completions", json=body, content=content, headers=h, timeout=10)


def assert_openai_error(r: httpx.Response, status: int, needle: str):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    assert needle.lower() in err["message"].lower(), err
    assert UPSTREAM_KEY not in r.text


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "needle"), [
    ({"messages": MSG}, "model must be a string"),
    ({"model": "up/ok"}, "messages must be an array"),
    ({"model": "up/ok", "messages": []}, "must not be empty"),
    ({"model": "up/ok", "messages": "hi"}, "messages must be an array"),
    ({"model": "up/ok", "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"model": "up/ok", "messages": [{"role": "user", "content": 5}]}, "content must be an array"),
    ({"model": "up/ok", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "unknown content part"),
    ({"model": "up/ok", "messages": MSG, "n": 2}, "n > 1"),
    ({"model": "up/ok", "messages": MSG, "temperature": 9}, "temperature"),
    ({"model": "up/ok", "messages": MSG, "max_tokens": "many"}, "max_tokens must be an integer"),
    ({"model": "up/ok", "messages": MSG, "max_tokens": 0}, "at least 1"),
    ({"model": "up/ok", "messages": MSG, "stream": "yes"}, "stream must be a boolean"),
    ({"model": "up/ok", "messages": MSG, "tools": [{"type": "function"}]}, "tools[0].function"),
    ({"model": "up/ok", "messages": MSG, "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "up/ok", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ([1, 2, 3], "body must be an object"),
])
def test_invalid_requests_are_400(keyed, body, needle):
    assert_openai_error(post(keyed, body), 400, needle)


def test_malformed_json_and_empty_body(keyed):
    assert_openai_error(post(keyed, content=b'{"model": "x", '), 400, "not valid JSON")
    assert_openai_error(post(keyed, content=b""), 400, "empty")


def test_unknown_model_and_unknown_provider_are_404(keyed):
    r = post(keyed, {"model": "nope", "messages": MSG})
    assert_openai_error(r, 404, "does not exist")
    assert r.json()["error"]["code"] == "model_not_found"
    assert_openai_error(post(keyed, {"model": "ghost/gpt", "messages": MSG}), 404, "does not exist")


def test_oversized_body_is_413(keyed):
    big = {"model": "up/ok", "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_openai_error(post(keyed, big), 413, "larger than")


def test_missing_and_wrong_api_key_are_401_with_sdk_error(keyed):
    r = httpx.post(f"{keyed.url}/v1/chat/completions", json={"model": "up/ok", "messages": MSG})
    assert_openai_error(r, 401, "missing API key")
    c = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="up/ok", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        c.models.list()


def test_unknown_route_and_wrong_method(keyed):
    r = httpx.get(f"{keyed.url}/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{keyed.url}/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_server_keeps_serving_after_bad_input(keyed):
    for _ in range(3):
        post(keyed, content=b"\xff\xfe garbage")
    c = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0)
    out = c.chat.completions.create(model="up/ok", messages=MSG)
    assert out.choices[0].message.content == "fine"
    assert httpx.get(f"{keyed.url}/healthz").json()["status"] == "ok"


def test_models_list_shows_aliases_and_upstream_models(upstream, make_server):
    upstream.default_models = ["fake-a", "fake-b"]
    try:
        srv = make_server(models={"smart": "up/fake-a"})
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        ids = [m.id for m in c.models.list()]
        assert ids[0] == "smart"
        assert {"up/fake-a", "up/fake-b"} <= set(ids)
        assert c.models.retrieve("up/fake-b").id == "up/fake-b"
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve("up/none")
    finally:
        upstream.default_models = []


def test_request_id_is_passed_through(keyed):
    r = httpx.get(f"{keyed.url}/healthz", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert len(httpx.get(f"{keyed.url}/healthz").headers["x-request-id"]) == 32
