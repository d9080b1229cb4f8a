"""Load model-compose files: ``${env.X}`` substituted into the text first (as
model-compose does), then YAML, then a check of every key so that a typo fails
at load with the file, the line and the key path, never at run time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..strict import did_you_mean, line_of, path_of
from .model import DEFAULT_ID, UNNAMED_WORKFLOW, Compose, Job, Retry, Workflow

ENV_REF = re.compile(r"\$\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*((?:[^}\\]|\\.)*?)\s*)?\}")
COMPOSE_NAMES = ("model-compose.yml", "model-compose.yaml")

COMPONENT_TYPES = {
    "http-client": {"base_url", "endpoint", "path", "method", "headers", "params", "body", "stream_format",
                    "output", "timeout", "stream_fragmented"},
    "http-server": {"start", "stop", "port", "host", "healthcheck", "base_url", "path", "endpoint", "method",
                    "headers", "params", "body", "stream_format", "output", "runtime", "working_dir", "env",
                    "timeout", "manage", "stream_fragmented"},
    "model": {"task", "model", "provider", "messages", "text", "prompt", "system", "streaming", "params", "output",
              "driver"},
    "shell": {"command", "timeout", "working_dir", "env", "output", "runtime"},
    "text-splitter": {"text", "chunk_size", "chunk_overlap", "separators", "language", "output", "streaming",
                      "batch_size"},
    "sentence-splitter": {"text", "min_chunk_length", "max_chunk_length", "streaming", "output", "batch_size",
                          "driver"},
}
COMPONENT_KEYS = {"id", "type", "description", "action", "actions", "title", "max_concurrent_count", "default"}
ACTION_KEYS = {"id", "description", "default"}
JOB_KEYS = {"id", "type", "component", "action", "input", "output", "depends_on", "retry", "timeout", "on_error",
            "title", "description", "operator", "value", "if_true", "if_false", "conditions", "otherwise", "cases",
            "repeat_count"}
WORKFLOW_KEYS = {"id", "title", "description", "default", "job", "jobs", "output", "input", "private"}
TOP_KEYS = {"controller", "workflow", "workflows", "component", "components", "listener", "listeners", "gateway",
            "gateways", "logger", "loggers", "systems"}
RETRY_KEYS = {"max_attempt_count", "delay", "backoff", "max_delay", "jitter", "max_retry_count"}
OPERATORS = {"eq", "neq", "ne", "gt", "gte", "lt", "lte", "in", "not-in", "contains", "not-contains", "starts-with",
             "ends-with", "match", "exists", "not-exists", "truthy", "falsy"}


class WorkflowLoadError(ValueError):
    pass


def compose_files(path: str | os.PathLike[str]) -> list[Path]:
    """A file, or every compose file in a folder (model-compose.yml files at any depth, else *.yml/*.yaml)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise WorkflowLoadError(f"{p}: no such file or folder")
    named = sorted(f for n in COMPOSE_NAMES for f in p.rglob(n))
    return named or sorted([*p.glob("*.yml"), *p.glob("*.yaml")])


def substitute_env(text: str, source: Path, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default.replace("\\}", "}")
        line = text.count("\n", 0, m.start()) + 1
        raise WorkflowLoadError(f"{source}:{line}: environment variable {name} is not set "
                                f"(referenced as ${{env.{name}}}; give a default with ${{env.{name} | value}})")
    return ENV_REF.sub(sub, text)


def load_compose(path: str | os.PathLike[str], *, default_id: str = UNNAMED_WORKFLOW,
                 env: dict[str, str] | None = None) -> Compose:
    source = Path(path)
    try:
        raw_text = source.read_text()
    except OSError as e:
        raise WorkflowLoadError(f"{source}: {e.strerror or e}") from None
    text = substitute_env(raw_text, source, env)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise WorkflowLoadError(f"{source}: invalid YAML: {e}") from None
    c = _Checker(source, raw_text)
    if not isinstance(doc, dict):
        raise c.error((), "the top level must be a mapping")
    c.keys(doc, (), TOP_KEYS)
    components = _components(doc, c)
    workflows = _workflows(doc, c, components, default_id)
    if not workflows:
        raise c.error((), "no workflow: add a `workflow:` or `workflows:` section")
    return Compose(source, workflows, components, doc.get("controller") or {})


class _Checker:
    def __init__(self, source: Path, text: str) -> None:
        self.source, self.text = source, text

    def error(self, loc: tuple[Any, ...], msg: str) -> WorkflowLoadError:
        line = line_of(self.text, loc) if loc else None
        where = f"{self.source}:{line}: " if line else f"{self.source}: "
        return WorkflowLoadError(f"{where}{path_of(loc) + ': ' if loc else ''}{msg}")

    def keys(self, value: dict[str, Any], loc: tuple[Any, ...], known: set[str]) -> None:
        for k in value:
            if k not in known:
                raise self.error((*loc, k), f"unknown key{did_you_mean(str(k), known)}")

    def mapping(self, value: Any, loc: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(loc, f"expected a mapping, got {type(value).__name__}")
        return value


def _listed(doc: dict[str, Any], one: str, many: str, c: _Checker) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """``one:`` (a mapping) or ``many:`` (a list, or a mapping by id) → [(loc, spec)]."""
    out: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    if one in doc:
        out.append(((one,), c.mapping(doc[one], (one,))))
    value = doc.get(many)
    if isinstance(value, list):
        out.extend(((many, i), c.mapping(v, (many, i))) for i, v in enumerate(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            spec = dict(c.mapping(v, (many, k)))
            spec.setdefault("id", k)
            out.append(((many, k), spec))
    elif value is not None:
        raise c.error((many,), "expected a list")
    return out


def _components(doc: dict[str, Any], c: _Checker) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for loc, spec in _listed(doc, "component", "components", c):
        out[_component(spec, loc, c, str(spec.get("id") or DEFAULT_ID))] = spec
    return out


def _component(spec: dict[str, Any], loc: tuple[Any, ...], c: _Checker, cid: str) -> str:
    ctype = spec.get("type")
    if ctype not in COMPONENT_TYPES:
        raise c.error((*loc, "type"), f"component type {ctype!r} is not supported here; supported: "
                                      f"{', '.join(sorted(COMPONENT_TYPES))}")
    own = COMPONENT_TYPES[ctype]
    c.keys(spec, loc, COMPONENT_KEYS | own)
    if "action" in spec:
        c.keys(c.mapping(spec["action"], (*loc, "action")), (*loc, "action"), ACTION_KEYS | own)
    actions = spec.get("actions")
    if isinstance(actions, list):
        for i, a in enumerate(actions):
            c.keys(c.mapping(a, (*loc, "actions", i)), (*loc, "actions", i), ACTION_KEYS | own)
    elif isinstance(actions, dict):
        for k, a in actions.items():
            c.keys(c.mapping(a, (*loc, "actions", k)), (*loc, "actions", k), ACTION_KEYS | own)
    if ctype == "http-client" and not any(spec.get(k) for k in ("base_url", "endpoint")) \
            and not _any_action_has(spec, ("endpoint", "base_url")):
        raise c.error(loc, "an http-client needs `base_url` or `endpoint`")
    if ctype == "shell" and "command" not in spec and not _any_action_has(spec, ("command",)):
        raise c.error(loc, "a shell component needs `command`")
    if ctype == "http-server" and not spec.get("port"):
        raise c.error(loc, "an http-server component needs `port`")
    return cid


def _any_action_has(spec: dict[str, Any], keys: tuple[str, ...]) -> bool:
    actions = [spec.get("action") or {}]
    raw = spec.get("actions") or []
    actions += list(raw.values()) if isinstance(raw, dict) else raw
    return any(isinstance(a, dict) and any(a.get(k) for k in keys) for a in actions)


def _workflows(doc: dict[str, Any], c: _Checker, components: dict[str, dict[str, Any]],
               default_id: str) -> dict[str, Workflow]:
    out: dict[str, Workflow] = {}
    for loc, spec in _listed(doc, "workflow", "workflows", c):
        c.keys(spec, loc, WORKFLOW_KEYS)
        wid = str(spec.get("id") or default_id)
        if wid in out:
            raise c.error((*loc, "id"), f"workflow id {wid!r} is used twice")
        if "jobs" in spec:
            if not isinstance(spec["jobs"], list) or not spec["jobs"]:
                raise c.error((*loc, "jobs"), "expected a non-empty list of jobs")
            jobs = [_job(c.mapping(j, (*loc, "jobs", i)), (*loc, "jobs", i), c, components, f"job{i}")
                    for i, j in enumerate(spec["jobs"])]
        else:
            job = spec.get("job") if "job" in spec else {}
            jobs = [_job(c.mapping(job, (*loc, "job")), (*loc, "job"), c, components, "__job__")]
        ids = [j.id for j in jobs]
        for i, j in enumerate(jobs):
            for dep in j.depends_on:
                if dep not in ids:
                    where = (*loc, "jobs", i, "depends_on") if "jobs" in spec else (*loc, "job")
                    raise c.error(where, f"job {j.id!r} depends on unknown job {dep!r}"
                                         f"{did_you_mean(dep, ids)}")
            for target in _route_targets(j):
                if target not in ids:
                    raise c.error((*loc, "jobs", i), f"job {j.id!r} routes to unknown job {target!r}"
                                                     f"{did_you_mean(target, ids)}")
        out[wid] = Workflow(wid, jobs, spec.get("title"), spec.get("description"), bool(spec.get("default")),
                            spec.get("output"), c.source)
    return out


def _route_targets(j: Job) -> list[str]:
    r = j.raw
    out = [r.get("if_true"), r.get("if_false"), r.get("otherwise")]
    out += [cond.get("if_true") for cond in r.get("conditions") or [] if isinstance(cond, dict)]
    out += [cond.get("if_false") for cond in r.get("conditions") or [] if isinstance(cond, dict)]
    out += [case.get("then") for case in r.get("cases") or [] if isinstance(case, dict)]
    if isinstance(j.on_error, dict):
        out.append(j.on_error.get("to"))
    return [t for t in out if isinstance(t, str)]


def _job(spec: dict[str, Any], loc: tuple[Any, ...], c: _Checker, components: dict[str, dict[str, Any]],
         fallback_id: str) -> Job:
    c.keys(spec, loc, JOB_KEYS)
    jtype = spec.get("type", "action")
    if jtype not in ("action", "if", "switch"):
        raise c.error((*loc, "type"), f"job type {jtype!r} is not supported; use action, if or switch")
    comp = spec.get("component")
    if jtype == "action":
        if isinstance(comp, dict):
            _component(comp, (*loc, "component"), c, "inline")
        elif comp is None:
            if len(components) != 1 and DEFAULT_ID not in components:
                raise c.error(loc, "the job names no `component` and the file does not have exactly one")
        elif comp not in components:
            raise c.error((*loc, "component"), f"unknown component {comp!r}{did_you_mean(str(comp), components)}")
    elif jtype == "if":
        ops = [spec.get("operator")] + [x.get("operator") for x in spec.get("conditions") or []
                                        if isinstance(x, dict)]
        for op in ops:
            if op is not None and op not in OPERATORS:
                raise c.error((*loc, "operator"), f"unknown operator {op!r}{did_you_mean(str(op), OPERATORS)}")
    depends = spec.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    return Job(
        id=str(spec.get("id") or fallback_id), type=jtype, component=comp, action=spec.get("action"),
        input=spec.get("input", "${input}"), output=spec.get("output"), depends_on=[str(d) for d in depends],
        retry=_retry(spec.get("retry"), (*loc, "retry"), c), timeout=_seconds(spec.get("timeout"), (*loc, "timeout"), c),
        on_error=_on_error(spec.get("on_error"), (*loc, "on_error"), c), raw=spec)


def _retry(value: Any, loc: tuple[Any, ...], c: _Checker) -> Retry | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Retry(max_attempt_count=int(value) + 1)  # a bare number counts retries after the first attempt
    spec = c.mapping(value, loc)
    c.keys(spec, loc, RETRY_KEYS)
    backoff = spec.get("backoff", "fixed")
    if backoff not in ("fixed", "exponential"):
        raise c.error((*loc, "backoff"), "backoff must be fixed or exponential")
    count = spec.get("max_attempt_count", (spec.get("max_retry_count") or 0) + 1 if "max_retry_count" in spec else 3)
    return Retry(int(count), _seconds(spec.get("delay"), (*loc, "delay"), c) or 0.0, backoff,
                 _seconds(spec.get("max_delay"), (*loc, "max_delay"), c))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def _seconds(value: Any, loc: tuple[Any, ...], c: _Checker) -> float | None:
    """``30``, ``1.5``, ``"500ms"``, ``"30s"``, ``"2m"`` → seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise c.error(loc, f"{value!r} is not a duration (e.g. 30, 500ms, 30s, 2m)")
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def _on_error(value: Any, loc: tuple[Any, ...], c: _Checker) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"to": value}
    spec = c.mapping(value, loc)
    c.keys(spec, loc, {"output", "to", "goto"})
    if "goto" in spec:
        spec = {**spec, "to": spec.pop("goto")}
    return spec
