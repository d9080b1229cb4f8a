"""Connection test for a provider form, saved or not: does the address
resolve, does TLS verify, does the key work, is this the right kind?

It resolves the host and (for https) completes a TLS handshake itself, so
DNS and certificate failures are named as such; then it lists the models
and sends a one-token request through the real adapter. When the chat
endpoint is missing or speaks another dialect, it sniffs the base URL for
the other kinds' model listings to say which kind it probably is.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ...core import (
    AuthError,
    BadRequest,
    ChatRequest,
    Deadlines,
    Message,
    NotFound,
    PermissionDenied,
    RateLimited,
    SluicewayError,
    Timeout,
    UpstreamUnavailable,
)
from ..gateway import build_provider

URL_FIELDS = ("base_url", "endpoint", "submit_url", "endpoint_url")
LOCAL_KINDS = ("llamacpp", "transformers")


def _result(ok: bool, diagnosis: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "diagnosis": diagnosis, "message": message, **extra}


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    return text


async def _network(url: str, within: float) -> dict[str, Any] | None:
    """DNS, TCP and TLS by hand, so each failure has its own name. None: fine."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return _result(False, "bad_url", f"{url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        return _result(False, "dns", f"resolving {host} timed out")
    except OSError as e:
        return _result(False, "dns", f"{host} does not resolve ({e.strerror or e})")
    ctx = ssl.create_default_context() if parts.scheme == "https" else None
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    except TimeoutError:
        return _result(False, "timeout", f"{host}:{port} did not answer within {within:g} s")
    except ssl.SSLCertVerificationError as e:
        return _result(False, "tls", f"TLS certificate of {host} does not verify: {e.verify_message}")
    except ssl.SSLError as e:
        return _result(False, "tls", f"TLS handshake with {host}:{port} failed: {e.reason or e}")
    except ConnectionRefusedError:
        return _result(False, "unreachable", f"{host}:{port} refused the connection (nothing listening?)")
    except OSError as e:
        return _result(False, "unreachable", f"cannot connect to {host}:{port} ({e.strerror or e})")
    return None


async def _sniff(url: str, headers: dict[str, str], within: float) -> str | None:
    """Which kind the URL looks like, from the model listings each kind serves."""
    base = url.rstrip("/")
    root = f"{urlsplit(base).scheme}://{urlsplit(base).netloc}"
    checks = [(f"{base}/models", "openai"), (f"{base}/v1/models", "openai"),
              (f"{root}/api/tags", "ollama"), (f"{root}/v1beta/models", "gemini")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as s:
        for probe_url, kind in checks:
            try:
                async with s.get(probe_url, headers=headers) as r:
                    if r.status >= 400:
                        continue
                    doc = await r.json(content_type=None)
            except Exception:
                continue
            if kind == "openai" and isinstance(doc, dict) and doc.get("object") == "list" \
                    and isinstance(doc.get("data"), list):
                return "openai"
            if kind == "ollama" and isinstance(doc, dict) and "models" in doc:
                return "ollama"
            if kind == "gemini" and isinstance(doc, dict) and "models" in doc:
                return "gemini"
    return None


async def test_connection(name: str, spec: dict[str, Any], *, secrets: list[str] | None = None,
                          within: float = 10.0) -> dict[str, Any]:
    """``spec`` is a provider entry with its values resolved (secrets included)."""
    secrets = secrets or []
    kind = spec.get("kind") or name
    started = time.monotonic()
    url = next((spec[k] for k in URL_FIELDS if isinstance(spec.get(k), str) and spec[k]), None)
    if url is not None and kind not in LOCAL_KINDS:
        failed = await _network(url, within)
        if failed is not None:
            return failed
    try:
        provider = build_provider(name, spec)
    except Exception as e:  # the form was validated; this is a settings combination the adapter refuses
        return _result(False, "invalid", _scrub(str(e), secrets))
    models: list[str] = []
    try:
        try:
            async with asyncio.timeout(within):
                models = [m.id for m in await provider.list_models()]
        except Exception:
            models = []  # not every API lists models; the chat request below decides
        model = spec.get("default_model") or (models[0] if models else None)
        if not model:
            return _result(False, "no_model", "the provider lists no models: set a default model to test with",
                           models=[])
        req = ChatRequest(model=model, messages=[Message.of("user", "Say OK.")], max_tokens=1)
        deadline = Deadlines(within, within, within, within * 2)
        stream = provider.stream(req, deadline=deadline)
        try:
            async with asyncio.timeout(within * 2):
                async for batch in stream:
                    if any(ev.type != "start" for ev in batch):
                        break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        ms = round((time.monotonic() - started) * 1000)
        return _result(True, "ok", f"{model} answered in {ms} ms", models=models[:200],
                       model_count=len(models), model=model, latency_ms=ms)
    except (AuthError, PermissionDenied) as e:
        return _result(False, "bad_key", f"the upstream refused the credentials: {_scrub(e.message, secrets)}",
                       models=models[:200])
    except RateLimited as e:
        return _result(True, "rate_limited", f"the key works but is rate limited now: {_scrub(e.message, secrets)}",
                       models=models[:200])
    except (NotFound, BadRequest, SluicewayError, TimeoutError) as e:
        msg = _scrub(e.message if isinstance(e, SluicewayError) else "timed out", secrets)
        if isinstance(e, Timeout | TimeoutError):
            return _result(False, "timeout", f"no answer within {within:g} s: {msg}", models=models[:200])
        if isinstance(e, UpstreamUnavailable) and "connect" in msg:
            return _result(False, "unreachable", msg, models=models[:200])
        guess = await _sniff(url, {}, within) if url else None
        if guess and guess != kind:
            return _result(False, "wrong_kind", f"this looks like a {guess} API, not {kind}: {msg}",
                           suggested_kind=guess, models=models[:200])
        if isinstance(e, NotFound) and models and model not in models:
            return _result(False, "unknown_model", f"{model!r} is not one of the {len(models)} listed models",
                           models=models[:200])
        diagnosis = "bad_url" if isinstance(e, NotFound) else (
            "rejected" if isinstance(e, BadRequest) else "wrong_kind" if "json" in msg.lower() else "upstream_error")
        return _result(False, diagnosis, msg, models=models[:200])
    finally:
        with contextlib.suppress(Exception):
            await provider.aclose()
