"""Per-request observation: Prometheus figures for each stream, and a
request id carried into every log line."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping

import orjson

from ..core import Event
from ..engine.metrics import Metrics
from ..engine.runs import Outcome
from .tracing import start_span

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class StreamObserver:
    """Metrics and the trace span of one stream, as a stream observer
    (``engine.runs.Observer``): looks at the first and last event of each
    batch only, so it costs next to nothing per chunk."""

    __slots__ = ("m", "protocol", "model", "t0", "first_at", "output", "input", "outcome", "_ended", "span",
                 "reason")

    def __init__(self, metrics: Metrics, protocol: str, model: str, t0: float, *,
                 headers: Mapping[str, str] | None = None, deployment: str | None = None) -> None:
        self.m, self.protocol, self.model, self.t0 = metrics, protocol, model, t0
        self.first_at: float | None = None
        self.output = self.input = 0
        self.outcome = "complete"
        self.reason: str | None = None
        self._ended = False
        metrics.active_streams.inc()
        self.span = start_span(protocol, model, headers)
        if self.span is not None and deployment:
            provider, _, upstream = deployment.partition("/")
            self.span.set_attributes({"gen_ai.system": provider, "gen_ai.response.model": upstream})

    def batch(self, events: list[Event]) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
            self.m.ttft.labels(self.model).observe(self.first_at - self.t0)
            if self.span is not None:
                self.span.add_event("first_token")
        last = events[-1] if events else None
        if last is not None and last.type in ("finish", "error"):
            if last.type == "finish":
                self.output, self.input = last.usage.output, last.usage.input
                self.reason = last.reason
            else:
                self.outcome = "error"

    async def end(self, outcome: Outcome) -> None:
        self.close(outcome)

    def close(self, outcome: Outcome) -> None:
        if self._ended:
            return
        self._ended = True
        m = self.m
        m.active_streams.dec()
        if outcome is Outcome.INTERRUPTED:  # the metric's label for it has always been "disconnect"
            self.outcome = "disconnect"
            m.cancellations.inc()
        m.requests.labels(self.protocol, self.model, self.outcome).inc()
        if self.span is not None:
            self.span.set_attributes({"gen_ai.usage.input_tokens": self.input,
                                      "gen_ai.usage.output_tokens": self.output,
                                      "sluiceway.outcome": self.outcome})
            if self.reason:
                self.span.set_attribute("gen_ai.response.finish_reasons", [self.reason])
            if self.outcome == "error":
                from opentelemetry.trace import Status, StatusCode

                self.span.set_status(Status(StatusCode.ERROR))
            self.span.end()
        if self.output:
            m.tokens.labels(self.model, "output").inc(self.output)
            m.tokens.labels(self.model, "input").inc(self.input)
            if self.first_at is not None:
                gen = time.perf_counter() - self.first_at
                if gen > 0.001:
                    m.tokens_per_s.labels(self.model).observe(self.output / gen)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage(), "request_id": request_id.get()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations chatter at every start
