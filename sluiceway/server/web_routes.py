"""The browser chat UI: ``/`` (index.html), ``/static/...`` (sluiceway/web/) and
``/vendor/<name>`` (the npm libraries' browser builds, vendored into
sluiceway/web/vendor/ from package-lock.json by scripts/vendor_web.py, so a wheel
carries them).

Vendor files are served from an explicit allow-list, never by joining a client
path onto a folder. When one is missing, ``/vendor/...`` answers 404, startup
logs a warning and the page falls back to plain-text rendering.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .schemas import PUBLIC, s
from .table import Op, path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
VENDOR_DIR = WEB_DIR / "vendor"

# /vendor/<name>: the ES module builds markdown.js loads with import().
VENDOR = ("marked.js", "purify.js", "highlight.js")


def missing_vendor() -> list[str]:
    return [name for name in VENDOR if not (VENDOR_DIR / name).is_file()]


def warn_missing_vendor() -> None:
    """Called at startup: a UI without its libraries renders replies as raw text."""
    if missing := missing_vendor():
        logging.getLogger("sluiceway.server").warning(
            "web UI libraries missing from %s (%s): replies render as plain text; "
            "reinstall sluiceway or run scripts/vendor_web.py", VENDOR_DIR, ", ".join(missing))

# Defence in depth behind DOMPurify: no inline or foreign script, no plugins,
# no foreign images (a model cannot exfiltrate the chat through an <img> URL).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"content-security-policy": CSP, "cache-control": "no-cache", "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer"}


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS, media_type="text/html")


async def docs(request: Request) -> Response:
    """The API docs page: renders /openapi.json in the browser with our own
    script (docs.js), no CDN; the document itself keeps its own access rule."""
    return FileResponse(WEB_DIR / "docs.html", headers=PAGE_HEADERS, media_type="text/html")


async def vendor(request: Request) -> Response:
    name = request.path_params["name"]
    path = VENDOR_DIR / name if name in VENDOR else None
    if path is None or not path.is_file():
        return Response("not found (run: python scripts/vendor_web.py)", 404, media_type="text/plain")
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "no-cache"})


class _Static(StaticFiles):
    """StaticFiles that asks browsers to revalidate, so an upgrade is picked up at
    once, and that keeps node_modules out of /static."""

    async def get_response(self, path: str, scope) -> Response:  # type: ignore[override]
        if Path(path).parts[:1] == ("node_modules",):
            return Response("not found", 404, media_type="text/plain")
        return await super().get_response(path, scope)

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[override]
        resp = super().file_response(*args, **kwargs)
        resp.headers["cache-control"] = "no-cache"
        resp.headers["x-content-type-options"] = "nosniff"
        return resp


def ops() -> list[Op]:
    """Served as they are (no API key, no JSON errors)."""
    html = {"200": {"description": "HTML", "content": {"text/html": {"schema": s()}}}}
    return [
        Op("GET", "/", index, "The chat UI", "ui", "index", html, security=PUBLIC, raw=True),
        Op("GET", "/index.html", index, "The chat UI", "ui", "indexHtml", html, security=PUBLIC, raw=True),
        Op("GET", "/docs", docs, "API docs (rendered from /openapi.json)", "ui", "docs", html,
           security=PUBLIC, raw=True),
        Op("GET", "/vendor/{name}", vendor, "The UI's vendored JavaScript libraries", "ui", "vendor",
           {"200": {"description": "A file"}, "404": {"description": "Not found"}},
           (path("name", s(minLength=1, maxLength=100)),), security=PUBLIC, raw=True),
    ]


def static() -> list[BaseRoute]:
    """The UI's files. Register LAST: they must never shadow an API route.
    Building the app is startup: say now if the UI will be degraded."""
    warn_missing_vendor()
    return [Mount("/static", _Static(directory=WEB_DIR, check_dir=False), name="static")]
