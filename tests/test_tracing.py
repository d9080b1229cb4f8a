"""OpenTelemetry spans for model requests, parented on the caller's traceparent."""

from __future__ import annotations

import httpx
import pytest

from .upstream import chat_text_stream, usage_wire

otel = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def spans():
    from sluiceway.engine.tracing import setup_tracing, shutdown_tracing

    exporter = otel.InMemorySpanExporter()
    assert setup_tracing(exporter=exporter)
    yield exporter
    shutdown_tracing()


def test_each_model_request_is_a_span_with_genai_attributes(upstream, make_server, spans):
    upstream.add("traced", chat_text_stream(["a", "b"], usage=usage_wire(7, 2)))
    srv = make_server()
    body = {"model": "up/traced", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    headers = {"traceparent": f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"}
    with httpx.stream("POST", f"{srv.url}/v1/chat/completions", json=body, headers=headers) as r:
        r.read()
    r2 = httpx.post(f"{srv.url}/v1/messages", json={"model": "up/traced", "max_tokens": 10,
                                                    "messages": [{"role": "user", "content": "x"}]})
    assert r2.status_code == 200
    done = spans.get_finished_spans()
    assert [s.name for s in done] == ["chat up/traced", "chat up/traced"]
    chat = done[0]
    assert format(chat.context.trace_id, "032x") == PARENT_TRACE  # joined the caller's trace
    assert chat.attributes["gen_ai.request.model"] == "up/traced"
    assert chat.attributes["gen_ai.system"] == "up"
    assert (chat.attributes["gen_ai.usage.input_tokens"], chat.attributes["gen_ai.usage.output_tokens"]) == (7, 2)
    assert list(chat.attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert [e.name for e in chat.events] == ["first_token"]
    assert done[1].attributes["sluiceway.protocol"] != chat.attributes["sluiceway.protocol"]
    assert format(done[1].context.trace_id, "032x") != PARENT_TRACE


def test_tracing_is_off_without_an_endpoint(monkeypatch):
    from sluiceway.engine.tracing import setup_tracing

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert setup_tracing() is False
