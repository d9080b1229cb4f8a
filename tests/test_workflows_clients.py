"""Workflows as models (the openai SDK), the Langflow-style run endpoint, the
``sluiceway run`` command, and load errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from sluiceway.engine.workflows import WorkflowLoadError, Workflows
from sluiceway.engine.workflows.splitters import SentenceSplitter, split_text

from .conftest import make_config
from .upstream import HANG, FakeUpstream, chat_chunk, chat_text_stream, sse

HERE = Path(__file__).parent / "workflows"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def env(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    upstream.add("wf-chat", chat_text_stream(["Hel", "lo", ", wor", "ld!\nBye", "", " now."]))
    return upstream


def serve(make_server, upstream: FakeUpstream, *paths: str):
    return make_server(make_config(upstream, workflows=[str(HERE / p) for p in paths]))


# ------------------------------------------------------- workflows as models

def test_workflow_streams_through_the_openai_sdk(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml", "grade.yml")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused")
    ids = [m.id for m in client.models.list().data]
    assert "workflow/chat-stream" in ids and "workflow/grade" in ids
    stream = client.chat.completions.create(model="workflow/chat-stream", stream=True,
                                            messages=[{"role": "user", "content": "tell me"}])
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == ["Hel", "lo", ", wor", "ld!\nBye", " now."]
    # the last user message went to the workflow's first `as text` input (prompt), the rest kept their defaults
    sent = env.last("wf-chat").body
    assert sent["model"] == "wf-chat" and sent["messages"][0]["content"] == "tell me"


def test_extra_body_input_and_json_output(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml", "grade.yml")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused")
    r = client.chat.completions.create(model="workflow/chat-stream", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"input": {"prompt": "from extra body"}})
    assert r.choices[0].message.content == "Hello, world!\nBye now."
    assert env.last("wf-chat").body["messages"][0]["content"] == "from extra body"
    r = client.chat.completions.create(model="workflow/grade", messages=[{"role": "user", "content": "92"}])
    assert json.loads(r.choices[0].message.content) == {"grade": "high", "score": 92,
                                                        "line": "grade=high score=92: Great result."}


def test_failing_workflow_is_an_api_error(env, make_server):
    env.add("wf-fail", [b'{"error": {"message": "boom"}}'], status=500, headers={"content-type": "application/json"})
    srv = serve(make_server, env, "chat-stream.yml")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="workflow/__workflow__", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"input": {"prompt": "x", "model": "wf-fail"}})
    assert e.value.status_code >= 500 and "boom" in str(e.value)
    assert len(env.for_model("wf-fail")) == 1  # a workflow is never retried on its own


# ---------------------------------------------------------- Langflow run API

def _events(raw: bytes) -> list[dict]:
    return [json.loads(block[len(b"data: "):]) for block in raw.split(b"\n\n") if block.startswith(b"data: ")]


def test_langflow_run_stream(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml")
    r = httpx.post(srv.url + "/api/v1/run/__workflow__?stream=true", json={"input_value": "hi there"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.content)
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["add_message", "add_message"] and kinds[-2:] == ["add_message", "end"]
    assert events[0]["data"]["sender"] == "User" and events[0]["data"]["text"] == "hi there"
    tokens = [e["data"]["chunk"] for e in events if e["event"] == "token"]
    assert tokens == ["Hel", "lo", ", wor", "ld!\nBye", " now."]
    assert events[-2]["data"]["text"] == "Hello, world!\nBye now." and events[-2]["data"]["sender"] == "Machine"
    assert events[-1]["data"]["result"]["outputs"][0]["outputs"][0]["results"]["message"]["text"] == \
        "Hello, world!\nBye now."
    # not streamed: the same result as JSON
    r = httpx.post(srv.url + "/api/v1/run/__workflow__", json={"input_value": "hi"}, timeout=30)
    assert r.json()["outputs"][0]["outputs"][0]["results"]["message"]["text"] == "Hello, world!\nBye now."
    assert httpx.post(srv.url + "/api/v1/run/nope", json={}).status_code == 404


def test_langflow_error_event(env, make_server):
    env.add("wf-fail", [b'{"error": {"message": "boom"}}'], status=500, headers={"content-type": "application/json"})
    srv = serve(make_server, env, "chat-stream.yml")
    r = httpx.post(srv.url + "/api/v1/run/__workflow__?stream=true",
                   json={"inputs": {"prompt": "x", "model": "wf-fail"}}, timeout=30)
    events = _events(r.content)
    assert events[-1]["event"] == "error" and "boom" in events[-1]["data"]["error"]


def test_langflow_client_leaving_cancels_the_run(env, make_server):
    env.add("wf-chat", [sse(chat_chunk({"content": "one"})), HANG])
    srv = serve(make_server, env, "chat-stream.yml")
    with httpx.stream("POST", srv.url + "/api/v1/run/__workflow__?stream=true", json={"input_value": "x"}) as r:
        seen = b""
        for part in r.iter_raw():
            seen += part
            if b'"token"' in seen:
                break
    rec = env.last("wf-chat")
    assert rec.wait_closed(10) and rec.client_closed


def test_langflow_background_run_for_eventsource(env, make_server):
    srv = make_server(make_config(env, workflows=[str(HERE / "chat-stream.yml")], server={"api_keys": ["k1"]}))
    auth = {"authorization": "Bearer k1"}
    r = httpx.post(srv.url + "/api/v1/run/__workflow__", json={"input_value": "hi", "background": True},
                   headers=auth)
    assert r.status_code == 202
    url = r.json()["events_url"]
    # an EventSource sends no custom header: the run's token in the URL is the credential
    events = _events(httpx.get(srv.url + url, timeout=30).content)
    assert [e["event"] for e in events][-1] == "end"
    again = _events(httpx.get(srv.url + url, timeout=30).content)  # a reconnect replays from the start
    assert again == events
    bad = httpx.get(srv.url + url.split("?")[0] + "?token=wrong")
    assert bad.status_code == 401


# ---------------------------------------------------------------------- CLI

def _run(*args: str, env: dict | None = None, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run([sys.executable, "-m", "sluiceway.cli", "run", *args], capture_output=True, text=True,
                          cwd=HERE, env={**environ, **(env or {})}, timeout=60)


def test_cli_prints_what_model_compose_prints():
    p = _run("grade.yml", "-i", '{"score": 90}')
    # oracle: `model-compose -f grade.yml run -i '{"score": 90}'`
    assert p.returncode == 0 and p.stdout == ('{\n  "grade": "high",\n  "score": 90,\n'
                                              '  "line": "grade=high score=90: Great result."\n}\n')
    p = _run("greet.yml", "-i", '{"lang": "fr", "name": "Zoé"}')
    assert p.stdout == '{\n  "language": "French",\n  "rendered": "[French] Bonjour, Zoé !"\n}\n'  # oracle


def test_cli_streams_and_fails_cleanly(upstream: FakeUpstream):
    upstream.add("wf-chat", chat_text_stream(["Hel", "lo", ", wor", "ld!\nBye", "", " now."]))
    p = _run("chat-stream.yml", "-i", '{"prompt": "hi"}', env={"UPSTREAM_URL": upstream.url})
    assert p.returncode == 0 and p.stdout == "Hel\nlo\n, wor\nld!\nBye\n now.\n"  # oracle: a line per chunk
    p = _run("json-stream.yml", "-i", '{"prompt": "hi"}', env={"UPSTREAM_URL": upstream.url})
    assert p.stdout.splitlines()[:2] == ['{"text": "", "finish": null}', '{"text": "Hel", "finish": null}']  # oracle
    p = _run("env.yml", drop=("WF_GREETING",))
    assert p.returncode == 2 and "env.yml:11: environment variable WF_GREETING is not set" in p.stderr
    p = _run("env.yml", "-e", "WF_GREETING=Hi", "-i", '{"name": "Ada"}', drop=("WF_REGION",))
    assert p.returncode == 0 and json.loads(p.stdout) == {"greeting": "Hi from eu-west, Ada", "region": "eu-west"}
    p = _run("grade.yml", "-i", "{not json")
    assert p.returncode == 2 and "--input is not valid JSON" in p.stderr


# -------------------------------------------------------------- load errors

def test_bad_files_fail_at_load_with_line_and_key_path(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("workflow:\n  title: t\n  jobs:\n    - id: a\n      component: c\n      dependson: [b]\n"
                   "components:\n  - id: c\n    type: shell\n    action:\n      command: [echo]\n")
    with pytest.raises(WorkflowLoadError) as e:
        Workflows([bad])
    assert str(e.value) == f"{bad}:6: workflow.jobs[0].dependson: unknown key (did you mean 'depends_on'?)"
    bad.write_text("workflow:\n  job:\n    component: nope\ncomponents:\n  - id: c\n    type: shell\n"
                   "    action: {command: [echo]}\n")
    with pytest.raises(WorkflowLoadError, match=r"bad.yml:3: workflow.job.component: unknown component 'nope'"):
        Workflows([bad])
    bad.write_text("component:\n  type: http-client\n  base_url: http://x\n  action:\n    methd: GET\n"
                   "workflow:\n  job: {}\n")
    with pytest.raises(WorkflowLoadError, match=r"bad.yml:5: component.action.methd: unknown key "
                                                r"\(did you mean 'method'\?\)"):
        Workflows([bad])
    bad.write_text("component:\n  type: telepathy\nworkflow:\n  job: {}\n")
    with pytest.raises(WorkflowLoadError, match=r"bad.yml:2: component.type: component type 'telepathy'"):
        Workflows([bad])
    bad.write_text("workflow:\n  jobs:\n    - id: a\n      type: if\n      operator: bigger\n      if_true: a\n"
                   "component: {type: shell, action: {command: [echo]}}\n")
    with pytest.raises(WorkflowLoadError, match=r"unknown operator 'bigger'"):
        Workflows([bad])
    bad.write_text("workflow:\n  job: {}\ncomponent:\n  type: shell\n  action:\n    command: [echo, '${env.H4_UNSET_X}']\n")
    with pytest.raises(WorkflowLoadError, match=r"bad.yml:6: environment variable H4_UNSET_X is not set"):
        Workflows([bad])


def test_config_workflows_load_errors_are_config_errors(tmp_path, upstream):
    from sluiceway.engine.config import ConfigError
    from sluiceway.engine.gateway import Gateway

    bad = tmp_path / "bad.yml"
    bad.write_text("workflow:\n  jobz: []\n")
    with pytest.raises(ConfigError, match="jobz: unknown key"):
        Gateway(make_config(upstream, workflows=[str(bad)]))


# ------------------------------------------------------------------ splitters

def test_splitters_match_model_compose():
    # oracle: random texts fed in random pieces through model-compose 0.4.120's own splitters
    # (NativeStreamingSentenceSplitter, StreamingTextSplitter), with min/max chunk lengths, sizes and overlaps
    cases = json.loads((HERE / "splitter-oracle.json").read_text())
    for c in cases:
        s = SentenceSplitter(c["min"], c["max"])
        assert [x for piece in c["pieces"] for x in s.feed(piece)] + list(s.flush()) == c["out"], c
        assert split_text("".join(c["pieces"]), c["size"], c["overlap"]) == c["tout"], c


# -------------------------------------------------------------- http-server

def test_http_server_component_is_a_managed_process(upstream, make_server, monkeypatch):
    from .upstream import free_port

    monkeypatch.setenv("ECHO_PORT", str(free_port()))
    monkeypatch.setenv("PYTHON", sys.executable)
    srv = serve(make_server, upstream, "echo.yml")
    r = httpx.post(srv.url + "/api/workflows/runs", json={"input": {"text": "ping"}, "output_only": True}, timeout=60)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["text"] == "ping"
    r = httpx.post(srv.url + "/api/workflows/runs", json={"input": {"text": "pong"}, "output_only": True}, timeout=60)
    assert r.json() == {"text": "pong", "pid": first["pid"]}  # started once, on first use
    os.kill(first["pid"], 0)  # alive while the server runs
    srv.stop()  # returns after the lifespan shutdown, which stops (and reaps) managed processes
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)


def test_older_dialect_and_anthropic_sdk(env, make_server):
    import anthropic

    srv = serve(make_server, env, "legacy.yml")
    r = httpx.post(srv.url + "/api/workflows/runs", json={"input": {"prompt": "hi"}, "output_only": True}, timeout=30)
    assert r.content == b"data: Hel\n\ndata: lo\n\ndata: , wor\n\ndata: ld!\ndata: Bye\n\ndata:  now.\n\n"
    client = anthropic.Anthropic(base_url=srv.url, api_key="unused")
    with client.messages.stream(model="workflow/default", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "Hello, world!\nBye now."


def test_workflow_through_the_ai_sdk(env, make_server):
    import shutil

    node = shutil.which("node")
    js = Path(__file__).parent / "js"
    if node is None or not (js / "node_modules" / "ai").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node and tests/js/node_modules (the ai package) are required in CI")
        pytest.skip("node or the ai package (npm ci in tests/js) is missing")
    srv = serve(make_server, env, "chat-stream.yml")
    spec = {"url": srv.url, "model": "workflow/default",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}]}
    done = subprocess.run([node, "ui_stream.mjs", json.dumps(spec)], cwd=js, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["raw"]["status"] == 200 and out["raw"]["invalid"] == []  # every chunk valid for the ai package
    deltas = [c["delta"] for c in out["raw"]["valid"] if c["type"] == "text-delta"]
    assert deltas == ["Hel", "lo", ", wor", "ld!\nBye", " now."]
    msg = out["ui"]["message"]
    assert out["ui"]["errors"] == [] and [p["text"] for p in msg["parts"] if p["type"] == "text"] == \
        ["Hello, world!\nBye now."]


def test_serve_with_workflows_flag(tmp_path):
    from .upstream import free_port

    cfg = tmp_path / "sluiceway.yaml"
    cfg.write_text(f"embedded: false\nstore: {{url: 'sqlite+aiosqlite:///{tmp_path}/s.db'}}\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sluiceway.cli", "serve", "--config", str(cfg), "--port", str(port),
                             "--workflows", str(HERE / "grade.yml"), "--workflows", str(HERE / "greet.yml"),
                             "--log-level", "warning"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = proc.stdout.readline()  # the server prints its address once it is configured
        assert "sluiceway:" in line, line
        for _ in range(600):  # until it listens (or exits)
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/workflows", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.05)
        assert sorted(w["workflow_id"] for w in r.json()) == ["grade", "greet"]
        r = httpx.post(f"http://127.0.0.1:{port}/api/workflows/runs", timeout=30,
                       json={"workflow_id": "greet", "input": {"lang": "de", "name": "Ute"}, "output_only": True})
        assert r.json() == {"language": "German", "rendered": "[German] Hallo, Ute!"}
    finally:
        proc.terminate()
        proc.wait(20)
