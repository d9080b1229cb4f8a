"""Prometheus figures and the OpenTelemetry span of one stream, as a stream
observer (``Observer``): the same for a run and for a plain stream."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ...core import Event
from ..metrics import Metrics
from ..tracing import start_span
from .observers import Outcome


class MetricsObserver:
    """Looks at the first and last event of each batch only, so it costs
    next to nothing per chunk."""

    __slots__ = ("m", "protocol", "model", "provider", "t0", "first_at", "output", "input", "outcome", "_ended",
                 "span", "reason")

    def __init__(self, metrics: Metrics, protocol: str, model: str, t0: float, *,
                 headers: Mapping[str, str] | None = None, deployment: str | None = None) -> None:
        self.m, self.protocol, self.model, self.t0 = metrics, protocol, model, t0
        self.provider = (deployment or "").partition("/")[0]
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
            self.m.child(self.m.ttft, self.model, self.provider).observe(self.first_at - self.t0)
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
        m.child(m.requests, self.protocol, self.model, self.outcome).inc()
        m.child(m.stream_duration, self.model, self.provider, self.outcome).observe(time.perf_counter() - self.t0)
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
            m.child(m.tokens, self.model, "output").inc(self.output)
            m.child(m.tokens, self.model, "input").inc(self.input)
            if self.first_at is not None:
                gen = time.perf_counter() - self.first_at
                if gen > 0.001:
                    m.child(m.tokens_per_s, self.model).observe(self.output / gen)
