"""Optional OpenTelemetry traces: one span per model request, parented on the
caller's ``traceparent``, with the GenAI semantic-convention attributes
(model, provider, token usage) and a ``first_token`` event.

Off unless ``telemetry.otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set (and the ``otel`` extra installed); when off, it costs one ``None`` check
per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..core.extras import MissingExtra, installed

log = logging.getLogger("sluiceway.tracing")

_tracer: Any = None
_provider: Any = None


def setup_tracing(endpoint: str | None = None, *, exporter: Any = None, service_name: str = "sluiceway") -> bool:
    """Install a tracer exporting to ``endpoint`` (OTLP/HTTP) or to ``exporter``."""
    global _tracer, _provider
    endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter is None and not endpoint:
        return False
    if exporter is None and not installed("otel"):  # telemetry.otlp_endpoint was refused at load_config
        log.warning("%s; traces are off", MissingExtra("otel", "OTEL_EXPORTER_OTLP_ENDPOINT").message)
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")  # type: ignore[union-attr]
        exporter = OTLPSpanExporter(endpoint=base if base.endswith("/v1/traces") else f"{base}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("sluiceway")
    return True


def shutdown_tracing() -> None:
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def start_span(protocol: str, model: str, headers: Mapping[str, str] | None) -> Any:
    """A span for one model request, or None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    ctx = extract(dict(headers)) if headers is not None else None
    return _tracer.start_span(f"chat {model}", context=ctx, kind=SpanKind.SERVER, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": model, "sluiceway.protocol": protocol})
