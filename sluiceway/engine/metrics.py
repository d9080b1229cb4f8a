"""Prometheus metrics. One registry per gateway, so several apps in one
process (tests, embedding) never collide on the global default registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

MAX_CHILDREN = 10_000
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640, 1280)
# whole requests, streams included: a long answer takes tens of seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("sluiceway_requests", "Requests by protocol, model and outcome",
                                ["protocol", "model", "outcome"], registry=r)
        self.ttft = Histogram("sluiceway_time_to_first_token_seconds", "Request start to first content event",
                              ["model", "provider"], buckets=TTFT_BUCKETS, registry=r)
        self.stream_duration = Histogram("sluiceway_stream_duration_seconds",
                                         "Request start to the end of its stream, by model, provider and outcome",
                                         ["model", "provider", "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens_per_s = Histogram("sluiceway_output_tokens_per_second", "Output tokens/s after first token",
                                      ["model"], buckets=RATE_BUCKETS, registry=r)
        self.tokens = Counter("sluiceway_tokens", "Tokens by direction", ["model", "direction"], registry=r)
        self.active_streams = Gauge("sluiceway_active_streams", "Streams being sent to clients", registry=r)
        self.upstream_errors = Counter("sluiceway_upstream_errors", "Upstream failures by provider and class",
                                       ["provider", "code"], registry=r)
        self.cancellations = Counter("sluiceway_cancellations", "Streams cancelled by client disconnect",
                                     registry=r)
        self.fallbacks = Counter("sluiceway_fallbacks", "Requests moved to another deployment",
                                 ["model", "kind"], registry=r)  # kind: before_first_token | midstream
        self.retries = Counter("sluiceway_retries", "Retries of the same deployment", ["provider"], registry=r)
        # every HTTP request (server/observe.HttpMetrics), also those failing before a stream starts
        self.http_requests = Counter("sluiceway_http_requests", "HTTP requests by method, route, status, outcome",
                                     ["method", "route", "status", "outcome"], registry=r)
        self.http_latency = Histogram("sluiceway_http_request_duration_seconds",
                                      "Request start to the end of the response body",
                                      ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        # the process_* and python_* series Prometheus clients export by default
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.circuit_open = Gauge("sluiceway_circuit_open", "1 while a deployment's circuit is open",
                                  ["deployment"], registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus_client validates
        and locks on every ``labels`` call, and a request makes about eight.
        Children are never removed here, so a remembered one stays valid."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            if len(self._children) >= MAX_CHILDREN:  # a label (a model name) a client made up, many times over
                self._children.clear()
            c = self._children[key] = metric.labels(*labels)
        return c
