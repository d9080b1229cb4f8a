"""The route table: each API operation once — method, path, handler, its
parameters and documentation — from which come both the Starlette routes
(``to_routes``) and the OpenAPI document (``document``).

Every handler is wrapped once (``wrap``): authenticate (unless the op is
public or checks the key itself), then map a typed error to the protocol's
own error shape, a vanished client to 499, anything else to a logged 500.
A parameter spec (``IntQuery``) both documents a query parameter and reads
it, so a limit is written in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..core import BadRequest, SluicewayError
from .auth import authenticate
from .errors import CLIENT_GONE, ErrorEncoder, error_response, internal_error
from .schemas import BEARER, ID, J, i
from .streaming import ClientGone

log = logging.getLogger("sluiceway.server")
Handler = Callable[[Request], Awaitable[Any]]
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")  # {model:path} is {model} in the document


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str = "query"  # query | path | header
    schema: J = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False

    def doc(self) -> J:
        return {"name": self.name, "in": self.where, "required": self.required or self.where == "path",
                "schema": self.schema, "description": self.description}


def path(name: str, schema: J | None = None, description: str = "") -> Param:
    return Param(name, "path", schema or ID, description, True)


def query(name: str, schema: J, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "query", schema, description, required)


@dataclass(frozen=True, slots=True)
class IntQuery:
    """An integer query parameter with its bounds: documented and read from one spec."""

    name: str
    lo: int
    hi: int
    default: int
    description: str = ""

    def doc(self) -> J:
        return {"name": self.name, "in": "query", "required": False, "description": self.description,
                "schema": i(minimum=self.lo, maximum=self.hi)}

    def read(self, request: Request) -> int:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        try:
            v = int(raw)
        except ValueError:
            raise BadRequest(f"'{self.name}' must be an integer", param=self.name) from None
        if not self.lo <= v <= self.hi:
            raise BadRequest(f"'{self.name}' must be between {self.lo} and {self.hi}", param=self.name)
        return v


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    op_id: str
    responses: J
    params: tuple[Param | IntQuery, ...] = ()
    body: J | None = None  # the request body's OpenAPI object
    security: list[J] | None = None  # None: the document's default (an API key)
    errors: ErrorEncoder | None = None  # the protocol's error shape (default: OpenAI's)
    auth: bool = True  # the wrapper authenticates (False: public, or the handler does it itself)
    raw: bool = False  # serve the handler as is (no wrapper: static files)

    def doc(self) -> J:
        out: J = {"summary": self.summary, "operationId": self.op_id, "tags": [self.tag],
                  "responses": self.responses}
        if self.body is not None:
            out["requestBody"] = self.body
        if self.params:
            out["parameters"] = [p.doc() for p in self.params]
        if self.security is not None:
            out["security"] = self.security
        return out


def wrap(op: Op) -> Handler:
    encode = op.errors
    handler, auth = op.handler, op.auth

    async def route(request: Request) -> Any:
        try:
            if auth:
                await authenticate(request)
            return await handler(request)
        except SluicewayError as e:
            return error_response(e, encode) if encode is not None else error_response(e)
        except ClientGone:
            return CLIENT_GONE
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            err = internal_error()
            return error_response(err, encode) if encode is not None else error_response(err)

    route.__name__ = getattr(handler, "__name__", op.op_id)
    return route


def to_routes(ops: Iterable[Op]) -> list[BaseRoute]:
    """One Starlette route per operation (Starlette tries the next route of
    the same path when the method does not match)."""
    return [Route(op.path, op.handler if op.raw else wrap(op), methods=[op.method]) for op in ops]


def from_routes(routes: Iterable[BaseRoute]) -> list[Op]:
    """Ops for a module that hands over plain Starlette routes: served as they
    are and described from their handler's docstring (tagged by the first
    path segment), so the document still lists every route."""
    out = []
    for r in routes:
        if not isinstance(r, Route):
            continue
        tag = r.path.strip("/").split("/")[0] or "ui"
        for method in sorted((r.methods or {"GET"}) - {"HEAD"}):
            name = getattr(r.endpoint, "__name__", "op")
            summary = ((r.endpoint.__doc__ or name).strip().splitlines() or [name])[0]
            params = tuple(path(p) for p in r.param_convertors)
            out.append(Op(method, r.path, r.endpoint, summary, tag,
                          f"{tag}_{name}_{method.lower()}", {"200": {"description": "OK"}}, params, raw=True))
    return out


def document(ops: Iterable[Op], *, info: J, components: J) -> J:
    paths: J = {}
    for op in ops:
        paths.setdefault(_CONVERTOR.sub(r"{\1}", op.path), {})[op.method.lower()] = op.doc()
    return {"openapi": "3.1.0", "info": info, "security": BEARER, "paths": paths, "components": components}
