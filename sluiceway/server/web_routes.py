"""The browser chat UI: ``/`` (index.html), ``/static/...`` (sluiceway/web/) and
``/vendor/<name>`` (the npm libraries' browser builds from
sluiceway/web/node_modules, installed by ``npm ci`` in scripts/setup.sh).

Vendor files are served from an explicit allow-list, never by joining a client
path onto node_modules. When node_modules is missing, ``/vendor/...`` answers
404 and the page falls back to plain-text rendering.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .schemas import PUBLIC, s
from .table import Op, path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
NODE_MODULES = WEB_DIR / "node_modules"

# /vendor/<name> -> file under node_modules (ES module builds, loaded with import()).
VENDOR: dict[str, str] = {
    "marked.js": "marked/lib/marked.esm.js",
    "purify.js": "dompurify/dist/purify.es.mjs",
    "highlight.js": "@highlightjs/cdn-assets/es/highlight.min.js",
}

# Defence in depth behind DOMPurify: no inline or foreign script, no plugins,
# no foreign images (a model cannot exfiltrate the chat through an <img> URL).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"content-security-policy": CSP, "cache-control": "no-cache", "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer"}


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS, media_type="text/html")


async def vendor(request: Request) -> Response:
    rel = VENDOR.get(request.path_params["name"])
    path = NODE_MODULES / rel if rel else None
    if path is None or not path.is_file():
        return Response("not found (run: npm ci --prefix sluiceway/web)", 404, media_type="text/plain")
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "no-cache"})


class _Static(StaticFiles):
    """StaticFiles that asks browsers to revalidate, so an upgrade is picked up at
    once, and that keeps node_modules (reached only through /vendor) out of /static."""

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
        Op("GET", "/vendor/{name}", vendor, "The UI's vendored JavaScript libraries", "ui", "vendor",
           {"200": {"description": "A file"}, "404": {"description": "Not found"}},
           (path("name", s(minLength=1, maxLength=100)),), security=PUBLIC, raw=True),
    ]


def static() -> list[BaseRoute]:
    """The UI's files. Register LAST: they must never shadow an API route."""
    return [Mount("/static", _Static(directory=WEB_DIR, check_dir=False), name="static")]
