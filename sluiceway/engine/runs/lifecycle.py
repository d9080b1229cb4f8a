"""Opening and closing the store and the runs service with the server, and
the chores that keep them tidy: the orphan sweep (answers a dead process
left ``streaming``), trace and stored-Response retention."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from ...store import Store
from ...store.responses import fail_responses, prune_responses, unfinished_responses
from ..config import Config
from .log_memory import MemoryRunLog
from .service import Runs

log = logging.getLogger("sluiceway.runs")


async def open_store(cfg: Config) -> Store:
    """The configured store (``DATABASE_URL`` overrides), migrated."""
    return await Store.open(os.environ.get("DATABASE_URL") or cfg.store.url)


async def open_runs(cfg: Config) -> tuple[Store, Runs]:
    """Open the store and the runs service; mark answers whose run died with
    an earlier process ``interrupted``; schedule the chores."""
    store = await open_store(cfg)
    redis_url = os.environ.get("REDIS_URL") or cfg.runs.redis_url
    runlog: Any
    if redis_url:
        from .log_redis import RedisRunLog

        runlog = RedisRunLog(redis_url, ttl=cfg.runs.ttl, live_ttl=cfg.runs.live_ttl)
    else:
        runlog = MemoryRunLog(ttl=cfg.runs.ttl)
    runs = Runs(runlog, disconnect=cfg.runs.disconnect, shutdown_grace=cfg.runs.shutdown_grace)
    try:
        await runs.open()
        await sweep_orphans(store, runs)
        if redis_url:  # a crashed replica's runs stop looking live only after their heartbeat TTL
            runs.every(runlog.live_ttl, lambda: sweep_orphans(store, runs))
        if cfg.store.trace_retention_days > 0:
            keep = timedelta(days=cfg.store.trace_retention_days)
            await store.prune_traces(keep)
            runs.every(3600, lambda: store.prune_traces(keep))
        if cfg.store.response_retention_days > 0:
            keep_responses = timedelta(days=cfg.store.response_retention_days)
            await prune_responses(store, keep_responses)
            runs.every(3600, lambda: prune_responses(store, keep_responses))
    except BaseException:
        await runs.aclose()
        await store.close()
        raise
    return store, runs


async def sweep_orphans(store: Store, runs: Runs) -> int:
    """Answers left ``streaming`` whose run is not running anywhere (their
    process died) become ``interrupted``, keeping the text checkpointed so far."""
    stuck = await store.streaming_messages()
    live = await runs.running_among(stuck)  # another replica may still be running some
    n = await store.interrupt_streaming([m for m in stuck if m not in live])
    if n:
        log.warning("%d answer(s) left streaming by a process that died marked interrupted", n)
    # the same for background / streamed Responses (their run id is the response id)
    stuck = await unfinished_responses(store)
    live = await runs.running_among(stuck)
    gone = await fail_responses(store, [r for r in stuck if r not in live],
                                "the server generating this response stopped before it finished")
    if gone:
        log.warning("%d response(s) left in progress by a process that died marked failed", gone)
    return n


async def close_runs(store: Store | None, runs: Runs | None) -> None:
    """Graceful: active runs get ``runs.shutdown_grace`` seconds, then are
    saved as interrupted; only then does the store close."""
    if runs is not None:
        await runs.aclose()
    if store is not None:
        await store.close()
