"""The voice session: one WebSocket (``/v1/voice``) per listening page.

Client → server, JSON text frames:

- ``{"type": "hello", "api_key"?, "model"?, "voice"?, "speed"?}``: optional,
  first; browsers cannot set headers on a WebSocket, so the key comes here.
- ``{"type": "follow", "run_id"}``: speak a chat run's answer while it is
  written (start it with ``POST /chat/stream`` and pass its run id).
- ``{"type": "speak", "text"}``: speak a text.
- ``{"type": "text", "delta"}`` … ``{"type": "text.end"}``: speak a text the
  client streams itself (an answer from any API), as it arrives.
- ``{"type": "stop"}``: barge-in. The audio stops at once (synthesis is
  killed), the followed run is stopped and its partial answer saved as
  interrupted; answered by ``{"type": "stopped", "run_id", "sentences"}``.
- ``{"type": "listen", "sample_rate"?}``, binary frames of mono PCM s16le
  (16 kHz unless said), ``{"type": "listen.end"}``: microphone audio,
  answered by ``{"type": "transcript", "text"}``. Starting to listen is a
  barge-in too: the user speaking stops the answer.

Server → client: ``{"type": "started", "job", "run_id"}`` when a follow,
speak or streamed text begins (everything of an earlier job was sent before
it: a client drops what is not of its current job), then per piece
``{"type": "sentence", "job", "seq", "text"}``, binary frames (big-endian u32
``job``, u32 ``seq``, u32 sample rate, then PCM s16le mono), then
``{"type": "sentence.end", "seq", "bytes"}``; ``{"type": "done", "sentences"}``
when a follow or speak has been spoken in full; ``{"type": "error", "code",
"message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..core import BadRequest, SluicewayError
from ..engine.voice.pipeline import (
    Audio,
    Sentence,
    SentenceEnd,
    VoiceEvent,
    chunker_for,
    pieces,
    run_text,
    speak,
)
from ..providers.speech.audio import to_mono_rate
from ..providers.speech.base import wav_header
from .audio_routes import check_run, runs_of, speech_service
from .auth import authenticate

log = logging.getLogger("sluiceway.voice")
MAX_LISTEN_BYTES = 16000 * 2 * 120  # two minutes of 16 kHz speech per utterance


async def _once(items: list[str]) -> AsyncIterator[str]:
    for x in items:
        yield x


async def _drain(q: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    while (d := await q.get()) is not None:
        yield d


class VoiceSession:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.state = ws.app.state.sluiceway
        self.svc = speech_service(ws)
        self.model: str | None = None
        self.voice: str | None = None
        self.speed = 1.0
        self.job: asyncio.Task[None] | None = None
        self.job_no = 0  # numbers each follow / speak / streamed text, and tags its frames
        self.run_id: str | None = None  # the run being followed
        self.spoken = 0  # sentences of the current job fully sent
        self.send_lock = asyncio.Lock()
        self.text_q: asyncio.Queue[str | None] | None = None  # text the client streams to us
        self.mic: bytearray | None = None
        self.mic_rate = 16000
        self.authed = False

    # ------------------------------------------------------------ sending
    async def send_json(self, obj: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(orjson.dumps(obj).decode())

    async def send_audio(self, job: int, seq: int, rate: int, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(struct.pack(">III", job, seq, rate) + data)

    async def error(self, e: SluicewayError) -> None:
        await self.send_json({"type": "error", "code": e.code, "message": e.message, "status": e.status})

    # ------------------------------------------------------------ the loop
    def same_site(self) -> bool:
        """Cross-site WebSocket hijacking: browsers send Origin on a WebSocket and
        no CORS applies, so a page elsewhere could talk to a local server.
        Allow no Origin (not a browser), the server's own, and ``server.cors_origins``."""
        origin = self.ws.headers.get("origin")
        if not origin:
            return True
        if origin in self.state.config.server.cors_origins or "*" in self.state.config.server.cors_origins:
            return True
        host = self.ws.headers.get("host", "")
        return origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()

    async def serve(self) -> None:
        if not self.same_site():
            await self.ws.close(code=1008)
            return
        await self.ws.accept()
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    self.on_audio(msg["bytes"])
                    continue
                try:
                    await self.on_control(msg.get("text") or "")
                except SluicewayError as e:
                    await self.error(e)
                    if e.status == 401:
                        await self.ws.close(code=1008)
                        return
                except (WebSocketDisconnect, asyncio.CancelledError):
                    raise
                except Exception:  # one failed message must not end the session
                    log.exception("voice session message failed")
                    await self.error(SluicewayError("internal error; see the server log", code="internal_error"))
        except WebSocketDisconnect:
            pass
        finally:
            await self.cancel_job()  # a page that leaves stops talking; the run follows runs.disconnect

    async def _auth(self, key: str | None) -> None:
        scope = dict(self.ws.scope)
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        if key:
            headers.append((b"authorization", b"Bearer " + key.encode()))
        scope.update(type="http", headers=headers)
        req = Request(scope)
        self.principal = await authenticate(req)
        self.authed = True

    def _allowed(self, model: str | None) -> None:
        if model and not self.principal.allows(model):
            raise SluicewayError(f"this API key may not use the model {model!r}", status=403,
                                 code="permission_denied")

    async def on_control(self, text: str) -> None:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadRequest("control messages are JSON objects") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise BadRequest("control messages are JSON objects with a 'type'")
        kind = doc["type"]
        if kind == "hello" or not self.authed:
            await self._auth(doc.get("api_key") if isinstance(doc.get("api_key"), str) else None)
            if kind == "hello":
                self._settings(doc)
                await self.send_json({"type": "ready", "models": self.svc.speech_models(),
                                      "transcription": self.svc.transcription_models()})
                return
        if kind == "follow":
            run_id = doc.get("run_id")
            if not isinstance(run_id, str) or not run_id:
                raise BadRequest("'run_id' is required", param="run_id")
            runs = runs_of(self.state)
            await check_run(runs, run_id, self.principal.owner)  # only the key that started it may follow or stop it
            self._settings(doc)
            await self.start(pieces(run_text(runs.read(run_id, 0)), chunker_for(self.svc.config.chunker)), run_id)
        elif kind == "speak":
            text = doc.get("text")
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("'text' is required", param="text")
            self._settings(doc)
            chunker = chunker_for(self.svc.config.chunker)
            await self.start(_once([*chunker.feed(text), *chunker.finish()]), None)
        elif kind == "text":
            delta = doc.get("delta")
            if not isinstance(delta, str):
                raise BadRequest("'delta' must be a string", param="delta")
            if self.text_q is None:  # the first delta of an answer the client streams itself
                self._settings(doc)
                q: asyncio.Queue[str | None] = asyncio.Queue()
                await self.start(pieces(_drain(q), chunker_for(self.svc.config.chunker)), None)
                self.text_q = q
            self.text_q.put_nowait(delta)
        elif kind == "text.end":
            if self.text_q is not None:
                self.text_q.put_nowait(None)
                self.text_q = None
        elif kind == "stop":
            await self.barge_in("stopped")
        elif kind == "listen":
            await self.barge_in("barge-in")
            rate = doc.get("sample_rate", 16000)
            if not isinstance(rate, int) or not 8000 <= rate <= 48000:
                raise BadRequest("'sample_rate' must be 8000…48000", param="sample_rate")
            self.mic, self.mic_rate = bytearray(), rate
        elif kind == "listen.end":
            await self.transcribe()
        else:
            raise BadRequest(f"unknown message type {kind!r}", param="type")

    def _settings(self, doc: dict[str, Any]) -> None:
        for name in ("model", "voice"):
            v = doc.get(name)
            if v is not None and not isinstance(v, str):
                raise BadRequest(f"'{name}' must be a string", param=name)
        model = doc.get("model", self.model)
        self.svc.speaker(model)  # unknown → 404 before anything is spoken
        self._allowed(model)
        self.model, self.voice = model, doc.get("voice", self.voice)
        speed = doc.get("speed", self.speed)
        if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= speed <= 4.0:
            raise BadRequest("'speed' must be between 0.25 and 4.0", param="speed")
        self.speed = float(speed)

    # ------------------------------------------------------------ speaking
    async def start(self, texts: AsyncIterator[str], run_id: str | None) -> None:
        await self.cancel_job()  # one voice at a time: a new answer replaces the old
        target = self.svc.speaker(self.model)
        events = speak(texts, target.provider, voice=self.voice, speed=self.speed, model=target.model)
        self.run_id, self.spoken = run_id, 0
        self.job_no += 1
        await self.send_json({"type": "started", "job": self.job_no, "run_id": run_id})
        self.job = asyncio.create_task(self._pump(events, self.job_no), name="voice-job")

    async def _pump(self, events: AsyncIterator[VoiceEvent], job: int) -> None:
        try:
            async for ev in events:
                if isinstance(ev, Audio):
                    await self.send_audio(job, ev.seq, ev.sample_rate, ev.data)
                elif isinstance(ev, Sentence):
                    await self.send_json({"type": "sentence", "job": job, "seq": ev.seq, "text": ev.text})
                elif isinstance(ev, SentenceEnd):
                    self.spoken += 1
                    await self.send_json({"type": "sentence.end", "job": job, "seq": ev.seq, "bytes": ev.bytes})
            await self.send_json({"type": "done", "job": job, "run_id": self.run_id, "sentences": self.spoken})
        except SluicewayError as e:
            with contextlib.suppress(Exception):
                await self.error(e)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the page left
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]  # kills the speech process

    async def cancel_job(self) -> None:
        job, self.job = self.job, None
        self.text_q = None  # deltas after a stop start a new answer
        if job is not None and not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job

    async def barge_in(self, reason: str) -> None:
        """Stop talking now, then stop the answer being written (it is saved as interrupted)."""
        was_speaking = self.job is not None and not self.job.done()
        await self.cancel_job()
        run_id, self.run_id = self.run_id, None
        stopped = False
        if run_id is not None:
            stopped = await runs_of(self.state).stop(run_id, reason)
        if was_speaking or run_id is not None:
            await self.send_json({"type": "stopped", "run_id": run_id, "run_stopped": stopped,
                                  "sentences": self.spoken, "reason": reason})

    # ------------------------------------------------------------ listening
    def on_audio(self, data: bytes) -> None:
        if self.mic is None or not self.authed:
            return  # audio outside listen … listen.end is dropped
        if len(self.mic) + len(data) > MAX_LISTEN_BYTES:
            return
        self.mic += data

    async def transcribe(self) -> None:
        mic, self.mic = self.mic, None
        if mic is None:
            raise BadRequest("'listen.end' without 'listen'")
        target = self.svc.recognizer(None)
        pcm = to_mono_rate(bytes(mic), self.mic_rate, 1, 16000)
        text = await target.provider.transcribe(wav_header(16000, len(pcm)) + pcm, filename="mic.wav",
                                                model=target.model)
        await self.send_json({"type": "transcript", "text": text})


async def voice_session(ws: WebSocket) -> None:
    await VoiceSession(ws).serve()


def ws_routes() -> list[BaseRoute]:
    return [WebSocketRoute("/v1/voice", voice_session)]
