"""Model routing: a public model name → deployments → an opened stream.

Retries and fallback happen only before the first content event has been
produced, so nothing a client has seen is ever repeated: ``open`` pulls
batches until one carries more than ``start`` and only then hands the stream
over. An alias may opt in to mid-stream failover, which continues on the
next deployment with the partial answer as an assistant prefix.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from ..core import (
    ChatRequest,
    Deadlines,
    Event,
    Message,
    NotFound,
    RateLimited,
    SluicewayError,
    UpstreamUnavailable,
)
from ..providers import Provider
from . import inflight
from .config import DeploymentConfig, ModelConfig, Timeouts
from .metrics import Metrics
from .resilience import Breaker, ResilienceConfig, backoff

log = logging.getLogger("sluiceway.router")


@dataclass(slots=True)
class Deployment:
    provider: Provider
    model: str  # upstream model id
    deadlines: Deadlines
    weight: float = 1.0
    priority: int = 0
    breaker: Breaker = field(default_factory=Breaker)
    active: int = 0  # streams in flight, for least-busy

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


@dataclass(slots=True)
class Route:
    alias: str
    deployments: list[Deployment]
    strategy: str = "priority"
    retries: int = 1
    midstream_failover: bool = False

    def order(self) -> list[Deployment]:
        deps = self.deployments
        if len(deps) == 1:
            return list(deps)
        if self.strategy == "weighted":
            pool, out = list(deps), []
            while pool:
                pick = random.choices(pool, weights=[max(d.weight, 1e-9) for d in pool])[0]
                pool.remove(pick)
                out.append(pick)
            return out
        if self.strategy == "least-busy":
            return sorted(deps, key=lambda d: (d.active, d.priority))
        return sorted(deps, key=lambda d: d.priority)


@dataclass(slots=True)
class Opened:
    """A stream whose first content batch has arrived."""

    first: list[Event]
    rest: AsyncIterator[list[Event]]
    deployment: Deployment
    attempts: list[str] = field(default_factory=list)  # why earlier deployments were skipped
    failovers: int = 0  # mid-stream continuations on another deployment

    async def batches(self) -> AsyncIterator[list[Event]]:
        """The whole stream, first batch included."""
        yield self.first
        async for batch in self.rest:
            yield batch

    async def aclose(self) -> None:
        self.deployment.active -= 1
        inflight.closed(self.deployment.provider)  # counted from _first on
        await self.rest.aclose()  # type: ignore[attr-defined]


class Router:
    def __init__(self, providers: dict[str, Provider], models: dict[str, ModelConfig],
                 default_timeouts: Timeouts, default_model: str | None = None,
                 resilience: ResilienceConfig | None = None, metrics: Metrics | None = None) -> None:
        self.providers = providers
        self.default_timeouts = default_timeouts
        self.default_model = default_model
        self.resilience = resilience or ResilienceConfig()
        self.metrics = metrics or Metrics()
        self.routes: dict[str, Route] = {}
        self._direct: dict[str, Route] = {}
        for alias, mc in models.items():
            self.routes[alias] = Route(
                alias, [self._deployment(alias, d) for d in mc.deployments], mc.strategy,
                self.resilience.retries if mc.retries is None else mc.retries, mc.midstream_failover)

    def _breaker(self) -> Breaker:
        return Breaker(self.resilience.breaker_failures, self.resilience.breaker_cooldown)

    def _deployment(self, alias: str, d: DeploymentConfig) -> Deployment:
        if d.provider not in self.providers:
            raise ValueError(f"models.{alias}: unknown provider {d.provider!r}")
        t = self.default_timeouts
        if d.timeouts is not None:  # override only the fields the deployment sets
            t = t.model_copy(update=d.timeouts.model_dump(exclude_unset=True))
        return Deployment(self.providers[d.provider], d.model, t.deadlines(), d.weight, d.priority, self._breaker())

    def resolve(self, model: str) -> Route:
        if model in ("", "default") and self.default_model:
            model = self.default_model
        route = self.routes.get(model) or self._direct.get(model)
        if route is not None:
            return route
        provider, sep, upstream = model.partition("/")
        if sep and upstream and provider in self.providers:
            # cached so the deployment keeps its breaker state across requests
            dep = Deployment(self.providers[provider], upstream, self.default_timeouts.deadlines(),
                             breaker=self._breaker())
            route = Route(model, [dep], retries=self.resilience.retries)
            if len(self._direct) < 10_000:
                self._direct[model] = route
            return route
        raise NotFound(f"The model {model!r} does not exist. See GET /v1/models for the models served here.",
                       code="model_not_found", param="model")

    async def _first(self, dep: Deployment, req: ChatRequest,
                     overrides: dict[str, float | None] | None) -> tuple[list[Event], AsyncIterator[list[Event]]]:
        deadline = replace(dep.deadlines, **overrides) if overrides else dep.deadlines
        # counted from here, so a provider replaced at runtime is not closed under a stream that is
        # still waiting for its first token; Opened.aclose (or a failover) uncounts it
        inflight.opened(dep.provider)
        stream = dep.provider.stream(req.with_model(dep.model), deadline=deadline)
        try:
            first: list[Event] = []
            async for batch in stream:
                first.extend(batch)
                if any(ev.type != "start" for ev in batch):
                    return first, stream
            raise UpstreamUnavailable(f"{dep.label}: stream ended before any content")
        except BaseException:
            inflight.closed(dep.provider)
            await stream.aclose()  # type: ignore[attr-defined]
            raise

    def _failed(self, dep: Deployment, e: SluicewayError) -> None:
        was_open = dep.breaker.opened_at is not None
        dep.breaker.failure()
        self.metrics.upstream_errors.labels(dep.provider.name, e.code).inc()
        if dep.breaker.opened_at is not None and not was_open:
            log.warning("circuit opened for %s after %d failures", dep.label, dep.breaker.failures)
            self.metrics.circuit_open.labels(dep.label).set(1)

    def _succeeded(self, dep: Deployment) -> None:
        if dep.breaker.opened_at is not None:
            log.info("circuit closed for %s", dep.label)
            self.metrics.circuit_open.labels(dep.label).set(0)
        dep.breaker.success()

    async def open(self, req: ChatRequest, overrides: dict[str, float | None] | None = None) -> Opened:
        """Open a stream on the first healthy deployment of the request's model,
        retrying (with backoff, honouring Retry-After) and falling back on
        retryable errors. ``overrides`` replaces deadline fields for this request."""
        route = self.resolve(req.model)
        res = self.resilience
        attempts: list[str] = []
        last: SluicewayError | None = None
        order = route.order()
        for i, dep in enumerate(order):
            if not dep.breaker.allow():
                attempts.append(f"{dep.label}: circuit open")
                continue
            if i and last is not None:
                self.metrics.fallbacks.labels(route.alias, "before_first_token").inc()
            for attempt in range(route.retries + 1):
                try:
                    first, rest = await self._first(dep, req, overrides)
                except SluicewayError as e:
                    last = e
                    attempts.append(f"{dep.label}: {e.message}")
                    if not e.retryable:
                        raise
                    self._failed(dep, e)
                    log.warning("%s failed before first token (attempt %d): %s", dep.label, attempt + 1, e.message)
                    if attempt >= route.retries or not dep.breaker.allow():
                        break
                    delay = backoff(attempt, res.backoff_base, res.backoff_max)
                    if isinstance(e, RateLimited) and e.retry_after is not None:
                        if e.retry_after > res.max_retry_after:
                            break  # not worth waiting: try the next deployment now
                        delay = e.retry_after
                    self.metrics.retries.labels(dep.provider.name).inc()
                    await asyncio.sleep(delay)
                    continue
                self._succeeded(dep)
                dep.active += 1
                opened = Opened(first, rest, dep, attempts)
                if route.midstream_failover and i + 1 < len(order):
                    opened.rest = self._continue_on_failure(opened, rest, req, order[i + 1:], overrides)
                return opened
        if last is None:
            raise UpstreamUnavailable(f"every deployment of {route.alias!r} is unavailable (circuit open)")
        raise last

    async def _continue_on_failure(self, opened: Opened, inner: AsyncIterator[list[Event]], req: ChatRequest,
                                   spares: list[Deployment],
                                   overrides: dict[str, float | None] | None) -> AsyncIterator[list[Event]]:
        """Mid-stream failover: when the upstream dies after partial text, ask
        the next deployment to continue from the partial answer and stitch its
        text into the same stream (its ``start`` dropped). Not attempted once a
        tool call has begun: half a call cannot be continued."""
        text: list[str] = [ev.delta for ev in opened.first if ev.type == "text-delta"]
        tools = False
        try:
            while True:
                try:
                    async for batch in inner:
                        for ev in batch:
                            if ev.type == "text-delta":
                                text.append(ev.delta)
                            elif ev.type == "tool-input-start":
                                tools = True
                        yield batch
                    return
                except SluicewayError as e:
                    if not e.retryable or tools or not spares:
                        raise
                    self._failed(opened.deployment, e)
                    log.warning("%s failed mid-stream (%s); continuing on the next deployment",
                                opened.deployment.label, e.message)
                    partial = "".join(text)
                    cont = replace(req, messages=[*req.messages, Message.of("assistant", partial)])
                    while spares:
                        dep = spares.pop(0)
                        if not dep.breaker.allow():
                            continue
                        try:
                            first, inner = await self._first(dep, cont, overrides)
                        except SluicewayError as e2:
                            self._failed(dep, e2)
                            if not spares:
                                raise
                            continue
                        self._succeeded(dep)
                        opened.deployment.active -= 1
                        inflight.closed(opened.deployment.provider)  # its stream failed; dep's is counted
                        dep.active += 1
                        opened.deployment = dep
                        opened.failovers += 1
                        self.metrics.fallbacks.labels(req.model, "midstream").inc()
                        cont_first = [ev for ev in first if ev.type != "start"]
                        for ev in cont_first:
                            if ev.type == "text-delta":
                                text.append(ev.delta)
                        yield cont_first
                        break
                    else:
                        raise
        finally:
            await inner.aclose()  # type: ignore[attr-defined]
