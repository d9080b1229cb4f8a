"""Retry timing and per-deployment circuit breakers."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from pydantic import Field

from .strict import Strict


class ResilienceConfig(Strict):
    retries: int = Field(1, ge=0, description="Extra attempts on the same deployment for retryable errors")
    backoff_base: float = Field(0.25, ge=0, description="First backoff in seconds; doubles per attempt")
    backoff_max: float = Field(8.0, ge=0, description="Cap on one backoff")
    max_retry_after: float = Field(30.0, ge=0,
                                   description="Longest upstream Retry-After we wait out; longer → next deployment")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open a deployment's circuit")
    breaker_cooldown: float = Field(30.0, ge=0, description="Seconds before an open circuit lets one probe through")


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter in [0.5, 1] × the step, so retries spread out."""
    step = min(cap, base * (2 ** attempt))
    return step * random.uniform(0.5, 1.0)


@dataclass(slots=True)
class Breaker:
    """closed → (N consecutive failures) → open → (cooldown) → half-open:
    one probe request; success closes, failure re-opens."""

    threshold: int = 5
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probing or time.monotonic() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if not self.probing and time.monotonic() - self.opened_at >= self.cooldown:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at = time.monotonic()
        self.probing = False
