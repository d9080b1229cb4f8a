"""Gateway duties proven by injecting faults over real HTTP with the scripted upstream."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .upstream import HANG, Script, chat_chunk, chat_text_stream, sse

ASK = [{"role": "user", "content": "x"}]


def err(status: int, msg: str, **headers) -> Script:
    return Script([json.dumps({"error": {"message": msg, "type": "server_error"}})], status=status,
                  headers={"content-type": "application/json", **headers})


def client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=30)


def metric(srv, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{srv.url}/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_upstream_500_falls_back_and_metrics_count_it(upstream, make_server):
    upstream.add("r-500", err(500, "kaput"))
    upstream.add("r-ok", chat_text_stream(["rescued"]))
    srv = make_server(models={"m": ["up/r-500", "up/r-ok"]})
    out = client(srv).chat.completions.create(model="m", messages=ASK)
    assert out.choices[0].message.content == "rescued"
    assert metric(srv, "sluiceway_fallbacks_total") == 1
    assert metric(srv, 'sluiceway_upstream_errors_total{code="upstream_error",provider="up"}') == 1
    assert metric(srv, 'sluiceway_requests_total{model="m",outcome="complete",protocol="openai-chat"}') == 1


def test_429_with_retry_after_is_retried_after_the_delay(upstream, make_server):
    upstream.add("r-429", Script(err(429, "slow down", **{"retry-after": "1"}).steps, status=429,
                                 headers={"content-type": "application/json", "retry-after": "1"}, times=1,
                                 then=Script(chat_text_stream(["after the wait"]))))
    srv = make_server(resilience={"retries": 2})
    t0 = time.monotonic()
    out = client(srv).chat.completions.create(model="up/r-429", messages=ASK)
    took = time.monotonic() - t0
    assert out.choices[0].message.content == "after the wait"
    assert 1.0 <= took < 3.0, took
    recs = upstream.for_model("r-429")
    assert len(recs) == 2 and recs[1].started - recs[0].started >= 1.0
    assert metric(srv, "sluiceway_retries_total") == 1


def test_retry_after_longer_than_the_cap_goes_to_the_next_deployment(upstream, make_server):
    upstream.add("r-429-long", err(429, "come back tomorrow", **{"retry-after": "3600"}))
    upstream.add("r-spare", chat_text_stream(["spare"]))
    srv = make_server(models={"m": ["up/r-429-long", "up/r-spare"]}, resilience={"retries": 3})
    t0 = time.monotonic()
    assert client(srv).chat.completions.create(model="m", messages=ASK).choices[0].message.content == "spare"
    assert time.monotonic() - t0 < 2


def test_stall_before_first_token_times_out_and_falls_back(upstream, make_server):
    upstream.add("r-stall", [sse(chat_chunk({"role": "assistant", "content": ""})), HANG])
    upstream.add("r-fast", chat_text_stream(["quick"]))
    srv = make_server(models={"m": {"deployments": [
        {"provider": "up", "model": "r-stall", "timeouts": {"first_token": 0.3}},
        {"provider": "up", "model": "r-fast"}]}})
    t0 = time.monotonic()
    assert client(srv).chat.completions.create(model="m", messages=ASK).choices[0].message.content == "quick"
    assert time.monotonic() - t0 < 2
    assert upstream.last("r-stall").wait_closed(1.0)


def test_first_token_deadline_per_request_header(upstream, make_server):
    upstream.add("r-stall2", [sse(chat_chunk({"role": "assistant", "content": ""})), HANG])
    srv = make_server()
    r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "up/r-stall2", "messages": ASK},
                   headers={"x-sluiceway-first-token-timeout": "0.3"}, timeout=10)
    # the deadline covers waiting for headers and for the first token alike
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "up/r-stall2", "messages": ASK},
                   headers={"x-sluiceway-first-token-timeout": "soon"})
    assert r.status_code == 400


def test_midstream_stall_is_an_in_stream_error_with_partial_text_intact(upstream, make_server):
    upstream.add("r-idle", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "partial "})), sse(chat_chunk({"content": "text"})), HANG])
    srv = make_server(timeouts={"idle": 0.3})
    got = []
    with pytest.raises(openai.APIError, match="idle timeout"):
        for c in client(srv).chat.completions.create(model="up/r-idle", messages=ASK, stream=True):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert "".join(got) == "partial text"
    assert upstream.last("r-idle").wait_closed(1.0)


def test_total_deadline_ends_a_stream_that_never_goes_idle(upstream, make_server):
    """Every read moves the idle deadline on; the total deadline must still
    fire mid-read (one timer per stream, re-armed as the deadlines move)."""
    steps = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for _ in range(40):
        steps += [0.05, sse(chat_chunk({"content": "."}))]
    upstream.add("r-drip", steps)
    srv = make_server(timeouts={"idle": 0.3, "total": 0.6})
    got, t0 = [], time.monotonic()
    with pytest.raises(openai.APIError, match="total timeout"):
        for c in client(srv).chat.completions.create(model="up/r-drip", messages=ASK, stream=True):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    took = time.monotonic() - t0
    assert 3 <= len(got) < 40, got  # dots arrived, and the stream was cut before its end
    assert took < 1.8, took
    assert upstream.last("r-drip").wait_closed(1.0)


def test_midstream_failover_continues_seamlessly_on_the_next_deployment(upstream, make_server):
    upstream.add("r-dies", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "The answer "})), sse(chat_chunk({"content": "is "})), HANG])
    upstream.add("r-continues", chat_text_stream(["forty-two."]))
    srv = make_server(timeouts={"idle": 0.3},
                      models={"m": {"deployments": ["up/r-dies", "up/r-continues"], "midstream_failover": True}})
    chunks = list(client(srv).chat.completions.create(model="m", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The answer is forty-two."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role == "assistant") == 1
    cont = upstream.last("r-continues").body["messages"]
    assert cont[-1] == {"role": "assistant", "content": "The answer is "}
    assert metric(srv, 'sluiceway_fallbacks_total{kind="midstream",model="m"}') == 1


def test_circuit_opens_after_failures_and_recovers_after_cooldown(upstream, make_server):
    upstream.add("r-flaky", err(503, "down"))
    upstream.add("r-backup", chat_text_stream(["backup"]))
    srv = make_server(models={"m": ["up/r-flaky", "up/r-backup"]},
                      resilience={"retries": 0, "breaker_failures": 2, "breaker_cooldown": 0.5})
    c = client(srv)
    for _ in range(4):
        assert c.chat.completions.create(model="m", messages=ASK).choices[0].message.content == "backup"
    # after 2 failures the circuit is open: the flaky deployment is not called again
    assert len(upstream.for_model("r-flaky")) == 2
    assert metric(srv, 'sluiceway_circuit_open{deployment="up/r-flaky"}') == 1
    upstream.add("r-flaky", chat_text_stream(["healed"]))
    time.sleep(0.6)
    assert c.chat.completions.create(model="m", messages=ASK).choices[0].message.content == "healed"  # probe
    assert metric(srv, 'sluiceway_circuit_open{deployment="up/r-flaky"}') == 0
    assert c.chat.completions.create(model="m", messages=ASK).choices[0].message.content == "healed"


def test_cancellations_and_ttft_are_in_metrics(upstream, make_server):
    upstream.add("r-slow", [sse(chat_chunk({"role": "assistant", "content": ""})),
                            sse(chat_chunk({"content": "a"})), HANG])
    upstream.add("r-quick", chat_text_stream(["a", "b"]))
    srv = make_server()
    c = client(srv)
    list(c.chat.completions.create(model="up/r-quick", messages=ASK, stream=True))
    stream = c.chat.completions.create(model="up/r-slow", messages=ASK, stream=True)
    next(iter(stream))
    stream.close()
    assert upstream.last("r-slow").wait_closed(1.0)
    deadline = time.monotonic() + 2
    while metric(srv, "sluiceway_cancellations_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(srv, "sluiceway_cancellations_total") == 1
    assert metric(srv, 'sluiceway_time_to_first_token_seconds_count{model="up/r-quick",provider="up"}') == 1
    assert metric(srv, "sluiceway_active_streams") == 0


def test_log_lines_carry_the_request_id_as_json(upstream, make_server):
    import logging

    import orjson

    from sluiceway.server.observe import JsonFormatter, RequestIdFilter

    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sluiceway.router")
    logger.addHandler(handler)
    try:
        upstream.add("r-log-fail", err(500, "kaput"))
        upstream.add("r-log-ok", chat_text_stream(["ok"]))
        srv = make_server(models={"m": ["up/r-log-fail", "up/r-log-ok"]})
        r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "m", "messages": ASK},
                       headers={"x-request-id": "trace-me-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-me-42"
    finally:
        logger.removeHandler(handler)
    docs = [orjson.loads(line) for line in lines]
    assert any(d["request_id"] == "trace-me-42" and "r-log-fail" in d["message"] for d in docs), docs
