"""Settings API: provider kinds, their forms, and provider instances changed
while the server runs (engine/settings does the work).

Guarded by the admin key whenever one is configured. Without one, the API is
open only on a server bound to loopback that has no keys at all (static or
virtual), for a caller on loopback; otherwise it is refused with a 403 that
says to set ``server.admin_key``. Secrets are never in a response.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import AuthError, BadRequest, NotFound, PermissionDenied, SluicewayError
from ..engine.config import ConfigError
from ..engine.settings import catalogue
from ..engine.settings.admin import Conflict, ProviderAdmin
from ..engine.settings.form import SECRET_MAPS, FieldErrors, expand, looks_secret, references, validate
from ..engine.settings.probe import test_connection
from ..engine.settings.sync import SettingsSync
from .auth import auth_of
from .errors import JSON, error_response, internal_error
from .requests import presented_key, read_json
from .state import AppState

log = logging.getLogger("sluiceway.settings")


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _check(request: Request) -> None:
    auth = auth_of(request)
    admin = auth.admin_key
    if admin:
        key = presented_key(request)
        if key is None:
            raise AuthError("missing admin key: send Authorization: Bearer <admin key>", code="missing_api_key")
        if not hmac.compare_digest(key.encode(), admin.encode()):
            raise AuthError("invalid admin key", code="invalid_api_key")
        return
    state: AppState = request.app.state.sluiceway
    server = request.scope.get("server") or (None, None)
    client = request.client.host if request.client else None
    if _loopback(state.config.server.host) and _loopback(server[0]) and _loopback(client) \
            and not state.api_keys and not await auth._keys_exist():
        return
    raise PermissionDenied("the settings API needs an admin key on a server that is not loopback-only or "
                           "has API keys: set server.admin_key (or SLUICEWAY_ADMIN_KEY)", code="admin_key_required")


def admin_of(request: Request) -> ProviderAdmin:
    admin = getattr(request.app.state, "settings", None)
    if admin is None:  # an app whose lifespan did not call startup: no file watch, no replica sync
        admin = request.app.state.settings = ProviderAdmin(request.app.state.sluiceway.gateway)
    return admin


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status, media_type=JSON)


def _fields_error(e: FieldErrors) -> Response:
    first = next(iter(e.fields), None)
    body = {"error": {"message": f"invalid provider settings: {e}", "type": "invalid_request_error",
                      "param": first, "code": "validation_failed"}, "fields": e.fields}
    return _json(body, e.status)


def guarded(work):
    @functools.wraps(work)  # the route table documents the route from the handler's name and docstring
    async def endpoint(request: Request) -> Response:
        try:
            await _check(request)
            return await work(request)
        except FieldErrors as e:
            return _fields_error(e)
        except Conflict as e:
            return error_response(SluicewayError(str(e), status=409, code="conflict"))
        except KeyError as e:
            return error_response(NotFound(f"no provider named {e.args[0]!r}", code="provider_not_found"))
        except ConfigError as e:  # the file on disk is broken (a hand edit): say so, change nothing
            return error_response(SluicewayError(f"the config file is invalid: {e}", status=409,
                                                 code="config_invalid"))
        except SluicewayError as e:
            return error_response(e)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)  # no body: it may hold secrets
            return error_response(internal_error())
    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    state: AppState = request.app.state.sluiceway
    body = await read_json(request, state.config.server.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


# ---------------------------------------------------------------- catalogue

async def provider_kinds(request: Request) -> Response:
    """The provider kinds, with a title, a description and the vendors each covers."""
    return _json({"object": "list", "data": catalogue.kinds()})


async def provider_schema(request: Request) -> Response:
    """A kind's JSON Schema plus form hints: secret, required, advanced, defaults, presets."""
    kind = request.path_params["kind"]
    try:
        return _json(catalogue.form(kind))
    except ValueError:
        raise NotFound(f"unknown provider kind {kind!r}", code="kind_not_found") from None


# ---------------------------------------------------------------- instances

async def _listing(request: Request, admin: ProviderAdmin) -> list[dict[str, Any]]:
    gw = admin.gateway
    counts: dict[str, int] = {}
    if request.query_params.get("models", "1") != "0":
        for m in await gw.list_models():
            if m.owned_by != "sluiceway":  # aliases are listed separately
                counts[m.provider] = counts.get(m.provider, 0) + 1
    health = gw.health()
    out = []
    for view in admin.list():
        n = view["name"]
        status = health.get(n, {}).get("status") or ("ok" if counts.get(n) else "unknown")
        out.append({**view, "health": status, "model_count": counts.get(n, 0)})
    return out


async def providers(request: Request) -> Response:
    """List the providers (health, model counts) or create one from a flat form body."""
    admin = admin_of(request)
    if request.method == "GET":
        return _json({"object": "list", "data": await _listing(request, admin)})
    view, _ = await admin.save(await _body(request), create=True)
    return _json(view, 201)


async def provider(request: Request) -> Response:
    """Read, replace (PUT), change (PATCH) or delete one provider."""
    admin = admin_of(request)
    name = request.path_params["name"]
    if request.method == "GET":
        return _json(admin.view(name))
    if request.method == "DELETE":
        return _json({**await admin.delete(name), "deleted": True})
    body = await _body(request)
    if "name" in body and body["name"] != name:
        raise FieldErrors({"name": "renaming is not supported: create the new name, then delete this one"})
    view, _ = await admin.save(body, create=False, name=name, partial=request.method == "PATCH")
    return _json(view)


async def add_provider(request: Request) -> Response:
    """The seed's create-or-update: an update says so in ``warning``."""
    view, existed = await admin_of(request).save(await _body(request), create=None)
    if existed:
        return _json({**view, "warning": f"a provider named {view['name']!r} already existed and was updated"})
    return _json(view, 201)


# ---------------------------------------------------------------- connection tests

def _within(request: Request) -> float:
    """``?timeout=`` seconds for each step of a connection test (default 10)."""
    try:
        return min(max(float(request.query_params.get("timeout", "10")), 0.2), 60.0)
    except ValueError:
        raise BadRequest("timeout must be a number of seconds", param="timeout") from None


async def test_saved(request: Request) -> Response:
    """Test a saved provider: model list and a one-token request, with a diagnosis."""
    admin = admin_of(request)
    name = request.path_params["name"]
    spec = admin.gateway._specs.get(name)
    if spec is None:
        raise KeyError(name)
    kind = spec.get("kind") or name
    secrets = [str(spec[k]) for k in catalogue.secret_fields(kind) if spec.get(k)] if kind in catalogue.KINDS else []
    secrets += [str(v) for m in SECRET_MAPS if isinstance(spec.get(m), dict)
                for k, v in spec[m].items() if looks_secret(k)]  # scrubbed from messages
    return _json({"name": name, **await test_connection(name, dict(spec), secrets=secrets,
                                                       within=_within(request))})


async def test_form(request: Request) -> Response:
    """Dry run of an unsaved form: validated like a save, tested, nothing written."""
    admin = admin_of(request)
    body = await _body(request)
    body.setdefault("name", "dry-run")
    name = body["name"]
    existing = admin._raw_entry(name) if isinstance(name, str) else None
    _, kind, entry, env = validate(body, existing, partial=False)
    spec = expand(entry, env)
    secrets = [*env.values(), *(os.environ.get(v, "") for v in references(entry, ""))]  # scrubbed from messages
    return _json({"name": name, **await test_connection(str(name), spec, secrets=secrets,
                                                       within=_within(request))})


# ---------------------------------------------------------------- lifecycle

async def startup(app: Any) -> None:
    """Start watching the config files and, with Redis, other replicas' changes."""
    state: AppState = app.state.sluiceway
    admin = ProviderAdmin(state.gateway)
    app.state.settings = admin
    poll = float(os.environ.get("SLUICEWAY_SETTINGS_POLL", "0.5"))  # seconds between stats of the files
    sync = SettingsSync(admin, os.environ.get("REDIS_URL") or state.config.runs.redis_url, interval=poll)
    await sync.start()
    app.state.settings_sync = sync


async def shutdown(app: Any) -> None:
    sync = getattr(app.state, "settings_sync", None)
    if sync is not None:
        await sync.aclose()
    admin = getattr(app.state, "settings", None)
    if admin is not None:
        await admin.aclose()


def routes() -> list[Route]:
    return [
        Route("/settings/provider-kinds", guarded(provider_kinds), methods=["GET"]),
        Route("/settings/provider-schema/{kind}", guarded(provider_schema), methods=["GET"]),
        Route("/settings/providers", guarded(providers), methods=["GET", "POST"]),
        Route("/settings/providers/{name}", guarded(provider), methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/settings/providers/{name}/test", guarded(test_saved), methods=["POST"]),
        Route("/settings/test", guarded(test_form), methods=["POST"]),
        Route("/settings/add-provider", guarded(add_provider), methods=["POST"]),
    ]
