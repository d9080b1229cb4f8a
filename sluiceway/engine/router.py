"""Model routing: a public model name → deployments → an opened stream.

Fallback happens only before the first content event has been produced, so
nothing a client has seen is ever repeated: ``open`` pulls batches until one
carries more than ``start`` and only then hands the stream over.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from ..core import ChatRequest, Deadlines, Event, NotFound, SluicewayError
from ..providers import Provider
from .config import DeploymentConfig, ModelConfig, Timeouts

log = logging.getLogger("sluiceway.router")


@dataclass(slots=True)
class Deployment:
    provider: Provider
    model: str  # upstream model id
    deadlines: Deadlines
    weight: float = 1.0
    priority: int = 0
    active: int = 0  # streams in flight, for least-busy


@dataclass(slots=True)
class Route:
    alias: str
    deployments: list[Deployment]
    strategy: str = "priority"

    def order(self) -> list[Deployment]:
        deps = self.deployments
        if len(deps) == 1:
            return deps
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
    attempts: list[str] = field(default_factory=list)  # errors of deployments that were skipped

    async def batches(self) -> AsyncIterator[list[Event]]:
        """The whole stream, first batch included."""
        yield self.first
        async for batch in self.rest:
            yield batch

    async def aclose(self) -> None:
        self.deployment.active -= 1
        await self.rest.aclose()  # type: ignore[attr-defined]


class Router:
    def __init__(self, providers: dict[str, Provider], models: dict[str, ModelConfig],
                 default_timeouts: Timeouts, default_model: str | None = None) -> None:
        self.providers = providers
        self.default_timeouts = default_timeouts
        self.default_model = default_model
        self.routes: dict[str, Route] = {}
        for alias, mc in models.items():
            self.routes[alias] = Route(alias, [self._deployment(alias, d) for d in mc.deployments], mc.strategy)

    def _deployment(self, alias: str, d: DeploymentConfig) -> Deployment:
        if d.provider not in self.providers:
            raise ValueError(f"models.{alias}: unknown provider {d.provider!r}")
        t = d.timeouts or self.default_timeouts
        return Deployment(self.providers[d.provider], d.model, t.deadlines(), d.weight, d.priority)

    def resolve(self, model: str) -> Route:
        if model in ("", "default") and self.default_model:
            model = self.default_model
        route = self.routes.get(model)
        if route is not None:
            return route
        provider, sep, upstream = model.partition("/")
        if sep and upstream and provider in self.providers:
            route = Route(model, [Deployment(self.providers[provider], upstream, self.default_timeouts.deadlines())])
            return route
        raise NotFound(f"The model {model!r} does not exist. See GET /v1/models for the models served here.",
                       code="model_not_found", param="model")

    async def open(self, req: ChatRequest, deadline: Deadlines | None = None) -> Opened:
        route = self.resolve(req.model)
        attempts: list[str] = []
        last: SluicewayError | None = None
        for dep in route.order():
            stream = dep.provider.stream(replace(req, model=dep.model), deadline=deadline or dep.deadlines)
            dep.active += 1
            try:
                first: list[Event] = []
                async for batch in stream:
                    first.extend(batch)
                    if any(ev.type != "start" for ev in batch):
                        break
                return Opened(first, stream, dep, attempts)
            except SluicewayError as e:
                dep.active -= 1
                await stream.aclose()
                attempts.append(f"{dep.provider.name}/{dep.model}: {e.message}")
                last = e
                if not e.retryable:
                    raise
                log.warning("deployment %s/%s failed before first token: %s", dep.provider.name, dep.model, e)
            except BaseException:
                dep.active -= 1
                await stream.aclose()
                raise
        assert last is not None
        raise last
