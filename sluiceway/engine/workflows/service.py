"""The loaded workflows and their tasks (model-compose's task model: a run has
an id, a status, an output or an error, and can be polled)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bindings import BindingError, convert, default_value, find
from .components import ComponentError, Services
from .loader import WorkflowLoadError, compose_files, load_compose
from .model import DEFAULT_ID, UNNAMED_WORKFLOW, Compose, Workflow
from .runner import WorkflowError, WorkflowRun, stream_format
from .servers import ManagedServers
from .streams import LiveStream

log = logging.getLogger("sluiceway.workflows")
TASK_TTL = 3600.0  # finished tasks stay pollable this long
MAX_FINISHED = 10_000  # and at most this many of them, the oldest dropped first


@dataclass(slots=True)
class Task:
    task_id: str
    workflow_id: str
    status: str = "pending"  # pending | processing | completed | failed | cancelled
    output: Any = None
    error: str | None = None
    error_status: int = 500
    session_id: str | None = None
    metadata: Any = None
    finished_at: float | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # completed, failed, or streaming output ready
    job: asyncio.Task[Any] | None = None

    def state(self) -> dict[str, Any]:
        """The task as model-compose reports it (no null fields)."""
        out: dict[str, Any] = {"task_id": self.task_id, "status": self.status, "workflow_id": self.workflow_id}
        if self.output is not None and not isinstance(self.output, LiveStream):
            out["output"] = self.output
        for k in ("error", "session_id", "metadata"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    @property
    def streaming(self) -> bool:
        return isinstance(self.output, LiveStream)


class Workflows:
    def __init__(self, paths: list[str | os.PathLike[str]] | None = None,
                 get_router: Callable[[], Any] = lambda: None) -> None:
        self.paths = [str(p) for p in paths or []]
        self.composes: list[Compose] = []
        self.by_id: dict[str, tuple[Compose, Workflow]] = {}
        self.tasks: dict[str, Task] = {}
        self._pruned_at = 0.0
        self.svc = Services(get_router, ManagedServers())
        files = [f for p in paths or [] for f in compose_files(p)]
        for f in files:
            # a file's unnamed workflow is __workflow__ when it is the only file, else named after the file
            name = UNNAMED_WORKFLOW if len(files) == 1 else _file_name(f)
            compose = load_compose(f, default_id=name)
            for wid, wf in compose.workflows.items():
                if wid in self.by_id:
                    raise WorkflowLoadError(f"{f}: workflow id {wid!r} is also defined in "
                                            f"{self.by_id[wid][0].path}")
                self.by_id[wid] = (compose, wf)
            self.composes.append(compose)

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def resolve(self, workflow_id: str | None) -> tuple[Compose, Workflow] | None:
        if workflow_id and workflow_id != DEFAULT_ID:
            return self.by_id.get(workflow_id)
        if len(self.composes) == 1:
            wf = self.composes[0].default_workflow
            return (self.composes[0], wf) if wf else None
        flagged = [(c, w) for c, w in self.by_id.values() if w.default]
        return flagged[0] if len(flagged) == 1 else None

    # ---------------------------------------------------------------- tasks
    def start(self, workflow_id: str | None, input: Any, *, session_id: str | None = None,
              metadata: Any = None, collect: bool = False) -> Task:
        """Start a run. ``collect``: nobody will read a streamed output live (a
        run polled through /api/tasks), so it is read to its end here and the
        task completes with the whole value instead of holding an upstream open."""
        found = self.resolve(workflow_id)
        if found is None:
            raise KeyError(workflow_id or DEFAULT_ID)
        compose, wf = found
        self._prune()
        task = Task(uuid.uuid4().hex, wf.id, session_id=session_id, metadata=metadata)
        self.tasks[task.task_id] = task
        task.job = asyncio.create_task(self._run(task, compose, wf, input, collect), name=f"workflow:{wf.id}")
        return task

    async def _run(self, task: Task, compose: Compose, wf: Workflow, input: Any, collect: bool) -> None:
        task.status = "processing"
        try:
            out = await WorkflowRun(compose, wf, input if input is not None else {}, self.svc).execute()
            if collect and isinstance(out, LiveStream):
                out = await out.collect()
        except asyncio.CancelledError:
            task.status, task.error = "cancelled", "cancelled"
            self._finish(task)
            raise
        except Exception as e:
            task.status, task.error, task.error_status = "failed", str(e), _status(e)
            log.info("workflow %s task %s failed: %s", wf.id, task.task_id, e)
            self._finish(task)
            return
        task.output = out
        if isinstance(out, LiveStream):
            task.ready.set()  # the stream's reader finishes the task (see stream_done)
            return
        task.status = "completed"
        self._finish(task)

    def stream_done(self, task: Task, error: BaseException | None = None, collected: Any = None) -> None:
        """The reader of a streamed output reports how the stream ended."""
        if error is None:
            task.status, task.output = "completed", collected
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            task.status, task.error, task.output = "cancelled", "cancelled", collected
        else:
            task.status, task.error, task.error_status, task.output = "failed", str(error), _status(error), collected
        self._finish(task)

    def _finish(self, task: Task) -> None:
        task.finished_at = time.monotonic()
        task.ready.set()

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < 10 and len(self.tasks) <= MAX_FINISHED:
            return  # cheap on the request path: a sweep at most every 10 s unless over the cap
        self._pruned_at = now
        finished = sorted((t for t in self.tasks.values() if t.finished_at), key=lambda t: t.finished_at or 0)
        excess = len(finished) - MAX_FINISHED
        for i, t in enumerate(finished):
            if i < excess or now - (t.finished_at or now) > TASK_TTL:
                del self.tasks[t.task_id]

    async def cancel(self, task: Task) -> None:
        if task.job is not None and not task.job.done():
            task.job.cancel()
            await asyncio.gather(task.job, return_exceptions=True)
        if isinstance(task.output, LiveStream) and not task.output.taken:
            await task.output.aclose()
            self.stream_done(task, asyncio.CancelledError())

    async def aclose(self) -> None:
        for t in list(self.tasks.values()):
            await self.cancel(t)
        await self.svc.aclose()

    # --------------------------------------------------------------- schema
    def schema(self, wf: Workflow, compose: Compose) -> dict[str, Any]:
        return {"workflow_id": wf.id, **({"title": wf.title} if wf.title else {}),
                **({"description": wf.description} if wf.description else {}),
                "input": self.inputs(wf, compose), "output": _outputs(wf, compose),
                **({"default": True} if wf.default else {})}

    def inputs(self, wf: Workflow, compose: Compose) -> list[dict[str, Any]]:
        """Input variables: ``${input.x ...}`` in the jobs, and in the components of
        jobs that pass the whole input through."""
        seen: dict[str, dict[str, Any]] = {}
        sources: list[Any] = []
        for job in wf.jobs:
            sources += [job.input, job.raw.get("conditions"), job.raw.get("cases")]
            passes = job.input in (None, "${input}") or (isinstance(job.input, str) and job.input.strip() == "${input}")
            if job.type == "action" and passes:
                comp = job.component if isinstance(job.component, dict) else \
                    compose.components.get(job.component or DEFAULT_ID) or next(iter(compose.components.values()), {})
                sources.append(comp)
        sources.append(wf.output)
        for b in find(sources):
            if b.key != "input" or not b.path:
                continue
            name = b.path.split(".")[0].split("[")[0]
            default = convert(default_value(b.default), b.type, name) if b.default is not None else None
            var = {"name": name, "type": b.type or "string", "is_list": False, "subtype": b.subtype,
                   "format": b.format, "default": default}
            if name not in seen:
                seen[name] = var
            else:  # a later, more specific binding of the same name fills the gaps
                for k, v in var.items():
                    if seen[name].get(k) in (None, "string") and v not in (None, "string"):
                        seen[name][k] = v
        return [{k: v for k, v in var.items() if v is not None} for var in seen.values()]

    def list(self) -> list[tuple[Compose, Workflow]]:
        return list(self.by_id.values())


def _outputs(wf: Workflow, compose: Compose) -> list[dict[str, Any]]:
    """Output variables: the workflow's output, else its last job's, else (for a
    job that passes its component's output through) the component action's."""
    spec = wf.output if wf.output is not None else (wf.jobs[-1].output if wf.jobs else None)
    if (spec is None or (isinstance(spec, str) and spec.replace(" ", "") == "${output}")) and wf.jobs:
        job = wf.jobs[-1]
        comp = job.component if isinstance(job.component, dict) else \
            compose.components.get(job.component or DEFAULT_ID) or next(iter(compose.components.values()), {})
        action = comp.get("action") or {}
        spec = action.get("output", comp.get("output")) if isinstance(action, dict) else comp.get("output")
    fmt = stream_format(spec)
    if fmt:
        return [{"type": "stream", "is_list": False, "subtype": fmt}]
    if isinstance(spec, str) and len(found := find(spec)) == 1 and found[0].key == "output" and found[0].type:
        return [{"type": found[0].type, "is_list": False}]
    if isinstance(spec, dict):
        return [{"name": k, "type": (find(v)[0].type if find(v) else None) or "string", "is_list": False}
                for k, v in spec.items()]
    return []


def _file_name(path: Path) -> str:
    return path.parent.name if path.stem in ("model-compose",) else path.stem


def _status(e: BaseException) -> int:
    if isinstance(e, BindingError):
        return 400
    if isinstance(e, WorkflowError):
        return e.status
    if isinstance(e, ComponentError) and e.status:
        return 502 if e.status < 500 or e.status == 500 else e.status
    return 500
