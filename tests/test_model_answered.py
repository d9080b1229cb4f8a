"""``model`` in a response is the model that answered (provider/model of the
deployment that served it, after any fallback), as OpenAI and Anthropic name
the model that answered; the name the client asked for (an alias, "default")
comes back in the ``x-sluiceway-alias`` header. Through the official SDKs."""

from __future__ import annotations

import anthropic
import openai

from .upstream import Script, chat_text_stream

MSG = [{"role": "user", "content": "x"}]


def test_alias_answers_with_the_deployment_model(upstream, make_server):
    upstream.add("ans-down", Script(['{"error":{"message":"down"}}'], status=503,
                                    headers={"content-type": "application/json"}))
    upstream.add("ans-up", chat_text_stream(["hi"]))
    srv = make_server(models={"fast": ["up/ans-down", "up/ans-up"]}, default_model="fast")
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)

    raw = c.chat.completions.with_raw_response.create(model="fast", messages=MSG)
    assert raw.parse().model == "up/ans-up" and raw.headers["x-sluiceway-alias"] == "fast"

    with c.chat.completions.with_streaming_response.create(model="default", messages=MSG, stream=True) as r:
        assert r.headers["x-sluiceway-alias"] == "default"
        chunks = list(r.parse())
    assert chunks and {ch.model for ch in chunks} == {"up/ans-up"}

    a = anthropic.Anthropic(base_url=srv.url, api_key="x", max_retries=0)
    raw = a.messages.with_raw_response.create(model="fast", max_tokens=10, messages=MSG)
    assert raw.parse().model == "up/ans-up" and raw.headers["x-sluiceway-alias"] == "fast"
    with a.messages.stream(model="fast", max_tokens=10, messages=MSG) as s:
        assert s.get_final_message().model == "up/ans-up"


def test_a_direct_model_has_no_alias_header(upstream, make_server):
    upstream.add("ans-direct", chat_text_stream(["ok"]))
    srv = make_server()
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="up/ans-direct", messages=MSG)
    assert raw.parse().model == "up/ans-direct" and "x-sluiceway-alias" not in raw.headers


def test_responses_name_the_model_that_answered(upstream, make_server):
    upstream.add("ans-resp", chat_text_stream(["yes"]))
    srv = make_server(models={"quick": ["up/ans-resp"]})
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    raw = c.responses.with_raw_response.create(model="quick", input="x", store=False)
    assert raw.parse().model == "up/ans-resp" and raw.headers["x-sluiceway-alias"] == "quick"
    # stored and streamed: served as a run
    with c.responses.with_streaming_response.create(model="quick", input="x", stream=True) as r:
        assert r.headers["x-sluiceway-alias"] == "quick"
        events = list(r.parse())
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.model == "up/ans-resp"
    assert c.responses.retrieve(done[0].response.id).model == "up/ans-resp"
