"""Component actions: http-client, http-server (a managed process), model
(through sluiceway's router, so any configured provider works), shell and the
two splitters. Each returns a value or a ``LiveStream``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ...core import ChatRequest, Message
from .bindings import BindingError, render, truthy
from .splitters import split_sentences, split_text
from .streams import LiveStream, materialize

if TYPE_CHECKING:
    from .servers import ManagedServers

META = {"id", "type", "description", "action", "actions", "title", "max_concurrent_count", "default"}


class ComponentError(RuntimeError):
    """A component failed; ``status`` is the upstream HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Services:
    """What components need from the engine: the router, one HTTP session, managed servers."""

    def __init__(self, get_router: Callable[[], Any], servers: ManagedServers) -> None:
        self.get_router = get_router  # the gateway's current router (it is rebuilt on reload)
        self.servers = servers
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.servers.aclose()


def action_of(spec: dict[str, Any], action_id: str | None) -> dict[str, Any]:
    """The component's settings merged with the chosen action's."""
    base = {k: v for k, v in spec.items() if k not in META}
    actions = spec.get("actions")
    if isinstance(actions, dict):
        actions = [{"id": k, **v} for k, v in actions.items()]
    chosen: dict[str, Any] | None = None
    if action_id is not None:
        chosen = next((a for a in actions or [] if a.get("id") == action_id), None)
        if chosen is None:
            raise ComponentError(f"component {spec.get('id', '')!r} has no action {action_id!r}")
    elif spec.get("action") is not None:
        chosen = spec["action"]
    elif actions:
        chosen = next((a for a in actions if a.get("default")), actions[0])
    return {**base, **{k: v for k, v in (chosen or {}).items() if k not in ("id", "default", "description")}}


async def run_component(spec: dict[str, Any], action_id: str | None, input: Any, svc: Services,
                        component_id: str, base_dir: str | None = None) -> Any:
    action = action_of(spec, action_id)
    kind = spec["type"]
    if kind == "http-client":
        return await http_request(action, input, svc, action.get("base_url"))
    if kind == "http-server":
        base = await svc.servers.ensure(component_id, spec, base_dir)
        return await http_request(action, input, svc, base)
    if kind == "model":
        return await model_call(action, input, svc)
    if kind == "shell":
        return await shell(action, input)
    if kind == "text-splitter":
        return await text_splitter(action, input)
    if kind == "sentence-splitter":
        return await sentence_splitter(action, input)
    raise ComponentError(f"component type {kind!r} is not supported")


def _direct(output: Any, name: str) -> bool:
    return output is None or (isinstance(output, str) and output.strip() == f"${{{name}}}")


# ------------------------------------------------------------------ http

async def http_request(action: dict[str, Any], input: Any, svc: Services, base_url: str | None) -> Any:
    scope = {"input": input}
    r = await materialize(render({k: action.get(k) for k in ("endpoint", "path", "method", "headers", "params",
                                                            "body")}, scope))
    url = r["endpoint"] or (str(base_url or "").rstrip("/") + "/" + str(r["path"] or "").lstrip("/"))
    headers = {str(k): str(v) for k, v in (r["headers"] or {}).items()}
    params = {str(k): str(v) for k, v in (r["params"] or {}).items() if v is not None}
    body, data = r["body"], None
    kwargs: dict[str, Any] = {}
    if body is not None:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        if "json" in ctype or isinstance(body, dict | list):
            data = orjson.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        else:
            data = body if isinstance(body, bytes) else str(body).encode()
        kwargs["data"] = data
    method = str(r["method"] or "POST").upper()
    if action.get("timeout") is not None:  # seconds without a byte from the server, streams included
        kwargs["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                  sock_read=_seconds(render(action["timeout"], scope)))
    try:
        resp = await svc.session.request(method, url, headers=headers, params=params, **kwargs)
    except TimeoutError:
        raise ComponentError(f"{method} {url}: no answer within {action['timeout']}", 504) from None
    except (aiohttp.ClientError, OSError) as e:
        raise ComponentError(f"{method} {url}: {type(e).__name__}: {e}", 502) from None
    output = action.get("output")
    if resp.status >= 400:
        text = (await resp.read())[:2000].decode("utf-8", "replace")
        resp.release()
        raise ComponentError(f"{method} {url} answered {resp.status}: {text}", resp.status)
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype == "text/event-stream":
        fmt = action.get("stream_format")
        return LiveStream(_sse_chunks(resp, fmt, output, input))
    try:
        if ctype == "application/json":
            response: Any = orjson.loads(await resp.read() or b"null")
        elif ctype.startswith("text/"):
            response = await resp.text()
        else:
            response = await resp.read()
    finally:
        resp.release()
    return response if _direct(output, "response") else render(output, {"input": input, "response": response})


async def _sse_chunks(resp: aiohttp.ClientResponse, fmt: str | None, output: Any, input: Any) -> AsyncIterator[Any]:
    """One item per SSE event's data, converted per ``stream_format`` and put
    through the output binding (``${response[]...}``)."""
    direct = _direct(output, "response[]")
    try:
        async for data in _sse_data(resp.content):
            if fmt == "json":
                try:
                    chunk: Any = orjson.loads(data)
                except orjson.JSONDecodeError:
                    chunk = None  # [DONE] and other non-JSON frames
            elif fmt == "text":
                chunk = data.decode("utf-8", "replace")
            else:
                chunk = data
            yield chunk if direct else render(output, {"input": input, "response[]": chunk})
    finally:
        resp.close()


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    lines: list[bytes] = []
    while True:
        raw = await content.readline()
        if not raw:
            break
        line = raw.rstrip(b"\r\n")
        if not line:
            if lines:
                yield b"\n".join(lines)
                lines = []
        elif line.startswith(b"data:"):
            lines.append(line[6:] if line.startswith(b"data: ") else line[5:])
    if lines:
        yield b"\n".join(lines)


# ----------------------------------------------------------------- model

async def model_call(action: dict[str, Any], input: Any, svc: Services) -> Any:
    router = svc.get_router()
    if router is None:
        raise ComponentError("model components need the gateway's router")
    scope = {"input": input}
    task = action.get("task", "chat-completion")
    model = render(action.get("model"), scope)
    if action.get("provider"):
        model = f"{render(action['provider'], scope)}/{model}"
    if not model:
        raise ComponentError("a model component needs `model` (a sluiceway model or provider/model)")
    messages: list[Message] = []
    system = render(action.get("system"), scope)
    if system:
        messages.append(Message.of("system", str(await materialize(system))))
    if task == "chat-completion" and action.get("messages") is not None:
        for m in await materialize(render(action["messages"], scope)) or []:
            messages.append(Message.of(m.get("role", "user"), str(m.get("content") or "")))
    else:
        text = await materialize(render(action.get("text", action.get("prompt", "${input.text}")), scope))
        messages.append(Message.of("user", "" if text is None else str(text)))
    params = await materialize(render(action.get("params") or {}, scope))
    max_tokens = params.get("max_output_length", params.get("max_tokens"))
    req = ChatRequest(model=str(model), messages=messages, max_tokens=int(max_tokens) if max_tokens else None,
                      temperature=params.get("temperature"), top_p=params.get("top_p"))
    streaming = truthy(render(action.get("streaming", False), scope))
    opened = await router.open(req)
    output = action.get("output")
    if streaming:
        return LiveStream(_model_chunks(opened, output, input))
    parts: list[str] = []
    async for piece in _model_chunks(opened, None, input):
        parts.append(piece)
    result = "".join(parts)
    return result if _direct(output, "result") else render(output, {"input": input, "result": result})


async def _model_chunks(opened: Any, output: Any, input: Any) -> AsyncIterator[Any]:
    direct = _direct(output, "result[]")
    try:
        async for batch in opened.batches():
            for ev in batch:
                if ev.type == "text-delta" and ev.delta:
                    yield ev.delta if direct else render(output, {"input": input, "result[]": ev.delta})
                elif ev.type == "error":
                    raise ComponentError(ev.message, ev.status)
    finally:
        await opened.aclose()


# ----------------------------------------------------------------- shell

async def shell(action: dict[str, Any], input: Any) -> Any:
    scope = {"input": input}
    command = await materialize(render(action.get("command"), scope))
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command or []]
    if not argv:
        raise ComponentError("shell: empty command")
    env = {**os.environ, **{str(k): str(v) for k, v in (render(action.get("env") or {}, scope)).items()}}
    timeout = action.get("timeout")
    seconds = _seconds(render(timeout, scope)) if timeout is not None else None
    try:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=action.get("working_dir") or None, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
    except OSError as e:
        raise ComponentError(f"shell: cannot run {argv[0]!r}: {e.strerror or e}") from None
    try:
        async with asyncio.timeout(seconds):
            out, err = await proc.communicate()
    except TimeoutError:
        raise ComponentError(f"shell: command timed out after {seconds:g}s: {shlex.join(argv)}", 504) from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: no orphaned child
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
    result = {"stdout": out.decode("utf-8", "replace").strip(), "stderr": err.decode("utf-8", "replace").strip(),
              "exit_code": proc.returncode}
    output = action.get("output")
    return result if _direct(output, "result") else render(output, {"input": input, "result": result})


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    s = str(value).strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if s.endswith(suffix) and s[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(s[: -len(suffix)]) * mult
    try:
        return float(s)
    except ValueError:
        raise BindingError(f"{value!r} is not a duration") from None


# ------------------------------------------------------------- splitters

async def text_splitter(action: dict[str, Any], input: Any) -> Any:
    scope = {"input": input}
    text = await materialize(render(action.get("text", "${input.text}"), scope))
    size = render(action.get("chunk_size", 1000), scope)
    overlap = render(action.get("chunk_overlap", 200), scope)
    seps = render(action.get("separators"), scope)
    try:
        chunks = [] if text is None else split_text(str(text), int(size), int(overlap), seps)
    except ValueError as e:
        raise BindingError(f"text-splitter: {e}") from None
    output = action.get("output")
    return chunks if _direct(output, "result") else render(output, {"input": input, "result": chunks})


async def sentence_splitter(action: dict[str, Any], input: Any) -> Any:
    scope = {"input": input}
    text = render(action.get("text", "${input.text}"), scope)
    mn = render(action.get("min_chunk_length", 0), scope)
    mx = render(action.get("max_chunk_length"), scope)
    streaming = truthy(render(action.get("streaming", False), scope))
    if isinstance(text, dict | list):
        text = await materialize(text)
    source = text if isinstance(text, LiveStream) else ("" if text is None else str(text))
    chunks = split_sentences(source, int(mn or 0), int(mx) if mx is not None else None)
    output = action.get("output")
    if streaming:
        direct = _direct(output, "result[]")

        async def rendered() -> AsyncIterator[Any]:
            try:
                async for c in chunks:
                    yield c if direct else render(output, {"input": input, "result[]": c})
            finally:
                await chunks.aclose()
        return LiveStream(rendered() if not direct else chunks)
    result = [c async for c in chunks]
    return result if _direct(output, "result") else render(output, {"input": input, "result": result})
