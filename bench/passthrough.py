"""The floor to compare the gateway with: a byte-for-byte passthrough proxy on
the same stack (uvicorn with httptools and uvloop, one aiohttp client
session), run as its own process.

    python -m bench.passthrough --port 9101 --upstream http://127.0.0.1:9100

It relays the request body (with the ``up/`` model prefix stripped, as the
gateway routes it) and copies each upstream read straight to the client: no
parsing, no events, no re-encoding. Whatever the gateway costs above this is
the cost of its own logic rather than of Python, HTTP or asyncio.

Like any proxy that must not leak upstream streams (and like Starlette's
StreamingResponse, and sluiceway), it watches for ``http.disconnect`` while
it streams and then stops reading the upstream, which closes that
connection: uvicorn drops writes to a client that has gone without telling
the app, so without the watcher an abandoned stream would run upstream to
its end.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import orjson
import uvicorn

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


def make_app(upstream: str):
    state: dict[str, aiohttp.ClientSession] = {}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    state["s"] = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(),
                        timeout=aiohttp.ClientTimeout(total=None))
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await state["s"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["method"] == "POST" and body:
            doc = orjson.loads(body)
            doc["model"] = str(doc.get("model", "")).removeprefix("up/")
            body = orjson.dumps(doc)
        task = asyncio.current_task()
        gone = False

        async def watch() -> None:  # the client leaving cancels the relay, wherever it waits
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            async with state["s"].request(scope["method"], upstream + scope["path"], data=body or None,
                                          headers={"content-type": "application/json"}) as resp:
                await send({"type": "http.response.start", "status": resp.status, "headers": HEADERS})
                content = resp.content
                while True:
                    data = await content.readany()
                    if not data:
                        break
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            return
        finally:
            watcher.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9101)
    ap.add_argument("--upstream", default="http://127.0.0.1:9100")
    args = ap.parse_args()
    uvicorn.run(make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
