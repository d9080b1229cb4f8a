"""What every route needs, held on ``app.state.sluiceway``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.config import Config
from ..engine.gateway import Gateway

if TYPE_CHECKING:
    from ..engine.runs import Runs
    from ..store import Store


@dataclass(slots=True)
class AppState:
    config: Config
    gateway: Gateway
    store: Store | None = None  # opened in the lifespan (engine.runs.open_runs)
    runs: Runs | None = None
    # direct (non-run) SSE streams in flight, for graceful shutdown (streaming.drain_streams)
    streams: set[Any] = field(default_factory=set)

    @property
    def api_keys(self) -> list[str]:
        return self.config.server.api_keys

    @property
    def keepalive(self) -> float:
        return self.config.server.keepalive

    @property
    def stall_timeout(self) -> float:
        return self.config.server.stall_timeout
