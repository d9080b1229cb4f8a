"""The OpenAPI document describes every route, and schemathesis fuzzing
every operation of a live server (backed by the fake upstream) gets no 5xx.

Bounded: 20 examples per operation (derandomised, so CI sees the same
cases), no shrinking, explicit examples plus generated ones (valid and
invalid), so the file stays under a minute."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from starlette.routing import Route

from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config, running
from .upstream import chat_text_stream, usage_wire

ADMIN = "fuzz-admin-key"
STATIC = "sk-fuzz-static"
# per operation; SLUICEWAY_FUZZ_EXAMPLES=200 for a deeper, randomised local run
EXAMPLES = int(os.environ.get("SLUICEWAY_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzz_server(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    upstream.add("fuzz", chat_text_stream(["fuzzed ", "answer"], usage=usage_wire(3, 2)))
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    cfg = make_config(upstream, store={"url": f"sqlite+aiosqlite:///{db}", "checkpoint_interval": 0.1},
                      server={"keepalive": 15, "admin_key": ADMIN, "api_keys": [STATIC]},
                      default_model="up/fuzz")
    with running(cfg) as (srv, _):
        yield srv


def document() -> dict:
    """The document an app serves: generated from its route table."""
    return orjson.loads(create_app(make_config(None)).state.openapi)


schema = schemathesis.openapi.from_dict(document())  # the very document the server serves (checked below)


def test_document_describes_every_route():
    app = create_app(make_config(None))
    doc = document()
    assert doc["openapi"].startswith("3.1")
    served: set[tuple[str, str]] = set()
    for r in app.routes:
        if not isinstance(r, Route):
            continue
        path = r.path.replace(":path}", "}")
        for method in r.methods or ():
            if method != "HEAD":
                served.add((path, method.lower()))
    described = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served - described == set(), "routes missing from the OpenAPI document"
    assert described - served == set(), "the OpenAPI document describes routes that do not exist"


def test_served_document_is_the_document(fuzz_server):
    assert httpx.get(f"{fuzz_server.url}/openapi.json").status_code == 401  # keys are on: it needs one
    r = httpx.get(f"{fuzz_server.url}/openapi.json", headers={"authorization": f"Bearer {STATIC}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == document()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES == 20, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_server):
    key = ADMIN if case.path.startswith("/admin") else STATIC
    response = case.call(base_url=fuzz_server.url, headers={"authorization": f"Bearer {key}"}, timeout=15)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]}\n"
        f"body: {case.body!r}\nquery: {case.query!r}")
