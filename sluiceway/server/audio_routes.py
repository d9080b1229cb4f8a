"""OpenAI's audio endpoints, and speech that follows a chat run over SSE.

- ``POST /v1/audio/speech``: ``model``, ``input``, ``voice``, ``response_format``
  (wav, pcm, and mp3/flac where sox can make them; the remote providers make
  what their upstream makes), ``speed``; ``stream_format: "sse"`` sends
  ``speech.audio.delta`` events (base64) and one ``speech.audio.done``, as
  OpenAI's API does. Otherwise the audio bytes stream as they are made.
- ``POST /v1/audio/transcriptions``: multipart ``file`` + ``model`` →
  ``{"text"}`` (or ``text/plain`` with ``response_format=text``), when a
  recogniser is configured (PocketSphinx is, when installed).
- ``GET /v1/voice/runs/{run_id}``: a chat run's answer spoken while it is
  written, as SSE: ``speech.sentence`` (seq, text), ``speech.audio.delta``
  (seq, base64 PCM s16le), ``speech.sentence.done``, then ``speech.audio.done``.
- ``POST /v1/voice/chat``: ``/chat/stream`` (same body, same numbered frames)
  with those speech events alongside, as ``event: speech`` frames.
  The WebSocket session (``voice_ws.py``) is the same with barge-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from ..core import BadRequest, NotFound, PermissionDenied, SluicewayError
from ..engine.voice.pipeline import Audio, Sentence, SentenceEnd, chunker_for, pieces, run_text, speak
from ..engine.voice.service import SpeechService
from ..providers.speech import FORMATS, MEDIA_TYPES
from ..providers.speech.espeak import OPENAI_RATE, resample_stream
from .auth import owner
from .errors import json_response
from .requests import read_json
from .schemas import SSE, body, obj, ok, openai_err, ref, s
from .table import Op, path, query, to_routes

log = logging.getLogger("sluiceway.audio")
MAX_INPUT = 4096  # characters, as OpenAI's endpoint allows
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def speech_service(request: Any) -> SpeechService:
    return request.app.state.sluiceway.gateway.speech


def _allowed(request: Request, model: str) -> None:
    principal = getattr(request.state, "principal", None)
    if principal is not None and not principal.allows(model):
        raise PermissionDenied(f"this API key may not use the model {model!r}", param="model")


def _field(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None,
           *, required: bool = False) -> Any:
    v = doc.get(name, default)
    if v is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name)
        return default
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise BadRequest(f"'{name}' has the wrong type", param=name)
    return v


def sse_frame(obj_: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj_) + b"\n\n"


# ------------------------------------------------------------------ speech
async def audio_speech(request: Request) -> Response:
    """Text to speech (OpenAI's /v1/audio/speech)."""
    state = request.app.state.sluiceway
    doc = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    model = _field(doc, "model", str, required=True)
    text = _field(doc, "input", str, required=True)
    if not text.strip():
        raise BadRequest("'input' is empty", param="input")
    if len(text) > MAX_INPUT:
        raise BadRequest(f"'input' is longer than {MAX_INPUT} characters", param="input")
    voice = _field(doc, "voice", str)
    speed = float(_field(doc, "speed", (int, float), 1.0))
    if not 0.25 <= speed <= 4.0:
        raise BadRequest("'speed' must be between 0.25 and 4.0", param="speed")
    stream_format = _field(doc, "stream_format", str, "audio")
    if stream_format not in ("audio", "sse"):
        raise BadRequest("'stream_format' must be 'audio' or 'sse'", param="stream_format")
    _field(doc, "instructions", str)  # accepted; the embedded voice has no way to follow them
    target = speech_service(request).speaker(model)
    _allowed(request, model)
    fmt = _field(doc, "response_format", str)
    made = target.provider.formats()
    if fmt is None:  # OpenAI's default is mp3; without an mp3 encoder, WAV plays everywhere too
        fmt = "mp3" if "mp3" in made else "wav"
    if fmt not in FORMATS:
        raise BadRequest(f"'response_format' must be one of {', '.join(FORMATS)}", param="response_format")
    if fmt not in made:
        raise BadRequest(f"response_format {fmt!r} is not available from this speech model; "
                         f"it makes: {', '.join(made)}", param="response_format")
    speech = await target.provider.speak(text, voice=voice, speed=speed, format=fmt, model=target.model)
    audio = speech.audio
    if fmt == "pcm" and speech.sample_rate != OPENAI_RATE:
        audio = resample_stream(audio, speech.sample_rate, OPENAI_RATE)  # clients assume OpenAI's 24 kHz
    headers = {"x-sample-rate": str(OPENAI_RATE if fmt == "pcm" else speech.sample_rate)}
    if stream_format == "sse":
        return StreamingResponse(_speech_sse(audio, len(text)), media_type=SSE,
                                 headers={**SSE_HEADERS, **headers})
    return StreamingResponse(_closing(audio), media_type=MEDIA_TYPES[fmt], headers=headers)


async def _closing(audio: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in audio:
            yield chunk
    finally:
        await audio.aclose()  # type: ignore[attr-defined]


async def _speech_sse(audio: AsyncIterator[bytes], chars: int) -> AsyncIterator[bytes]:
    n = 0
    try:
        async for chunk in audio:
            n += len(chunk)
            yield sse_frame({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})
    except SluicewayError as e:  # the response has started: the failure goes in-band
        yield sse_frame({"type": "error", "error": {"code": e.code, "message": e.message}})
        return
    finally:
        await audio.aclose()  # type: ignore[attr-defined]
    tokens_in = max(1, chars // 4)
    yield sse_frame({"type": "speech.audio.done",
                     "usage": {"input_tokens": tokens_in, "output_tokens": 0, "total_tokens": tokens_in}})


# ----------------------------------------------------------- transcription
async def audio_transcriptions(request: Request) -> Response:
    """Speech to text (OpenAI's /v1/audio/transcriptions)."""
    state = request.app.state.sluiceway
    limit = state.config.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise SluicewayError(f"request body is larger than {limit} bytes", status=413, code="request_too_large")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with 'file' and 'model'", param="file")
    try:
        form = await request.form(max_files=1, max_fields=20)
    except Exception as e:  # a malformed multipart body is the client's
        raise BadRequest(f"the multipart body could not be read: {e}", param="file") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequest("'file' is required", param="file")
    data = await upload.read()
    if not data:
        raise BadRequest("'file' is empty", param="file")
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required", param="model")
    rfmt = form.get("response_format") or "json"
    if rfmt not in ("json", "text", "verbose_json"):
        raise BadRequest("'response_format' must be json, text or verbose_json here", param="response_format")
    language = form.get("language")
    prompt = form.get("prompt")
    target = speech_service(request).recognizer(model)
    _allowed(request, model)
    text = await target.provider.transcribe(data, filename=upload.filename or "audio.wav",
                                            language=language if isinstance(language, str) and language else None,
                                            model=target.model, prompt=prompt if isinstance(prompt, str) else None)
    if rfmt == "text":
        return Response(text, media_type="text/plain; charset=utf-8")
    out: dict[str, Any] = {"text": text}
    if rfmt == "verbose_json":
        out.update(task="transcribe", language=language or "english", segments=[])
    return json_response(out)


# ------------------------------------------------------ a run, spoken (SSE)
async def check_run(runs: Any, run_id: str, owner_filter: Any) -> None:
    """404 unless the run exists and belongs to the caller's key (another key's run is a 404, as a missing one)."""
    from ..store import owns

    meta = await runs.log.meta(run_id)
    if meta is None and not await runs.exists(run_id) or meta is not None and not owns(owner_filter,
                                                                                       meta.get("owner")):
        raise NotFound(f"run {run_id!r} is not active and its log has expired", code="run_not_found")


def runs_of(state: Any) -> Any:
    runs = getattr(state, "runs", None) or getattr(state, "hub", None)
    if runs is None:
        raise SluicewayError("the run service is not open", status=503, code="unavailable")
    return runs


def _spoken_run(request: Request, runs: Any, run_id: str) -> AsyncIterator[Any]:
    """The voice events of a run, with ``model``, ``voice``, ``speed`` from the query."""
    svc = speech_service(request)
    model = request.query_params.get("model") or None
    target = svc.speaker(model)
    if model:
        _allowed(request, model)
    voice = request.query_params.get("voice") or None
    try:
        speed = float(request.query_params.get("speed") or 1.0)
    except ValueError:
        raise BadRequest("'speed' must be a number", param="speed") from None
    if not 0.25 <= speed <= 4.0:
        raise BadRequest("'speed' must be between 0.25 and 4.0", param="speed")
    texts = pieces(run_text(runs.read(run_id, 0)), chunker_for(svc.config.chunker))
    return speak(texts, target.provider, voice=voice, speed=speed, model=target.model)


async def voice_run(request: Request) -> Response:
    """Speak a chat run's answer while it is written (SSE, base64 PCM)."""
    runs = runs_of(request.app.state.sluiceway)
    run_id = request.path_params["run_id"]
    await check_run(runs, run_id, owner(request))
    return StreamingResponse(_voice_sse(_spoken_run(request, runs, run_id)), media_type=SSE, headers=SSE_HEADERS)


def _speech_frame(ev: Any) -> bytes:
    if isinstance(ev, Audio):
        return sse_frame({"type": "speech.audio.delta", "seq": ev.seq, "sample_rate": ev.sample_rate,
                          "audio": base64.b64encode(ev.data).decode()})
    if isinstance(ev, Sentence):
        return sse_frame({"type": "speech.sentence", "seq": ev.seq, "text": ev.text})
    return sse_frame({"type": "speech.sentence.done", "seq": ev.seq, "bytes": ev.bytes})


async def _voice_sse(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    count = 0
    try:
        async for ev in events:
            count += isinstance(ev, SentenceEnd)
            yield _speech_frame(ev)
    except SluicewayError as e:
        yield sse_frame({"type": "error", "error": {"code": e.code, "message": e.message}})
        return
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    yield sse_frame({"type": "speech.audio.done", "sentences": count})


async def voice_chat(request: Request) -> Response:
    """Session chat with its answer spoken: ``/chat/stream``'s body and frames, plus speech events."""
    from ..protocols import session_chat
    from .chat_routes import start_chat

    state = request.app.state.sluiceway
    runs = runs_of(state)
    speech_service(request).speaker(request.query_params.get("model") or None)  # a bad voice: 4xx, nothing stored
    started = await start_chat(request)
    try:
        spoken = _spoken_run(request, runs, started.run_id)
    except SluicewayError:
        await runs.stop(started.run_id, "bad speech parameters")
        raise

    async def body() -> AsyncIterator[bytes]:
        """The run's numbered frames and ``event: speech`` frames, merged as they come."""
        q: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def text() -> None:
            async for batch in runs.read(started.run_id, 0):
                q.put_nowait(session_chat.encode_events(batch))

        async def voice() -> None:
            async for frame in _voice_sse(spoken):
                q.put_nowait(b"event: speech\n" + frame)

        async def both() -> None:
            try:
                await asyncio.gather(text(), voice())
            finally:
                q.put_nowait(None)

        task = asyncio.create_task(both(), name=f"voice-chat-{started.run_id}")
        ended = False
        try:
            yield session_chat.run_frame(started.ids())
            while (chunk := await q.get()) is not None:
                yield chunk
            ended = True
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if not ended and runs.disconnect == "cancel":  # the client left: as /chat/stream does
                await runs.stop(started.run_id, "disconnect")

    headers = {k.decode(): v.decode() for k, v in started.headers()}
    return StreamingResponse(body(), media_type=SSE, headers={**SSE_HEADERS, **headers})


# ------------------------------------------------------------------ table
SPEECH_BODY = obj({
    "model": s(minLength=1, maxLength=200, examples=["espeak"]),
    "input": s(minLength=1, maxLength=MAX_INPUT),
    "voice": s(maxLength=64, examples=["alloy"]),
    "instructions": s(),
    "response_format": s(enum=list(FORMATS)),
    "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
    "stream_format": s(enum=["audio", "sse"]),
}, ("model", "input"))
TRANSCRIBE_BODY = {"required": True, "content": {"multipart/form-data": {"schema": obj({
    "file": s(format="binary"), "model": s(minLength=1, examples=["pocketsphinx"]),
    "language": s(), "prompt": s(), "response_format": s(enum=["json", "text", "verbose_json"]),
    "temperature": {"type": "number"}}, ("file", "model"))}}}
AUDIO = {m: {"schema": s(format="binary")} for m in sorted(set(MEDIA_TYPES.values()))}


def ops() -> list[Op]:
    return [
        Op("POST", "/v1/audio/speech", audio_speech, "Text to speech (OpenAI audio.speech; SSE with stream_format)",
           "audio", "audioSpeech", {"200": {"description": "Audio, or SSE speech.audio.delta events",
                                            "content": {**AUDIO, SSE: {"schema": s()}}}, **openai_err},
           body=body(SPEECH_BODY)),
        Op("POST", "/v1/audio/transcriptions", audio_transcriptions, "Speech to text (OpenAI audio.transcriptions)",
           "audio", "audioTranscriptions", {"200": ok(obj({"text": s()}, ("text",))), **openai_err},
           body=TRANSCRIBE_BODY),
        Op("POST", "/v1/voice/chat", voice_chat, "Session chat with the answer spoken (SSE: run frames + speech)",
           "audio", "voiceChat", {"200": ok(stream=True), **openai_err}, body=body(ref("SessionChatRequest")),
           params=(query("model", s()), query("voice", s()),
                   query("speed", {"type": "number", "minimum": 0.25, "maximum": 4.0}))),
        Op("GET", "/v1/voice/runs/{run_id}", voice_run, "A chat run's answer spoken while it is written (SSE)",
           "audio", "voiceRun", {"200": ok(stream=True), **openai_err},
           params=(path("run_id"), query("model", s()), query("voice", s()),
                   query("speed", {"type": "number", "minimum": 0.25, "maximum": 4.0}))),
    ]


def routes() -> list[BaseRoute]:
    """Everything this module serves, the WebSocket voice session included."""
    from .voice_ws import ws_routes

    return [*to_routes(ops()), *ws_routes()]

