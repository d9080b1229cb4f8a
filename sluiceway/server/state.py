"""What every route needs, held on ``app.state.sluiceway``."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.config import Config
from ..engine.gateway import Gateway


@dataclass(slots=True)
class AppState:
    config: Config
    gateway: Gateway

    @property
    def api_keys(self) -> list[str]:
        return self.config.server.api_keys

    @property
    def keepalive(self) -> float:
        return self.config.server.keepalive
