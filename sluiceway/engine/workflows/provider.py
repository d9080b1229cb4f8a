"""Every workflow as a model: ``workflow/<id>`` on every chat endpoint.

The chat becomes the workflow's input: ``input`` in the request's extra body
(OpenAI ``extra_body={"input": {...}}``) is used as is, and so is a last user
message that is a JSON object naming only the workflow's inputs (the web UI's
Workflows page sends its form that way). Otherwise the last user message goes
to one input: the first ``${input.x as text}``, else the first named like a
prompt, else the first ``${input.x}`` the workflow binds, else ``prompt``.
The output streams as text: a streamed output chunk by chunk (JSON chunks one
JSON text per line), any other output once, as text or indented JSON.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from ...core import (
    BadRequest,
    ChatRequest,
    Deadlines,
    Event,
    Finish,
    NotFound,
    SluicewayError,
    Start,
    TextDelta,
    TextEnd,
    TextStart,
    UpstreamError,
    Usage,
)
from ...core.tokens import estimate_text
from ...providers import ModelInfo
from .service import Workflows, _status
from .streams import LiveStream

PROVIDER_NAME = "workflow"


class WorkflowSettings(BaseModel):
    pass


class WorkflowProvider:
    kind: ClassVar[str] = "workflow"
    Settings: ClassVar[type[BaseModel]] = WorkflowSettings

    def __init__(self, workflows: Workflows, name: str = PROVIDER_NAME) -> None:
        self.workflows = workflows
        self.name = name
        self.settings = WorkflowSettings()

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(wf.id, owned_by="workflow") for _, wf in self.workflows.list()]

    async def aclose(self) -> None:
        await self.workflows.aclose()

    def chat_input(self, req: ChatRequest, wid: str | None) -> Any:
        given = req.extra.get("input")
        if isinstance(given, dict):
            return given
        last = next((m.text for m in reversed(req.messages) if m.role == "user"), "")
        found = self.workflows.resolve(wid)
        variables = self.workflows.inputs(found[1], found[0]) if found else []
        if last.lstrip().startswith("{"):  # a JSON object naming only known inputs is the input itself
            try:
                obj = orjson.loads(last)
            except orjson.JSONDecodeError:
                obj = None
            names = {v["name"] for v in variables}
            if isinstance(obj, dict) and obj and set(obj) <= names:
                return obj
        return {chat_input_name(variables): last}

    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        wid = None if req.model == "default" else req.model  # workflow/default: the file's default workflow
        if self.workflows.resolve(wid) is None:
            raise NotFound(f"no workflow {req.model!r}", code="model_not_found", param="model")
        task = self.workflows.start(wid, self.chat_input(req, wid))
        block = "wf-text"
        try:
            await task.ready.wait()
            if task.status == "failed":
                raise _error(task.error or "workflow failed", task.error_status)
            yield [Start(f"wf-{task.task_id}", f"workflow/{req.model}", int(time.time()))]
            out = task.output
            sent: list[str] = []
            yield [TextStart(block)]
            if isinstance(out, LiveStream):
                try:
                    async for chunk in out:
                        piece = _chat_text(chunk, out.format)
                        if piece:
                            sent.append(piece)
                            yield [TextDelta(block, piece)]
                except Exception as e:
                    self.workflows.stream_done(task, e, "".join(sent))
                    raise _error(str(e), _status(e)) from None
                self.workflows.stream_done(task, None, "".join(sent))
            else:
                text = _whole_text(out)
                if text:
                    sent.append(text)
                    yield [TextDelta(block, text)]
            yield [TextEnd(block), Finish("stop", Usage(output=estimate_text("".join(sent)), estimated=True))]
        finally:
            if task.status in ("pending", "processing"):
                await self.workflows.cancel(task)


PROMPT_NAMES = ("prompt", "message", "question", "query", "text", "input", "content")


def chat_input_name(variables: list[dict[str, Any]]) -> str:
    """Where a chat's last user message goes: the first ``as text`` input, else
    the first input named like a prompt, else the first input, else ``prompt``."""
    for pick in (lambda v: v.get("type") == "text", lambda v: v["name"] in PROMPT_NAMES, lambda v: True):
        for v in variables:
            if pick(v):
                return v["name"]
    return "prompt"


def _error(message: str, status: int) -> SluicewayError:
    if status == 400:
        return BadRequest(message)
    e = UpstreamError(message, status=status if status >= 500 else 502, code="workflow_failed")
    e.retryable = False  # a workflow may have side effects: never run it twice on its own
    return e


def _chat_text(chunk: Any, fmt: str | None) -> str:
    if isinstance(chunk, bytes):
        return chunk.decode("utf-8", "replace")
    if isinstance(chunk, str) and fmt != "json":
        return chunk
    return orjson.dumps(chunk).decode() + "\n"


def _whole_text(out: Any) -> str:
    if out is None:
        return ""
    if isinstance(out, str):
        return out
    return orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()


def attach(gateway: Any, config: Any, providers: dict[str, Any]) -> None:
    """Add the ``workflow`` provider to the providers a gateway (re)load builds,
    keeping the running instance (its tasks and managed servers) when the
    workflow paths did not change. Relative paths are relative to the config file."""
    from pathlib import Path

    from ..config import ConfigError
    from .loader import WorkflowLoadError

    paths = list(getattr(config, "workflows", None) or [])
    if not paths:
        return
    if PROVIDER_NAME in providers:
        raise ConfigError(f"providers.{PROVIDER_NAME}: the name {PROVIDER_NAME!r} is reserved for workflows")
    base = Path(config.path).parent if getattr(config, "path", None) else Path()
    resolved = [str(p if Path(p).is_absolute() else base / p) for p in paths]
    old = gateway.providers.get(PROVIDER_NAME) if hasattr(gateway, "providers") else None
    if isinstance(old, WorkflowProvider) and old.workflows.paths == resolved:
        providers[PROVIDER_NAME] = old
        return
    try:
        providers[PROVIDER_NAME] = WorkflowProvider(Workflows(resolved, lambda: gateway.router))
    except WorkflowLoadError as e:
        raise ConfigError(str(e)) from None


def workflows_of(gateway: Any) -> Workflows | None:
    p = getattr(gateway, "providers", {}).get(PROVIDER_NAME)
    return p.workflows if isinstance(p, WorkflowProvider) else None
