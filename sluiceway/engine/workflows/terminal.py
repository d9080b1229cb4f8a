"""``sluiceway run FILE [WORKFLOW_ID] --input '{...}'``: one workflow in the
terminal, printed as ``model-compose run`` prints it: a streamed output chunk
by chunk as it arrives, one line each (JSON chunks as ``json.dumps`` writes
them); any other output as indented UTF-8 JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from .service import Workflows
from .streams import LiveStream


async def run_file(path: str, workflow_id: str | None, input: Any, *, get_router: Callable[[], Any] = lambda: None,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    wfs = Workflows([path], get_router)
    try:
        if wfs.resolve(workflow_id) is None:
            ids = ", ".join(sorted(wfs.by_id)) or "(none)"
            print(f"sluiceway: no workflow {workflow_id or '(default)'!r} in {path}; workflows: {ids}", file=err)
            return 2
        task = wfs.start(workflow_id, input)
        await task.ready.wait()
        if task.status == "failed":
            print(f"sluiceway: workflow failed: {task.error}", file=err)
            return 1
        output = task.output
        if isinstance(output, LiveStream):
            try:
                async for chunk in output:
                    if isinstance(chunk, bytes):
                        chunk = chunk.decode("utf-8", "replace")
                    if output.format == "json" or not isinstance(chunk, str):
                        chunk = json.dumps(chunk, ensure_ascii=False, default=str)
                    out.write(chunk + "\n")
                    out.flush()
            except Exception as e:
                print(f"sluiceway: workflow failed mid-stream: {e}", file=err)
                return 1
        elif isinstance(output, str):
            out.write(output + "\n")
        elif isinstance(output, bytes):
            out.buffer.write(output) if hasattr(out, "buffer") else out.write(output.decode("utf-8", "replace"))
        else:
            out.write(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode() + "\n")
        out.flush()
        return 0
    finally:
        await wfs.aclose()


def parse_input(raw: str | None) -> Any:
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"--input is not valid JSON: {e}") from None


def run(path: str, workflow_id: str | None, raw_input: str | None, get_router: Callable[[], Any]) -> int:
    return asyncio.run(run_file(path, workflow_id, parse_input(raw_input), get_router=get_router))
