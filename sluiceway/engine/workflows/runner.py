"""Run one workflow: jobs start as soon as what they depend on has completed
(independent jobs run in parallel), ``if``/``switch`` jobs route to a job,
each job has retries, a timeout and an ``on_error`` fallback. A job whose
output is a stream completes at once; the stream is consumed by the job that
uses it, or it becomes the workflow's streamed output.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from .bindings import BINDING, Binding, BindingError, render
from .components import ComponentError, Services, run_component
from .model import DEFAULT_ID, Compose, Job, Workflow
from .streams import LiveStream, claim, has_stream

log = logging.getLogger("sluiceway.workflows")
MAX_RUNS_PER_JOB = 25


class WorkflowError(RuntimeError):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Route:
    to: str | None


def stream_format(output_spec: Any) -> str | None:
    """``${output as stream/json}`` → "json"; text for the older ``as text;sse-text``."""
    if isinstance(output_spec, str):
        m = BINDING.fullmatch(output_spec.strip())
        if m:
            b = Binding.of(m)
            if b.streams:
                return b.stream_format
    return None


def _direct(spec: Any) -> bool:
    return spec is None or (isinstance(spec, str) and re.fullmatch(r"\$\{\s*output\s*\}", spec.strip()) is not None)


class WorkflowRun:
    def __init__(self, compose: Compose, workflow: Workflow, input: Any, svc: Services) -> None:
        self.compose, self.workflow, self.input, self.svc = compose, workflow, input, svc
        self.jobs_out: dict[str, Any] = {}
        self.deps = {j.id: set(j.depends_on) for j in workflow.jobs}
        routed = {t for j in workflow.jobs for t in _targets(j)}
        self.routing_only = routed
        self.terminal = {j.id for j in workflow.jobs if not any(j.id in d for d in self.deps.values())}

    def scope(self, **more: Any) -> dict[str, Any]:
        return {"input": self.input, "jobs": self.jobs_out, **more}

    async def execute(self) -> Any:
        """The workflow's output: a value, or a ``LiveStream`` when the last job streams."""
        pending = {j.id: j for j in self.workflow.jobs if j.id not in self.routing_only}
        waiting = {j.id: j for j in self.workflow.jobs if j.id in self.routing_only}
        done: set[str] = set()
        tasks: dict[asyncio.Task[Any], str] = {}
        runs: dict[str, int] = {}
        output: Any = None
        try:
            while pending or tasks:
                running = set(tasks.values())
                for jid, job in list(pending.items()):
                    if jid not in running and self.deps[jid] <= done:
                        runs[jid] = runs.get(jid, 0) + 1
                        if runs[jid] > MAX_RUNS_PER_JOB:
                            raise WorkflowError(f"job {jid!r} ran {MAX_RUNS_PER_JOB} times; is there a routing loop?")
                        tasks[asyncio.create_task(self.run_job(job), name=f"job:{jid}")] = jid
                if not tasks:
                    raise WorkflowError("jobs are waiting on each other: " + ", ".join(sorted(pending)))
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    jid = tasks.pop(t)
                    result = t.result()  # a failed job fails the run (its on_error already applied)
                    pending.pop(jid, None)
                    if isinstance(result, Route):
                        done.add(jid)
                        if result.to is None:
                            continue
                        if result.to in waiting:
                            pending[result.to] = waiting.pop(result.to)
                        elif result.to in done:  # routing back: run it (and what depends on it) again
                            for again in self._dependents(result.to, done):
                                done.discard(again)
                                self.jobs_out.pop(again, None)
                                pending[again] = self.workflow.job(again)  # type: ignore[assignment]
                        continue
                    self.jobs_out[jid] = result
                    done.add(jid)
                    if jid in self.terminal:
                        if isinstance(output, dict) and isinstance(result, dict):
                            output = {**output, **result}
                        else:
                            output = result
            if self.workflow.output is not None:
                await self._settle(self.workflow.output)
                output = render(self.workflow.output, self.scope(output=output))
                fmt = stream_format(self.workflow.output)
                if isinstance(output, LiveStream) and fmt:
                    output.format = fmt
            for v in self.jobs_out.values():  # a stream nothing read (a job depended on only for order)
                if isinstance(v, LiveStream) and v is not output and not v.taken and not v.claimed:
                    await v.aclose()
            return output
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_streams()
            raise

    async def _close_streams(self) -> None:
        for v in self.jobs_out.values():
            if isinstance(v, LiveStream) and not v.taken:
                await v.aclose()

    async def _settle(self, spec: Any) -> None:
        """An earlier job's stream used other than whole (``text: ${jobs.x.output}``
        feeds it live) is read to its end first: interpolated into text, or a
        path into it, needs the complete value."""
        for jid, value in list(self.jobs_out.items()):
            if isinstance(value, LiveStream) and not value.taken and _used_whole_or_not(spec, jid) is False:
                self.jobs_out[jid] = await value.collect()

    def _dependents(self, root: str, pool: set[str]) -> set[str]:
        out: set[str] = set()
        todo = [root]
        while todo:
            j = todo.pop()
            if j in out or j not in pool:
                continue
            out.add(j)
            todo += [k for k, d in self.deps.items() if j in d]
        return out

    # ----------------------------------------------------------------- jobs
    async def run_job(self, job: Job) -> Any:
        attempts = job.retry.max_attempt_count if job.retry else 1
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(job.timeout):
                    return await self._run_once(job)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, TimeoutError):
                    e = WorkflowError(f"job {job.id!r} timed out after {job.timeout:g}s", 504)
                if attempt < attempts:
                    wait = job.retry.wait(attempt) if job.retry else 0.0
                    log.info("job %s attempt %d/%d failed: %s; retrying in %.2fs", job.id, attempt, attempts, e, wait)
                    if wait > 0:
                        await asyncio.sleep(wait)
                    continue
                if job.on_error is None:
                    if isinstance(e, WorkflowError | ComponentError):
                        raise e from None
                    raise WorkflowError(f"job {job.id!r} failed: {e}", 400 if isinstance(e, BindingError) else 500) from e
                log.info("job %s failed, on_error applies: %s", job.id, e)
                if job.on_error.get("to"):
                    return Route(job.on_error["to"])
                if "output" in job.on_error:
                    return render(job.on_error["output"], self.scope(error={"message": str(e)}))
                return None

    async def _run_once(self, job: Job) -> Any:
        if job.type == "if":
            return Route(self._route_if(job))
        if job.type == "switch":
            return Route(self._route_switch(job))
        await self._settle(job.input)
        inp = render(job.input, self.scope()) if job.input else self.input
        claim(inp)
        spec, cid = self._component(job)
        result = await run_component(spec, job.action, inp, self.svc, cid, str(self.compose.path.parent))
        if _direct(job.output):
            return result
        out = render(job.output, self.scope(output=result))
        fmt = stream_format(job.output)
        if isinstance(out, LiveStream) and fmt:
            out.format = fmt
        elif isinstance(result, LiveStream) and not has_stream(out) and not result.taken:
            await result.aclose()  # the binding did not use the stream
        return out

    def _component(self, job: Job) -> tuple[dict[str, Any], str]:
        comp = job.component
        if isinstance(comp, dict):
            return comp, f"{self.workflow.id}.{job.id}"
        comps = self.compose.components
        cid = (DEFAULT_ID if DEFAULT_ID in comps else next(iter(comps))) if comp is None else comp
        return comps[cid], f"{self.compose.path}:{cid}"

    def _route_if(self, job: Job) -> str | None:
        raw = job.raw
        value = render(raw.get("input"), self.scope())
        conditions = raw.get("conditions")
        if conditions is None:
            conditions = [{k: raw[k] for k in ("operator", "value", "if_true", "if_false") if k in raw}]
        for cond in conditions:
            expected = render(cond.get("value"), self.scope())
            if _compare(cond.get("operator", "eq"), value, expected):
                if cond.get("if_true"):
                    return cond["if_true"]
            elif cond.get("if_false"):
                return cond["if_false"]
        return render(raw.get("otherwise"), self.scope())

    def _route_switch(self, job: Job) -> str | None:
        raw = job.raw
        value = render(raw.get("input"), self.scope()) if raw.get("input") else self.input
        for case in raw.get("cases") or []:
            if value == render(case.get("value"), self.scope()):
                return case.get("then")
        return raw.get("otherwise")


def _used_whole_or_not(spec: Any, jid: str) -> bool | None:
    """None: ``spec`` does not use job ``jid``'s output; True: only as a whole
    value (``${jobs.<jid>.output}``, a live stream may pass); False: otherwise."""
    found: bool | None = None
    for s in _strings(spec):
        for m in BINDING.finditer(s):
            b = Binding.of(m)
            if b.key != "jobs" or not b.path or b.path.split(".")[0] != jid:
                continue
            whole = b.path == f"{jid}.output" and BINDING.fullmatch(s.strip()) is not None
            if not whole:
                return False
            found = True
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _targets(j: Job) -> list[str]:
    r = j.raw
    out = [r.get("if_true"), r.get("if_false"), r.get("otherwise")] if j.type != "action" else []
    for cond in r.get("conditions") or []:
        out += [cond.get("if_true"), cond.get("if_false")]
    out += [case.get("then") for case in r.get("cases") or []]
    if j.on_error and j.on_error.get("to"):
        out.append(j.on_error["to"])
    return [t for t in out if isinstance(t, str)]


def _compare(op: str, a: Any, b: Any) -> bool:
    try:
        match op:
            case "eq":
                return a == b
            case "neq" | "ne":
                return a != b
            case "gt":
                return a > b
            case "gte":
                return a >= b
            case "lt":
                return a < b
            case "lte":
                return a <= b
            case "in":
                return a in b
            case "not-in":
                return a not in b
            case "contains":
                return b in a
            case "not-contains":
                return b not in a
            case "starts-with":
                return str(a).startswith(str(b))
            case "ends-with":
                return str(a).endswith(str(b))
            case "match":
                return re.match(str(b), str(a)) is not None
            case "exists":
                return a is not None
            case "not-exists":
                return a is None
            case "truthy":
                return bool(a)
            case "falsy":
                return not a
    except TypeError as e:
        raise WorkflowError(f"cannot compare {a!r} {op} {b!r}: {e}", 400) from None
    raise WorkflowError(f"unknown operator {op!r}", 400)
