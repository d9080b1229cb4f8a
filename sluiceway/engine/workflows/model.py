"""The parsed shape of a model-compose file: workflows, jobs, components.

Plain dataclasses over the YAML values; bindings stay unrendered until a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ID = "__default__"  # a request for "the default workflow"; also the unnamed component's id
UNNAMED_WORKFLOW = "__workflow__"  # the id model-compose gives a file's unnamed workflow


@dataclass(slots=True)
class Retry:
    max_attempt_count: int = 1
    delay: float = 0.0
    backoff: str = "fixed"  # fixed | exponential
    max_delay: float | None = None

    def wait(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1`` (attempt counts from 1)."""
        d = self.delay * (2 ** (attempt - 1) if self.backoff == "exponential" else 1)
        return min(d, self.max_delay) if self.max_delay is not None else d


@dataclass(slots=True)
class Job:
    id: str
    type: str = "action"  # action | if | switch
    component: str | dict[str, Any] | None = None
    action: str | None = None
    input: Any = "${input}"
    output: Any = None
    depends_on: list[str] = field(default_factory=list)
    retry: Retry | None = None
    timeout: float | None = None
    on_error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # if/switch fields: operator, value, conditions, cases…


@dataclass(slots=True)
class Workflow:
    id: str
    jobs: list[Job]
    title: str | None = None
    description: str | None = None
    default: bool = False
    output: Any = None
    source: Path | None = None

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)


@dataclass(slots=True)
class Compose:
    """One model-compose file."""

    path: Path
    workflows: dict[str, Workflow]
    components: dict[str, dict[str, Any]]
    controller: dict[str, Any] = field(default_factory=dict)

    @property
    def default_workflow(self) -> Workflow | None:
        flagged = [w for w in self.workflows.values() if w.default]
        if flagged:
            return flagged[0]
        if UNNAMED_WORKFLOW in self.workflows:
            return self.workflows[UNNAMED_WORKFLOW]
        return next(iter(self.workflows.values())) if len(self.workflows) == 1 else None
