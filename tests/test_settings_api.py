"""The settings API over real HTTP: provider kinds and forms, CRUD round
trips through sluiceway.yaml and .env, per-field validation errors, the
seed's add-provider alias, who may call it, connection-test diagnoses, and
secrets that never appear in a response body or a log line."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config
from .upstream import HANG, FakeUpstream, Script, chat_text_stream

SECRET = "sk-live-" + "q7" * 12 + "Z9x4"  # what a user pastes into the form


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    """The admin exports saved secrets into os.environ; tests must not leak them to each other."""
    before = dict(os.environ)
    yield
    for k in [k for k in os.environ if k not in before]:
        del os.environ[k]
    os.environ.update(before)


def settings_server(tmp_path: Path, upstream: FakeUpstream | None = None, yaml_text: str | None = None,
                    **overrides) -> tuple[ServerThread, Path]:
    cfg_path = tmp_path / "sluiceway.yaml"
    if yaml_text is not None:
        cfg_path.write_text(yaml_text)
    cfg = make_config(upstream, **overrides)
    cfg.path = cfg_path
    return ServerThread(create_app(cfg)).start(), cfg_path


@pytest.fixture
def srv(tmp_path, upstream) -> Iterator[tuple[ServerThread, Path]]:
    s, path = settings_server(tmp_path, upstream, "# hand-written header comment\nembedded: false\n"
                                                  "providers: {}   # filled in by the settings API\n")
    yield s, path
    s.stop()


def form(upstream: FakeUpstream, name: str, **extra) -> dict:
    return {"name": name, "kind": "openai", "display_name": f"{name} proxy", "base_url": f"{upstream.url}/v1",
            "api_key": SECRET, **extra}


def test_kinds_and_schema_describe_the_form(srv):
    s, _ = srv
    kinds = httpx.get(f"{s.url}/settings/provider-kinds").json()["data"]
    openai_kind = next(k for k in kinds if k["kind"] == "openai")
    assert {"DeepSeek", "Groq", "SiliconFlow", "Volcengine Ark", "OpenRouter", "vLLM"} <= set(openai_kind["vendors"])
    assert {k["kind"] for k in kinds} >= {"openai", "anthropic", "gemini", "ollama", "azure", "bedrock"}
    doc = httpx.get(f"{s.url}/settings/provider-schema/openai").json()
    fields = {f["name"]: f for f in doc["fields"]}
    assert fields["name"]["required"] and fields["api_key"]["secret"] and fields["api_key"]["widget"] == "password"
    assert not fields["base_url"]["advanced"] and fields["headers"]["advanced"]
    assert fields["base_url"]["default"] == "https://api.openai.com/v1"
    assert "https://api.deepseek.com/v1" in fields["base_url"]["presets"]
    assert next(p for p in doc["presets"] if p["vendor"] == "DeepSeek")["default_model"] == "deepseek-chat"
    assert doc["schema"]["properties"]["api_key"]["anyOf"][0]["format"] == "password"
    azure = {f["name"]: f for f in httpx.get(f"{s.url}/settings/provider-schema/azure").json()["fields"]}
    names = [f["name"] for f in httpx.get(f"{s.url}/settings/provider-schema/azure").json()["fields"]]
    assert azure["endpoint"]["required"] and names.index("endpoint") < names.index("api_version")
    r = httpx.get(f"{s.url}/settings/provider-schema/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "kind_not_found"


def test_crud_round_trip_through_yaml_and_env(srv, upstream):
    s, path = srv
    model = upstream.add(f"crud-{uuid.uuid4().hex[:6]}", chat_text_stream(["round ", "trip"]))
    r = httpx.post(f"{s.url}/settings/providers", json=form(upstream, "myproxy", default_model=model))
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["settings"]["api_key"] == "sk-…Z9x4" and view["display_name"] == "myproxy proxy"
    # the YAML refers to the secret; the secret is in .env, both mode 0600; the comments survived
    text = path.read_text()
    assert "# hand-written header comment" in text and "# filled in by the settings API" in text
    entry = yaml.safe_load(text)["providers"]["myproxy"]
    assert entry["api_key"] == "${env.SLUICEWAY_MYPROXY_API_KEY}" and SECRET not in text
    env = (path.parent / ".env").read_text()
    assert env == f"SLUICEWAY_MYPROXY_API_KEY={SECRET}\n"
    assert (path.stat().st_mode & 0o777, (path.parent / ".env").stat().st_mode & 0o777) == (0o600, 0o600)
    # served at once, with the key from .env
    client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused")
    out = client.chat.completions.create(model=f"myproxy/{model}", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "round trip"
    assert upstream.last(model).headers["Authorization"] == f"Bearer {SECRET}"
    assert httpx.get(f"{s.url}/settings/providers/myproxy").json() == view
    listed = httpx.get(f"{s.url}/settings/providers").json()["data"]
    row = next(p for p in listed if p["name"] == "myproxy")
    assert row["model_count"] >= 1 and row["health"] == "ok"
    # PATCH changes one field and keeps the secret; sending the masked value back keeps it too
    r = httpx.patch(f"{s.url}/settings/providers/myproxy", json={"display_name": "Renamed", "api_key": "sk-…Z9x4"})
    assert r.status_code == 200 and r.json()["display_name"] == "Renamed"
    assert r.json()["settings"]["base_url"] == f"{upstream.url}/v1"
    # PUT replaces the settings; an omitted secret is kept (it is never sent back to the form)
    r = httpx.put(f"{s.url}/settings/providers/myproxy",
                  json={"kind": "openai", "base_url": f"{upstream.url}/v1", "models": [model]})
    assert r.status_code == 200 and "display_name" not in yaml.safe_load(path.read_text())["providers"]["myproxy"]
    assert yaml.safe_load(path.read_text())["providers"]["myproxy"]["models"] == [model]
    assert r.json()["secrets"] == {"api_key": True}
    # a new key rewrites its one .env line, idempotently
    new_key = "sk-rotated-" + "k" * 20
    httpx.patch(f"{s.url}/settings/providers/myproxy", json={"api_key": new_key})
    assert (path.parent / ".env").read_text() == f"SLUICEWAY_MYPROXY_API_KEY={new_key}\n"
    client.chat.completions.create(model=f"myproxy/{model}", messages=[{"role": "user", "content": "again"}])
    assert upstream.last(model).headers["Authorization"] == f"Bearer {new_key}"
    # DELETE removes the entry and its secret, and the provider stops serving
    r = httpx.delete(f"{s.url}/settings/providers/myproxy")
    assert r.status_code == 200 and r.json()["deleted"] is True, r.text
    assert "myproxy" not in (yaml.safe_load(path.read_text())["providers"] or {})
    assert "SLUICEWAY_MYPROXY_API_KEY" not in (path.parent / ".env").read_text()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"myproxy/{model}", messages=[{"role": "user", "content": "gone"}])
    assert httpx.get(f"{s.url}/settings/providers/myproxy").status_code == 404
    assert httpx.delete(f"{s.url}/settings/providers/myproxy").status_code == 404


def test_comments_and_unrelated_content_survive_edits(tmp_path, upstream):
    text = ("# top comment\nembedded: false\ntimeouts: {connect: 3}   # tuned by hand\n"
            "providers:\n  # the team proxy\n  kept:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1  # dead on purpose\n")
    s, path = settings_server(tmp_path, None, text)
    try:
        r = httpx.post(f"{s.url}/settings/providers", json=form(upstream, "added"))
        assert r.status_code == 201, r.text
        r = httpx.patch(f"{s.url}/settings/providers/kept", json={"display_name": "Kept"})
        assert r.status_code == 200, r.text
        after = path.read_text()
        for piece in ("# top comment", "# tuned by hand", "# the team proxy", "# dead on purpose",
                      "timeouts: {connect: 3}"):
            assert piece in after, after
        assert yaml.safe_load(after)["providers"]["kept"]["display_name"] == "Kept"
    finally:
        s.stop()


def test_validation_errors_are_per_field(srv, upstream):
    s, path = srv
    before = path.read_text()
    r = httpx.post(f"{s.url}/settings/providers",
                   json={"name": "Bad Name!", "kind": "openai"})
    assert r.status_code == 422 and set(r.json()["fields"]) == {"name"}
    r = httpx.post(f"{s.url}/settings/providers", json={"name": "ok", "kind": "opneai"})
    assert r.status_code == 422 and "unknown kind" in r.json()["fields"]["kind"]
    r = httpx.post(f"{s.url}/settings/providers",
                   json={"name": "bad", "kind": "openai", "baseurl": "http://x", "base_url": "ftp://x",
                         "stream_options": "sometimes", "models": "not-a-list"})
    body = r.json()
    assert r.status_code == 422 and body["error"]["code"] == "validation_failed"
    assert body["fields"]["baseurl"] == "unknown field (did you mean 'base_url'?)"
    assert "http" in body["fields"]["base_url"]
    assert set(body["fields"]) == {"baseurl", "base_url", "stream_options", "models"}
    r = httpx.post(f"{s.url}/settings/providers", json={"name": "az", "kind": "azure"})
    assert r.status_code == 422 and "endpoint" in r.json()["fields"]
    assert path.read_text() == before and not (path.parent / ".env").exists()  # nothing written
    r = httpx.post(f"{s.url}/settings/providers", json=["not", "an", "object"])
    assert r.status_code == 400


def test_add_provider_creates_then_updates_with_a_warning(srv, upstream):
    s, path = srv
    r = httpx.post(f"{s.url}/settings/add-provider", json=form(upstream, "seed"))
    assert r.status_code == 201 and "warning" not in r.json()
    r = httpx.post(f"{s.url}/settings/providers", json=form(upstream, "seed"))
    assert r.status_code == 409  # the strict create refuses
    r = httpx.post(f"{s.url}/settings/add-provider", json=form(upstream, "seed", display_name="Seed v2"))
    assert r.status_code == 200 and "already existed" in r.json()["warning"]
    assert r.json()["display_name"] == "Seed v2"
    env = (path.parent / ".env").read_text()
    assert env.count("SLUICEWAY_SEED_API_KEY=") == 1


def test_the_same_add_twice_leaves_identical_files(srv, upstream):
    s, path = srv
    env_path = path.parent / ".env"
    env_path.write_text("# my own variables\nOTHER=1\n\nexport KEEP_ME='quoted value'\n")
    httpx.post(f"{s.url}/settings/add-provider", json=form(upstream, "twice"))
    first = (path.read_text(), env_path.read_text(), env_path.stat().st_mtime_ns)
    httpx.post(f"{s.url}/settings/add-provider", json=form(upstream, "twice"))
    second = (path.read_text(), env_path.read_text(), env_path.stat().st_mtime_ns)
    assert first == second  # .env not even rewritten: nothing in it changed
    assert first[1] == f"# my own variables\nOTHER=1\n\nexport KEEP_ME='quoted value'\nSLUICEWAY_TWICE_API_KEY={SECRET}\n"


def test_secrets_never_in_a_response_or_a_log_line(srv, upstream, caplog):
    s, _ = srv
    caplog.set_level(logging.DEBUG)
    bad = upstream.add(f"leak-{uuid.uuid4().hex[:6]}", Script(
        [f'{{"error": {{"message": "Incorrect API key provided: {SECRET}", "type": "invalid_request_error"}}}}'],
        status=401, headers={"content-type": "application/json"}))
    bodies = []
    for method, path, body in [
        ("POST", "/settings/providers", form(upstream, "leaky", default_model=bad)),
        ("GET", "/settings/providers", None), ("GET", "/settings/providers/leaky", None),
        ("PATCH", "/settings/providers/leaky", {"api_key": SECRET}),
        ("POST", "/settings/providers/leaky/test", None),
        ("POST", "/settings/test", form(upstream, "leaky", default_model=bad)),
        ("POST", "/settings/add-provider", form(upstream, "leaky", headers={"x-api-key": SECRET})),
        ("GET", "/settings/providers/leaky", None),
        ("DELETE", "/settings/providers/leaky", None),
    ]:
        r = httpx.request(method, f"{s.url}{path}", json=body, timeout=30)
        assert r.status_code < 500, (path, r.text)
        bodies.append(r.text)
    tested = [b for b in bodies if '"diagnosis"' in b]
    assert len(tested) == 2 and all('"bad_key"' in b for b in tested)
    assert "Incorrect API key provided" in tested[0] and "[redacted]" in tested[0]
    assert '"x-api-key":"sk-…Z9x4"' in bodies[7]  # a credential header is masked too
    for b in bodies:
        assert SECRET not in b and SECRET[8:20] not in b
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logged and SECRET[8:20] not in logged
    assert "provider leaky (openai) created" in logged  # the log was captured at all


def test_connection_test_diagnoses(srv, upstream):
    s, _ = srv
    ok = upstream.add(f"diag-ok-{uuid.uuid4().hex[:6]}", chat_text_stream(["OK"]))
    hang = upstream.add(f"diag-hang-{uuid.uuid4().hex[:6]}", [HANG])

    def test(timeout: float = 5, **body) -> dict:
        r = httpx.post(f"{s.url}/settings/test", params={"timeout": timeout}, json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    base = {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x" * 4}
    got = test(**base, default_model=ok)
    assert got["ok"] and got["diagnosis"] == "ok" and ok in got["models"]
    assert test(**{**base, "base_url": "http://no-such-host.invalid/v1"})["diagnosis"] == "dns"
    assert test(**{**base, "base_url": "http://127.0.0.1:1/v1"})["diagnosis"] == "unreachable"
    assert test(timeout=0.5, **base, default_model=hang)["diagnosis"] == "timeout"
    assert test(**base, default_model="no-such-model")["diagnosis"] == "unknown_model"
    wrong = test(kind="anthropic", base_url=upstream.url, api_key="sk-x" * 4, default_model="no-such-model")
    assert (wrong["diagnosis"], wrong["suggested_kind"]) == ("wrong_kind", "openai")
    # a saved provider is tested the same way; a dry run writes nothing
    httpx.post(f"{s.url}/settings/providers", json=form(upstream, "diag", default_model=ok))
    assert httpx.post(f"{s.url}/settings/providers/diag/test").json()["diagnosis"] == "ok"
    assert httpx.post(f"{s.url}/settings/providers/nope/test").status_code == 404
    r = httpx.post(f"{s.url}/settings/test", json={"kind": "openai", "base_url": "nope"})
    assert r.status_code == 422 and "base_url" in r.json()["fields"]


def test_admin_key_guards_the_api(tmp_path, upstream):
    s, _ = settings_server(tmp_path, upstream, "embedded: false\n", server={"admin_key": "adm-secret-1"})
    try:
        assert httpx.get(f"{s.url}/settings/providers").status_code == 401
        r = httpx.get(f"{s.url}/settings/providers", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = httpx.get(f"{s.url}/settings/providers", headers={"authorization": "Bearer adm-secret-1"})
        assert r.status_code == 200
    finally:
        s.stop()


def test_without_an_admin_key_only_an_open_loopback_server_allows_it(tmp_path, upstream):
    s, _ = settings_server(tmp_path, upstream, "embedded: false\n", server={"api_keys": ["client-key"]})
    try:  # a server with keys but no admin key: refused even for a valid client key
        r = httpx.get(f"{s.url}/settings/providers", headers={"authorization": "Bearer client-key"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required"
    finally:
        s.stop()
    s, _ = settings_server(tmp_path / "wide", upstream, None, server={"host": "0.0.0.0"})
    try:  # configured to listen beyond loopback: refused
        assert httpx.get(f"{s.url}/settings/providers").status_code == 403
    finally:
        s.stop()
    s, _ = settings_server(tmp_path / "open", upstream, None)
    try:  # loopback, no keys: open (the local single-user setup)
        assert httpx.get(f"{s.url}/settings/providers").status_code == 200
    finally:
        s.stop()


def test_no_config_file_yet_one_is_created(tmp_path, upstream):
    s, path = settings_server(tmp_path, upstream, None)
    try:
        assert not path.exists()
        r = httpx.post(f"{s.url}/settings/providers", json=form(upstream, "first"))
        assert r.status_code == 201
        assert yaml.safe_load(path.read_text())["providers"]["first"]["kind"] == "openai"
        assert path.stat().st_mode & 0o777 == 0o600
        # the provider that came from the startup config (not the file) still serves alongside
        names = [p["name"] for p in httpx.get(f"{s.url}/settings/providers?models=0").json()["data"]]
        assert set(names) == {"up", "first"}
        r = httpx.delete(f"{s.url}/settings/providers/up")
        assert r.status_code == 409 and "not defined in" in r.json()["error"]["message"]
    finally:
        s.stop()


def test_a_config_given_in_code_is_listed_but_never_written(make_server, upstream, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were it to fall back to ./sluiceway.yaml, it would show up here
    s = make_server()  # conftest's in-memory config: no file path
    names = [p["name"] for p in httpx.get(f"{s.url}/settings/providers?models=0").json()["data"]]
    assert names == ["up"]
    r = httpx.post(f"{s.url}/settings/providers", json=form(upstream, "nowhere"))
    assert r.status_code == 409 and "--config" in r.json()["error"]["message"]
    assert list(tmp_path.iterdir()) == []


def test_load_config_without_a_file_points_where_it_will_be_created(tmp_path, monkeypatch):
    from sluiceway.engine.config import load_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLUICEWAY_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.path == Path("sluiceway.yaml") and not cfg.providers


def test_credential_headers_go_to_env_too(srv, upstream):
    s, path = srv
    model = upstream.add(f"hdr-{uuid.uuid4().hex[:6]}", chat_text_stream(["with ", "header"]))
    token = "tok-header-" + "h" * 20
    body = form(upstream, "hdr", headers={"x-api-key": token, "x-team": "blue"}, default_model=model)
    assert httpx.post(f"{s.url}/settings/providers", json=body).status_code == 201
    entry = yaml.safe_load(path.read_text())["providers"]["hdr"]
    assert entry["headers"] == {"x-api-key": "${env.SLUICEWAY_HDR_HEADERS_X_API_KEY}", "x-team": "blue"}
    assert f"SLUICEWAY_HDR_HEADERS_X_API_KEY={token}\n" in (path.parent / ".env").read_text()
    view = httpx.get(f"{s.url}/settings/providers/hdr").json()
    assert view["settings"]["headers"] == {"x-api-key": "tok-…hhhh", "x-team": "blue"}
    # the form sends back what it was shown: the masked header keeps its saved value
    r = httpx.put(f"{s.url}/settings/providers/hdr", json={**body, "headers": view["settings"]["headers"]})
    assert r.status_code == 200 and yaml.safe_load(path.read_text())["providers"]["hdr"] == entry
    httpx.post(f"{s.url}/v1/chat/completions", json={"model": f"hdr/{model}", "messages": [
        {"role": "user", "content": "hi"}]})
    assert upstream.last(model).headers["x-api-key"] == token
    assert httpx.delete(f"{s.url}/settings/providers/hdr").status_code == 200
    assert "SLUICEWAY_HDR" not in (path.parent / ".env").read_text()
