"""model-compose workflows on model-compose's own HTTP API.

Expected bytes and bodies marked "oracle" were recorded by running the same
files through model-compose 0.4.120 (``model-compose -f FILE up``) against the
same scripted upstream, so a user's compose file answers the same here.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from .conftest import make_config
from .upstream import DROP, HANG, FakeUpstream, Script, chat_chunk, chat_text_stream, sse

HERE = Path(__file__).parent / "workflows"
RUNS = "/api/workflows/runs"


@pytest.fixture
def env(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    monkeypatch.setenv("WF_GREETING", "Hello")
    monkeypatch.delenv("WF_REGION", raising=False)
    upstream.add("wf-chat", chat_text_stream(["Hel", "lo", ", wor", "ld!\nBye", "", " now."]))
    upstream.add("wf-chat-json", [json.dumps({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()],
        headers={"content-type": "application/json"})
    upstream.add("wf-sentences", chat_text_stream(["The first", " sentence. A sec", "ond one! And", " a third?", " Tail"]))
    upstream.add("wf-fail", [b'{"error": {"message": "boom"}}'], status=500, headers={"content-type": "application/json"})
    return upstream


def serve(make_server, upstream: FakeUpstream, *paths: str):
    return make_server(make_config(upstream, workflows=[str(HERE / p) for p in paths]))


def post(srv, body: dict, path: str = RUNS) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=30)


# ---------------------------------------------------------------- streaming

def test_stream_bytes_match_model_compose(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    # oracle: one data: per non-empty chunk, a chunk's lines each a data: line, no [DONE]
    assert r.content == b"data: Hel\n\ndata: lo\n\ndata: , wor\n\ndata: ld!\ndata: Bye\n\ndata:  now.\n\n"
    sent = env.last("wf-chat").body
    assert sent["messages"] == [{"role": "user", "content": "hi"}] and sent["stream"] is True
    assert sent["temperature"] == 0.7  # ${input.temperature as number | 0.7}


def test_streamed_output_needs_output_only(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml")
    r = post(srv, {"input": {"prompt": "hi"}})
    assert r.status_code == 400  # oracle
    assert r.json() == {"detail": 'Streaming output requires output_only=true. Retry with {"output_only": true} '
                                  "in the request body."}
    r = post(srv, {"input": {"prompt": "hi"}, "wait_for_completion": False, "output_only": True})
    assert (r.status_code, r.json()) == (400, {"detail": "output_only=true requires wait_for_completion=true."})
    r = post(srv, {"workflow_id": "nope", "input": {}})
    assert (r.status_code, r.json()) == (404, {"detail": "Workflow 'nope' not found."})
    r = httpx.get(srv.url + "/api/tasks/nope")
    assert (r.status_code, r.json()) == (404, {"detail": "Task not found."})


def test_sentence_splitter_fed_by_a_live_stream(env, make_server):
    srv = serve(make_server, env, "sentences.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.content == b"data: The first sentence.\n\ndata: A second one!\n\ndata: And a third?\n\ndata: Tail\n\n"
    r = post(srv, {"input": {"prompt": "hi", "min_chunk_length": 30}, "output_only": True})
    assert r.content == b"data: The first sentence. A second one!\n\ndata: And a third? Tail\n\n"  # oracle


def test_json_stream_chunks(env, make_server):
    srv = serve(make_server, env, "json-stream.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.content == (  # oracle: json.dumps of every chunk, the [DONE] one included
        b'data: {"text": "", "finish": null}\n\ndata: {"text": "Hel", "finish": null}\n\n'
        b'data: {"text": "lo", "finish": null}\n\ndata: {"text": ", wor", "finish": null}\n\n'
        b'data: {"text": "ld!\\nBye", "finish": null}\n\ndata: {"text": "", "finish": null}\n\n'
        b'data: {"text": " now.", "finish": null}\n\ndata: {"text": null, "finish": "stop"}\n\n'
        b'data: {"text": null, "finish": null}\n\n')


def test_an_earlier_stream_used_in_text_completes_first(env, make_server):
    srv = serve(make_server, env, "summarize.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.json() == "They said: Hello, world!\nBye now."


def test_midstream_upstream_failure_is_an_error_event(env, make_server):
    env.add("wf-chat", [sse(chat_chunk({"content": "partial"})), 0.05, DROP])
    srv = serve(make_server, env, "chat-stream.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.status_code == 200
    body = r.content
    assert body.startswith(b"data: partial\n\n")
    # model-compose ends such a stream silently; sluiceway says why
    assert b"event: error\ndata: " in body
    detail = json.loads(body.split(b"event: error\ndata: ")[1].split(b"\n")[0])["detail"]
    assert detail


def test_client_leaving_closes_the_upstream(env, make_server):
    env.add("wf-chat", [sse(chat_chunk({"content": "one"})), HANG])
    srv = serve(make_server, env, "chat-stream.yml")
    with httpx.stream("POST", srv.url + RUNS, json={"input": {"prompt": "hi"}, "output_only": True}) as r:
        first = next(r.iter_raw())
        assert first == b"data: one\n\n"
    assert env.last("wf-chat").wait_closed(10) and env.last("wf-chat").client_closed


# ---------------------------------------------------------- JSON and tasks

def test_json_output_and_task_state(env, make_server):
    srv = serve(make_server, env, "chat.yml")
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.content == b'{"message":"Hi there","tokens":5}'  # oracle
    r = post(srv, {"input": {"prompt": "hi"}, "session_id": "s1", "metadata": {"a": 1}})
    state = r.json()
    assert state.pop("task_id")
    assert state == {"status": "completed", "workflow_id": "__workflow__", "output": {"message": "Hi there", "tokens": 5},
                     "session_id": "s1", "metadata": {"a": 1}}  # oracle
    assert list(r.json()) == ["task_id", "status", "workflow_id", "output", "session_id", "metadata"]


def test_failure_is_a_clean_error(env, make_server):
    srv = serve(make_server, env, "chat.yml")
    r = post(srv, {"input": {"prompt": "hi", "model": "wf-fail"}})
    assert r.status_code == 200 and r.json()["status"] == "failed"  # oracle: the state says failed
    assert "500" in r.json()["error"] and "boom" in r.json()["error"]
    r = post(srv, {"input": {"prompt": "hi", "model": "wf-fail"}, "output_only": True})
    assert r.status_code >= 500 and "boom" in r.json()["detail"]
    assert "Traceback" not in r.text  # model-compose puts its traceback here


def test_async_run_polled_through_tasks(env, make_server, tmp_path):
    srv = serve(make_server, env, "gate.yml")
    gate = tmp_path / "gate"
    r = post(srv, {"input": {"gate": str(gate), "word": "sesame"}, "wait_for_completion": False})
    started = r.json()
    assert r.status_code == 200 and set(started) == {"task_id", "status", "workflow_id"}
    assert started["status"] == "pending" and started["workflow_id"] == "__workflow__"  # oracle
    tid = started["task_id"]
    r = httpx.get(f"{srv.url}/api/tasks/{tid}?output_only=true")
    assert r.status_code == 202 and r.json()["status"] in ("pending", "processing")
    assert httpx.get(f"{srv.url}/api/tasks/{tid}").json()["status"] in ("pending", "processing")
    gate.touch()  # now the job may finish
    for _ in range(2000):
        state = httpx.get(f"{srv.url}/api/tasks/{tid}").json()
        if state["status"] not in ("pending", "processing"):
            break
    assert state["status"] == "completed" and state["output"] == {"said": "opened sesame"}
    r = httpx.get(f"{srv.url}/api/tasks/{tid}?output_only=true")
    assert (r.status_code, r.json()) == (200, {"said": "opened sesame"})


def test_async_run_of_a_streamed_output_collects_it(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml")
    tid = post(srv, {"input": {"prompt": "hi"}, "wait_for_completion": False}).json()["task_id"]
    for _ in range(2000):
        state = httpx.get(f"{srv.url}/api/tasks/{tid}").json()
        if state["status"] not in ("pending", "processing"):
            break
    # nobody reads a polled run's stream live: it is read to its end, and the task holds the whole text
    assert state["status"] == "completed" and state["output"] == "Hello, world!\nBye now."
    assert env.last("wf-chat").completed


def test_workflow_list_and_schema(env, make_server):
    srv = serve(make_server, env, "chat-stream.yml")
    assert httpx.get(srv.url + "/api/workflows").json() == [{"workflow_id": "__workflow__", "title": "Chat stream"}]
    assert httpx.get(srv.url + "/api/workflows?include_schema=true").json() == [{  # oracle
        "workflow_id": "__workflow__", "title": "Chat stream", "description": "Streams a chat completion's text deltas",
        "input": [{"name": "model", "type": "string", "is_list": False, "default": "wf-chat"},
                  {"name": "prompt", "type": "text", "is_list": False},
                  {"name": "temperature", "type": "number", "is_list": False, "default": 0.7}],
        "output": [{"type": "stream", "is_list": False, "subtype": "text"}]}]


def test_schemas_of_json_outputs(env, make_server):
    srv = serve(make_server, env, "chat.yml")
    assert httpx.get(srv.url + "/api/workflows?include_schema=true").json()[0]["output"] == [  # oracle
        {"name": "message", "type": "string", "is_list": False}, {"name": "tokens", "type": "string", "is_list": False}]
    srv = serve(make_server, env, "split-text.yml")
    assert httpx.get(srv.url + "/api/workflows?include_schema=true").json() == [{  # oracle
        "workflow_id": "__workflow__", "title": "Text Chunk Splitter",
        "input": [{"name": "text", "type": "text", "is_list": False},
                  {"name": "chunk_size", "type": "integer", "is_list": False, "default": 1000},
                  {"name": "chunk_overlap", "type": "integer", "is_list": False, "default": 200}],
        "output": [{"type": "json", "is_list": False}]}]


def test_text_splitter(env, make_server):
    srv = serve(make_server, env, "split-text.yml")
    text = ("Alpha beta gamma. Delta epsilon zeta eta theta.\n\nIota kappa lambda mu. Nu xi omicron pi rho sigma tau."
            "\nUpsilon phi chi psi omega.")
    r = post(srv, {"input": {"text": text, "chunk_size": 40, "chunk_overlap": 10}, "output_only": True})
    assert r.json() == ["Alpha beta gamma. Delta epsilon zeta eta", "zeta eta theta.",  # oracle
                        "Iota kappa lambda mu. Nu xi omicron pi", "pi rho sigma tau.", "Upsilon phi chi psi omega."]


# ------------------------------------------------------------- job flow

def test_if_and_switch_routing(env, make_server):
    srv = serve(make_server, env, "grade.yml", "greet.yml")  # two files: ids from their names
    assert {w["workflow_id"] for w in httpx.get(srv.url + "/api/workflows").json()} == {"grade", "greet"}
    r = post(srv, {"workflow_id": "grade", "input": {"score": 90}, "output_only": True})
    assert r.content == b'{"grade":"high","score":90,"line":"grade=high score=90: Great result."}'  # oracle
    r = post(srv, {"workflow_id": "grade", "input": {"score": "70"}, "output_only": True})
    assert r.json() == {"grade": "mid", "score": 70, "line": "grade=mid score=70: Passed."}
    r = post(srv, {"workflow_id": "grade", "input": {"score": 10}, "output_only": True})
    assert r.json()["grade"] == "low"
    r = post(srv, {"workflow_id": "grade", "input": {"score": "abc"}, "output_only": True})
    assert r.status_code == 400 and r.json() == {"detail": "job 'classify' failed: ${input.score}: cannot convert "
                                                           "'abc' to integer"}  # model-compose: 500, a traceback
    r = post(srv, {"workflow_id": "greet", "input": {"lang": "fr", "name": "Zoé"}, "output_only": True})
    assert r.json() == {"language": "French", "rendered": "[French] Bonjour, Zoé !"}
    r = post(srv, {"workflow_id": "greet", "input": {"lang": "xx", "name": "Bo"}, "output_only": True})
    assert r.json() == {"language": "Unknown", "rendered": "[Unknown] Hi, Bo (no greeting for 'xx')"}
    # with two files there is no default workflow
    assert post(srv, {"input": {}}).status_code == 404


def test_parallel_fan_in(env, make_server, tmp_path):
    srv = serve(make_server, env, "fanin.yml")
    # left and right each wait for the other: only running both at once lets either finish
    r = post(srv, {"input": {"dir": str(tmp_path)}, "output_only": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"both": "left met + right met"}


def test_retry_timeout_and_on_error(env, make_server):
    srv = serve(make_server, env, "resilient.yml")
    ok = json.dumps({"choices": [{"message": {"content": "recovered"}}]}).encode()
    env.add("wf-flaky", Script([b'{"error": "busy"}'], status=503, headers={"content-type": "application/json"},
                               times=2, then=Script([ok], headers={"content-type": "application/json"})))
    r = post(srv, {"workflow_id": "retried", "input": {"model": "wf-flaky"}, "output_only": True})
    assert r.json() == {"answer": "recovered"}
    assert len(env.for_model("wf-flaky")) == 3  # two 503s, then the answer

    env.add("wf-hang", [HANG], headers={"content-type": "application/json"})
    r = post(srv, {"workflow_id": "timed-out", "input": {"model": "wf-hang"}, "output_only": True})
    assert r.json()["fallback"] is True and "timed out" in r.json()["reason"]
    assert env.last("wf-hang").wait_closed(10)  # the timeout closed the upstream request

    env.add("wf-broken", [b"{}"], status=500, headers={"content-type": "application/json"})
    r = post(srv, {"workflow_id": "rerouted", "input": {"model": "wf-broken"}, "output_only": True})
    assert r.json() == {"said": "plan b for wf-broken"}

    r = post(srv, {"workflow_id": "slow-shell", "input": {}, "output_only": True})
    assert r.status_code == 504 and "timed out" in r.json()["detail"]

    env.add("wf-stall", [sse(chat_chunk({"content": "so far"})), HANG])
    r = post(srv, {"workflow_id": "stalled-stream", "input": {"model": "wf-stall"}, "output_only": True})
    assert r.content.startswith(b"data: so far\n\nevent: error\ndata: ")
    assert env.last("wf-stall").wait_closed(10)


def test_named_actions_of_one_component(env, make_server):
    srv = serve(make_server, env, "actions.yml")
    env.add("wf-actions", [json.dumps({"choices": [{"message": {"content": "forty-two"}}]}).encode()],
            headers={"content-type": "application/json"})
    r = post(srv, {"workflow_id": "both", "input": {"prompt": "answer?"}, "output_only": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["answer"] == "forty-two" and "wf-actions" in [m["id"] for m in out["models"]]
    assert env.last("wf-actions").body["messages"] == [{"role": "user", "content": "answer?"}]


def test_env_bindings(env, make_server, monkeypatch):
    srv = serve(make_server, env, "env.yml")
    r = post(srv, {"input": {"name": "Ada"}, "output_only": True})
    assert r.json() == {"greeting": "Hello from eu-west, Ada", "region": "eu-west"}
    r = post(srv, {"input": {}, "output_only": True})
    assert r.json()["greeting"] == "Hello from eu-west, stranger"
    monkeypatch.setenv("WF_REGION", "ap-south")
    srv = serve(make_server, env, "env.yml")
    assert post(srv, {"input": {"name": "Bo"}, "output_only": True}).json()["region"] == "ap-south"


def test_model_component_goes_through_the_router(env, make_server):
    env.add("wf-model", chat_text_stream(["Short", " answer."]))
    srv = serve(make_server, env, "model.yml")
    r = post(srv, {"input": {"question": "why?"}, "output_only": True})
    assert r.content == b"data: Short\n\ndata:  answer.\n\n"
    sent = env.last("wf-model").body
    assert [m["role"] for m in sent["messages"]] == ["system", "user"] and sent["max_tokens"] == 64
    r = post(srv, {"input": {"question": "why?", "stream": False}, "output_only": True})
    assert r.json() == "Short answer."


def test_no_workflows_configured(env, make_server):
    srv = make_server(make_config(env))
    assert httpx.get(srv.url + "/api/workflows").json() == []
    assert post(srv, {"input": {}}).status_code == 404


def test_api_keys_apply(env, make_server):
    srv = make_server(make_config(env, workflows=[str(HERE / "chat.yml")], server={"api_keys": ["k1"]}))
    r = post(srv, {"input": {"prompt": "hi"}, "output_only": True})
    assert r.status_code == 401 and "detail" in r.json()
    r = httpx.post(srv.url + RUNS, json={"input": {"prompt": "hi"}, "output_only": True},
                   headers={"authorization": "Bearer k1"})
    assert r.json() == {"message": "Hi there", "tokens": 5}


def test_folder_of_workflows(env, make_server, tmp_path):
    for name in ("grade.yml", "greet.yml"):
        (tmp_path / name).write_text((HERE / name).read_text())
    srv = make_server(make_config(env, workflows=[str(tmp_path)]))
    assert sorted(w["workflow_id"] for w in httpx.get(srv.url + "/api/workflows").json()) == ["grade", "greet"]


def test_client_leaving_a_chained_stream_closes_the_upstream(env, make_server):
    env.add("wf-sentences", [sse(chat_chunk({"content": "One. Two"})), HANG])
    srv = serve(make_server, env, "sentences.yml")
    with httpx.stream("POST", srv.url + RUNS, json={"input": {"prompt": "hi"}, "output_only": True}) as r:
        assert next(r.iter_raw()) == b"data: One.\n\n"
    rec = env.last("wf-sentences")
    assert rec.wait_closed(10) and rec.client_closed  # through the splitter, back to the chat's upstream


def test_terminal_outputs_merge_and_single_condition_if(env, make_server):
    srv = serve(make_server, env, "misc.yml")
    r = post(srv, {"workflow_id": "merged", "input": {"a": "x", "b": "y"}, "output_only": True})
    assert r.json() == {"said": "x", "other": "y", "code": 0}
    r = post(srv, {"workflow_id": "single-if", "input": {"word": "sunrise"}, "output_only": True})
    assert r.json() == {"said": "bright sunrise"}
    r = post(srv, {"workflow_id": "single-if", "input": {"word": "moon"}, "output_only": True})
    assert r.json() == {"said": "dim moon"}


def test_a_key_limited_to_some_models_runs_only_those_workflows(env, make_server):
    srv = make_server(make_config(env, workflows=[str(HERE / "grade.yml"), str(HERE / "greet.yml")],
                                  server={"admin_key": "adm"}))
    made = httpx.post(srv.url + "/admin/keys", json={"name": "graders", "models": ["workflow/grade"]},
                      headers={"authorization": "Bearer adm"})
    assert made.status_code == 201, made.text
    key = {"authorization": f"Bearer {made.json()['key']}"}
    r = httpx.post(srv.url + RUNS, json={"workflow_id": "grade", "input": {"score": 70}, "output_only": True},
                   headers=key)
    assert r.json()["grade"] == "mid"
    r = httpx.post(srv.url + RUNS, json={"workflow_id": "greet", "input": {"lang": "fr", "name": "A"}}, headers=key)
    assert (r.status_code, r.json()) == (403, {"detail": "This API key may not use workflow/greet."})
    r = httpx.post(srv.url + "/api/v1/run/greet", json={"input_value": "x"}, headers=key)
    assert r.status_code == 403
