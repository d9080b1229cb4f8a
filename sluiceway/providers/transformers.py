"""A local Hugging Face model through ``transformers`` (optional extra:
``pip install 'sluiceway[transformers]'``).

Loads from a local directory only (``local_files_only=True``): a gateway must
never start a multi-gigabyte download because a request named a model.
``generate`` runs on one worker thread per provider and generations take
turns (FIFO). Text leaves the thread through a ``TextIteratorStreamer``
whose hand-off goes straight to the event loop's queue
(``call_soon_threadsafe``), so no second thread blocks on the iterator.
Cancelling the stream sets a flag that a stopping criterion checks at every
generated token, so generation stops within one token.

torch and transformers are imported lazily, on first use; the pure parts
(``messages_to_chat``, ``CancelFlag``) work without them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson
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

log = logging.getLogger("sluiceway.transformers")

INSTALL_HINT = "pip install 'sluiceway[transformers]'"


# ----------------------------------------------------------------- pure part

def messages_to_chat(req: ChatRequest) -> list[dict[str, Any]]:
    """Canonical messages → the chat-template message list transformers
    expects (tool calls with parsed arguments, tool results as ``tool``)."""
    out: list[dict[str, Any]] = []
    for m in req.messages:
        if any(p.type not in ("text", "reasoning") for p in m.content):
            raise BadRequest("this local model accepts text only", param="messages")
        msg: dict[str, Any] = {"role": m.role, "content": m.text}
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for c in m.tool_calls:
                try:
                    args = orjson.loads(c.arguments) if c.arguments else {}
                except orjson.JSONDecodeError:
                    args = c.arguments
                calls.append({"type": "function", "id": c.call_id, "function": {"name": c.name, "arguments": args}})
            msg["tool_calls"] = calls
        elif m.role == "tool":
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
            if m.name:
                msg["name"] = m.name
        out.append(msg)
    return out


class CancelFlag:
    """A stopping criterion that says "stop" once ``set()`` is called.

    transformers calls every criterion after each generated token with the
    whole sequence so far, so it also records the sequence length: the exact
    output token count for usage. It returns a bool tensor of the batch
    shape built from ``input_ids`` itself (no torch import here)."""

    __slots__ = ("_event", "length")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.length = 0

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        self.length = int(input_ids.shape[-1])
        done = input_ids[:, -1] < 0  # all False, right shape and device
        return ~done if self._event.is_set() else done


# ------------------------------------------------------------------ provider

class TransformersSettings(BaseModel):
    model_path: str = Field(..., description="Local directory of a Hugging Face model (never downloaded)")
    model_id: str | None = Field(None, description="Model name to serve it as (default: the directory name)")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, mps")
    dtype: str = Field("auto", description="torch dtype: auto, float32, float16, bfloat16")
    default_max_tokens: int = Field(512, ge=1, description="max_new_tokens when the request gives none")
    trust_remote_code: bool = Field(False, description="Run model code shipped in the directory")


class TransformersProvider:
    kind: ClassVar[str] = "transformers"
    Settings: ClassVar[type[BaseModel]] = TransformersSettings
    runs_in_worker: ClassVar[bool] = True  # served through providers/worker.py, in a child process

    def __init__(self, name: str, settings: TransformersSettings) -> None:
        self.name = name
        self.settings = settings
        self.path = Path(settings.model_path).expanduser()
        self.model_id = settings.model_id or self.path.name
        self._worker = LocalWorker(f"hf-{name}")

    def _load(self) -> tuple[Any, Any]:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise UpstreamError(f"{self.name}: transformers is not installed ({INSTALL_HINT})") from e
        t0 = time.monotonic()
        s = self.settings
        tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True,
                                            trust_remote_code=s.trust_remote_code)
        dtype = "auto" if s.dtype == "auto" else getattr(torch, s.dtype)
        model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True, torch_dtype=dtype,
                                                     trust_remote_code=s.trust_remote_code)
        model.to(s.device)
        model.eval()
        log.info("loaded %s in %.2fs", self.path, time.monotonic() - t0)
        return tok, model

    async def model(self) -> tuple[Any, Any]:
        if self._worker.loaded is None and not self.path.is_dir():
            raise UpstreamError(f"{self.name}: model directory {self.path} does not exist")
        return await self._worker.load(self._load)

    def _check(self, req: ChatRequest) -> None:
        if req.model not in (self.model_id, "default"):
            raise NotFound(f"{self.name} serves {self.model_id!r}, not {req.model!r}",
                           code="model_not_found", param="model")
        if req.tools and req.tool_choice not in (None, "auto", "none"):
            raise BadRequest(f"{self.model_id}: tool calls are not parsed from local models; "
                             "tool_choice must be auto or none", param="tool_choice")

    def _generate(self, tok: Any, model: Any, req: ChatRequest, emit: Callable[[Any], None],
                  flag: CancelFlag) -> None:
        """Runs on the worker thread; ``emit`` hands items to the event loop."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        class LoopStreamer(TextIteratorStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    emit(("text", text))

        try:
            enc = tok.apply_chat_template(messages_to_chat(req), add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            ids = enc["input_ids"].to(model.device)
            prompt_len = int(ids.shape[-1])
            max_new = req.max_tokens or self.settings.default_max_tokens
            kw: dict[str, Any] = {"max_new_tokens": max_new, "streamer": LoopStreamer(
                tok, skip_prompt=True, skip_special_tokens=True),
                "stopping_criteria": StoppingCriteriaList([flag]),
                "attention_mask": enc["attention_mask"].to(model.device), "pad_token_id": tok.pad_token_id or tok.eos_token_id}
            if req.temperature:
                kw.update(do_sample=True, temperature=req.temperature)
                if req.top_p is not None:
                    kw["top_p"] = req.top_p
            else:
                kw["do_sample"] = False
            if req.stop:
                kw.update(stop_strings=req.stop, tokenizer=tok)
            if req.seed is not None:
                import torch

                torch.manual_seed(req.seed)
            if req.tools:
                log.warning("%s: dropping %d tool(s): local tool calls are not parsed", self.name, len(req.tools))
            model.generate(ids, **kw)
            n_out = max(0, flag.length - prompt_len)
            reason = "stop" if flag.is_set() or n_out < max_new else "length"
            emit(("finish", reason, prompt_len, n_out))
        except Exception as e:
            log.exception("generation failed")
            emit(("error", UpstreamError(f"{self.name}: generation failed: {type(e).__name__}")))
        finally:
            emit(None)

    async def stream(self, req: ChatRequest, *, deadline: Deadlines) -> AsyncIterator[list[Event]]:
        self._check(req)
        messages_to_chat(req)  # refuse non-text input before loading anything
        tok, model = await self.model()
        flag = CancelFlag()
        async for out in self._worker.stream(lambda emit: self._generate(tok, model, req, emit, flag), flag.set,
                                             deadline=deadline, name=self.name, model_id=self.model_id):
            yield out

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id, owned_by=self.name)]

    async def aclose(self) -> None:
        self._worker.close()
