"""Log lines: a request id carried into every one, text or JSON; every HTTP
request counted and timed (``HttpMetrics``). (Each stream's metrics and trace span are a run observer: ``engine.runs.metrics``.)"""

from __future__ import annotations

import contextvars
import logging
import os
import time

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# the server's own ``send``, for a streamed body's chunks: the middleware in between acts only on a
# response's start and end, so a chunk need not pass through each of their send wrappers
RAW_SEND = "sluiceway.raw_send"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage(), "request_id": request_id.get()}
        fields = getattr(record, "access", None)  # an access entry: its fields, not only a sentence
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations chatter at every start


access_log = logging.getLogger("sluiceway.access")


class HttpMetrics:
    """Pure ASGI, outermost (outside Starlette's own error middleware, so that
    ``send`` here is the server's: see ``RAW_SEND``): ``x-request-id`` passed through (or minted) onto
    the response and every log line, and every HTTP request counted once, with its route (the path
    template, so ids do not explode the label set), method, status and outcome,
    and its latency up to the end of the response body: also the requests a
    stream observer never sees (refused by auth or limits, failing before the
    first token, 404s). Cost: one perf_counter pair and two label lookups.

    With ``app.state.access_log`` it also writes the access entry (logger
    ``sluiceway.access``): method, path, status, latency, outcome, and what the
    route left in ``request.state.access`` (model, provider, tokens) and the
    caller's key id; JSON logs carry them as fields."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500  # an exception before the response started
        finished = gone = False
        # the request id: passed through (or minted) onto the response, the scope and the log context;
        # done here so that one send wrapper serves both (a streamed body's chunks skip it: RAW_SEND)
        rid = b""
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                rid = v[:128]
                break
        if not rid:
            rid = os.urandom(16).hex().encode()
        scope.setdefault("state", {})["request_id"] = rid_text = rid.decode("latin-1")
        request_id.set(rid_text)
        scope[RAW_SEND] = send

        async def watch_receive():  # noqa: ANN202
            nonlocal gone
            msg = await receive()
            if msg["type"] == "http.disconnect" and not finished:
                gone = True
            return msg

        async def watch_send(msg) -> None:  # noqa: ANN001
            nonlocal status, finished
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid)]
            elif msg["type"] == "http.response.body" and not msg.get("more_body"):
                finished = True
            await send(msg)

        try:
            await self.app(scope, watch_receive, watch_send)
        finally:
            metrics = scope["app"].state.sluiceway.gateway.metrics
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            outcome = ("disconnect" if gone and not finished else "ok" if status < 400
                       else "client_error" if status < 500 else "error")
            method, code = scope["method"], str(status)
            took = time.perf_counter() - t0
            metrics.child(metrics.http_requests, method, label, code, outcome).inc()
            metrics.child(metrics.http_latency, method, label, code).observe(took)
            if getattr(scope["app"].state, "access_log", False):
                log_access(scope, status, outcome, took)


def log_access(scope, status: int, outcome: str, took: float) -> None:  # noqa: ANN001
    state = scope.get("state") or {}
    principal = state.get("principal")
    fields = {"method": scope["method"], "path": scope["path"], "status": status,
              "latency_ms": round(took * 1000, 1), "outcome": outcome,
              "key_id": getattr(principal, "key_id", None), "request_id": state.get("request_id", "-")}
    route = state.get("access")
    if route:
        usage = route.get("usage")  # the stream's metrics observer: its token counts once it ended
        fields.update(model=route.get("model"), provider=route.get("provider"),
                      deployment=route.get("deployment"),
                      input_tokens=getattr(usage, "input", None), output_tokens=getattr(usage, "output", None))
    access_log.info("%s %s %d %.1fms", fields["method"], fields["path"], status, fields["latency_ms"],
                    extra={"access": fields})
