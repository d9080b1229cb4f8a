"""Stored OpenAI Responses (``store: true``, the default): the Response
object as last known, and the input items it answered — the conversation so
far, already expanded — so ``previous_response_id`` can continue it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base
from .store import Store, now


class ResponseRow(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str | None] = mapped_column(String(200))
    background: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(32))  # the virtual key that created it (None: static / open)
    input: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


async def save_response(store: Store, response: dict[str, Any], *, input: list[Any] | None = None,
                        owner: str | None = None) -> bool:
    """Insert or update. ``input`` is needed on insert and kept on update.
    False when updating a response that was deleted meanwhile."""
    t = now()
    async with store.tx() as s:
        row = await s.get(ResponseRow, response["id"])
        if row is None:
            if input is None:
                return False
            s.add(ResponseRow(id=response["id"], status=response["status"], model=response.get("model"),
                              background=bool(response.get("background")),
                              previous_response_id=response.get("previous_response_id"), input=input, owner=owner,
                              response=response, created_at=t, updated_at=t))
            return True
        row.status, row.response, row.updated_at = response["status"], response, t
        if input is not None:
            row.input = input
        return True


async def get_response(store: Store, response_id: str) -> dict[str, Any] | None:
    """``{"response", "input", "background", "owner"}`` or None."""
    async with store.tx() as s:
        row = await s.get(ResponseRow, response_id)
        if row is None:
            return None
        return {"response": row.response, "input": row.input, "background": row.background, "owner": row.owner}


async def delete_response(store: Store, response_id: str) -> bool:
    async with store.tx() as s:
        res = await s.execute(delete(ResponseRow).where(ResponseRow.id == response_id))
        return res.rowcount > 0


UNFINISHED = ("queued", "in_progress")


async def unfinished_responses(store: Store, *, settled: float = 10.0) -> list[str]:
    """Responses still queued or in progress that were written at least
    ``settled`` seconds ago (a newer one may not have its run started yet)."""
    async with store.tx() as s:
        return list(await s.scalars(select(ResponseRow.id).where(
            ResponseRow.status.in_(UNFINISHED), ResponseRow.updated_at < now() - timedelta(seconds=settled))))


async def fail_responses(store: Store, ids: list[str], message: str) -> int:
    """Mark unfinished responses ``failed`` (their run died with its process),
    keeping whatever output they had."""
    if not ids:
        return 0
    n = 0
    async with store.tx() as s:
        for row in await s.scalars(select(ResponseRow).where(ResponseRow.id.in_(ids),
                                                             ResponseRow.status.in_(UNFINISHED))):
            row.status = "failed"
            row.response = {**row.response, "status": "failed",
                            "error": {"code": "server_error", "message": message}}
            row.updated_at = now()
            n += 1
    return n


async def prune_responses(store: Store, older_than: timedelta) -> int:
    """Delete finished stored responses last updated before ``older_than`` ago."""
    async with store.tx() as s:
        res = await s.execute(delete(ResponseRow).where(ResponseRow.updated_at < now() - older_than,
                                                        ResponseRow.status.not_in(UNFINISHED)))
        return res.rowcount
