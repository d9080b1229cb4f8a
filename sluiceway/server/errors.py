"""Error helpers every route uses: a typed error → an HTTP response in the
protocol's own error shape, and the one JSON response helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from ..core import SluicewayError, UpstreamUnavailable
from ..protocols import openai_chat

JSON = "application/json"
CLIENT_GONE = Response(status_code=499)  # nginx's "client closed request"; nobody reads it

ErrorEncoder = Callable[[SluicewayError], tuple[int, bytes]]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers=headers, media_type=JSON)


def error_response(err: SluicewayError, encode: ErrorEncoder = openai_chat.encode_error) -> Response:
    status, body = encode(err)
    headers = {}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(body, status, headers=headers, media_type=JSON)


def internal_error() -> SluicewayError:
    return SluicewayError("internal server error; see the server log", code="internal_error")


def unavailable(what: str = "the store") -> SluicewayError:
    return SluicewayError(f"{what} is not open", status=503, code="unavailable")


def run_log_unavailable() -> SluicewayError:
    return UpstreamUnavailable("the run log is unavailable; try again", code="run_log_unavailable")
