"""A fast fake OpenAI-compatible streaming upstream, run as its own process.

    python -m bench.fake_upstream --port 9100

Raw asyncio (a Protocol with a minimal HTTP/1.1 parser, keep-alive, chunked
responses), so that the upstream costs as little CPU as possible and the
figures measure the gateway rather than the fake.

What to stream is read from the request's ``model``, so that it passes
through a gateway untouched: ``bench-n200-s16-i0-idX`` streams 200
``chat.completion.chunk`` frames of 16 content characters each, 0 ms apart
(0 = as fast as the socket takes them), then a finish chunk, a usage chunk
and ``[DONE]``. ``id`` names the stream for the cancellation figure.

Endpoints besides ``POST /v1/chat/completions`` and ``GET /v1/models``:
``GET /stats`` (connection counts, streams in flight, and for every stream
whether it completed or when the client closed its connection, on the
system-wide ``time.monotonic`` clock) and ``POST /reset`` (forget streams).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time

import orjson

MODEL_RE = re.compile(r"n(\d+)|s(\d+)|i(\d+(?:\.\d+)?)|id([A-Za-z0-9_.:]+)")


def parse_model(model: str) -> tuple[int, int, float, str]:
    """``bench-n200-s16-i0-idX`` → (200 chunks, 16 chars, 0 s apart, "X")."""
    n, size, interval, sid = 10, 16, 0.0, ""
    for part in model.split("-")[1:]:
        m = MODEL_RE.fullmatch(part)
        if not m:
            continue
        if m.group(1):
            n = int(m.group(1))
        elif m.group(2):
            size = int(m.group(2))
        elif m.group(3):
            interval = float(m.group(3)) / 1000.0
        elif m.group(4):
            sid = m.group(4)
    return n, size, interval, sid


def _chunk(head: bytes, body: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    data = head + body + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Frames:
    """Precomputed wire bytes for a stream shape (cached per model)."""

    def __init__(self, model: str, size: int) -> None:
        created = int(time.time())
        pre = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%s,'
               b'"system_fingerprint":null,"choices":' % (created, orjson.dumps(model)))
        text = orjson.dumps(("abcdefghijklmnopqrstuvwxyz0123456789 " * (size // 37 + 1))[:size])
        self.first = _chunk(pre, b'[{"index":0,"delta":{"role":"assistant","content":%s},'
                                 b'"logprobs":null,"finish_reason":null}]}' % text)
        self.delta = _chunk(pre, b'[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]}' % text)
        self.text_len = size

    def tail(self, n: int) -> bytes:
        pre_end = _chunk(b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":',
                         b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}')
        usage = orjson.dumps({"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8})
        use = _chunk(b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[],"usage":', usage + b"}")
        done = _chunk(b"data: [DONE]", b"")
        return pre_end + use + done + b"0\r\n\r\n"


HEADERS = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
           b"transfer-encoding: chunked\r\n\r\n")


class Stats:
    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.requests = 0
        self.active = 0  # streams in flight
        self.chunks = 0
        self.streams: dict[str, dict] = {}  # id → {started, chunks, completed, closed_at}
        self.frames: dict[tuple[str, int], Frames] = {}

    def doc(self) -> dict:
        return {"open_connections": self.opened - self.closed, "opened": self.opened, "closed": self.closed,
                "requests": self.requests, "active_streams": self.active, "chunks": self.chunks,
                "now": time.monotonic(), "pid": os.getpid(), "streams": self.streams}


STATS = Stats()


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self.closed = False
        self.paused: asyncio.Future | None = None
        self.record: dict | None = None

    # -- connection -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        STATS.opened += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        STATS.closed += 1
        if self.record is not None and not self.record["completed"] and self.record["closed_at"] is None:
            self.record["closed_at"] = time.monotonic()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.paused is not None and not self.paused.done():
            self.paused.set_exception(ConnectionResetError())

    def pause_writing(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    def eof_received(self) -> bool:
        return False  # close our side too: the client has gone

    # -- HTTP ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None or self.task.done():
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        self.task = asyncio.ensure_future(self._handle(method, path.split("?")[0], body))

    def _reply(self, status: str, doc: object) -> None:
        body = orjson.dumps(doc)
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (status.encode(), len(body), body))

    async def _handle(self, method: str, path: str, body: bytes) -> None:
        STATS.requests += 1
        try:
            if method == "POST" and path.endswith("/chat/completions"):
                await self._stream(body)
            elif path == "/stats":
                self._reply("200 OK", STATS.doc())
            elif path == "/reset":
                STATS.streams.clear()
                STATS.chunks = 0
                self._reply("200 OK", {"ok": True})
            elif path.endswith("/models"):
                self._reply("200 OK", {"object": "list", "data": [
                    {"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]})
            else:
                self._reply("404 Not Found", {"error": {"message": f"no route {path}"}})
        except (asyncio.CancelledError, ConnectionError):
            return
        if not self.closed and self.buf:
            self._next()

    async def _stream(self, body: bytes) -> None:
        req = orjson.loads(body)
        model = str(req.get("model", "bench"))
        n, size, interval, sid = parse_model(model)
        frames = STATS.frames.get((model, size))
        if frames is None:
            frames = STATS.frames[(model, size)] = Frames(model, size)
        rec = None
        if sid:
            rec = STATS.streams[sid] = {"started": time.monotonic(), "chunks": 0, "completed": False,
                                        "closed_at": None}
            self.record = rec
        t = self.transport
        assert t is not None
        STATS.active += 1
        sleep = asyncio.sleep
        try:
            t.write(HEADERS + frames.first)
            STATS.chunks += 1
            delta = frames.delta
            for i in range(1, n + 1):
                if self.paused is not None:
                    await self.paused
                if interval:
                    await sleep(interval)
                elif i % 8 == 0:
                    await sleep(0)  # let other streams write too
                if self.closed:
                    return
                if i < n:
                    t.write(delta)
                    STATS.chunks += 1
                    if rec is not None:
                        rec["chunks"] += 1
            t.write(frames.tail(n))
            STATS.chunks += 1
            if rec is not None:
                rec["completed"] = True
                self.record = None
        finally:
            STATS.active -= 1


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, host, port, backlog=4096, reuse_address=True)
    print(f"fake upstream on http://{host}:{port}/v1 pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def run_fast(coro):
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    args = ap.parse_args()
    try:
        run_fast(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
