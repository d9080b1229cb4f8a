"""Virtual API keys in the store.

A key is ``sk-sw-`` plus 32 random bytes (URL-safe base64). It is returned
once, by ``create_key``; the table keeps only its SHA-256 (hex) and a short
prefix so that people can tell keys apart in a list. Lookups hash the
presented key and match the hash, so the raw key is never needed again.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ..core import BadRequest
from .models import Base
from .store import Store, _iso, new_id, now

KEY_PREFIX = "sk-sw-"
SHOWN_CHARS = 12  # "sk-sw-" + 6 random characters, for display
MAX_NAME = 200


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    models: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrent_streams: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def key_dict(r: ApiKeyRow) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "prefix": r.prefix, "models": list(r.models or []),
            "rpm": r.rpm, "tpm": r.tpm, "max_concurrent_streams": r.max_concurrent_streams,
            "created_at": _iso(r.created_at), "revoked_at": _iso(r.revoked_at)}


def _limit(name: str, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 40:
        raise BadRequest(f"'{name}' must be a positive integer or null", param=name)
    return v


def _models(v: Any) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(m, str) and m and len(m) <= 200 for m in v) or len(v) > 1000:
        raise BadRequest("'models' must be a list of model names (empty: all models)", param="models")
    return list(dict.fromkeys(v))


async def create_key(store: Store, *, name: str, models: list[str] | None = None, rpm: int | None = None,
                     tpm: int | None = None, max_concurrent_streams: int | None = None) -> tuple[dict[str, Any], str]:
    """Create a key; returns its record and the raw key (shown once, never stored)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise BadRequest(f"'name' must be a non-empty string of at most {MAX_NAME} characters", param="name")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(id=new_id(), name=name.strip(), key_hash=hash_key(raw), prefix=raw[:SHOWN_CHARS],
                    models=_models(models), rpm=_limit("rpm", rpm), tpm=_limit("tpm", tpm),
                    max_concurrent_streams=_limit("max_concurrent_streams", max_concurrent_streams),
                    created_at=now())
    async with store.tx() as s:
        s.add(row)
    return key_dict(row), raw


async def list_keys(store: Store, *, include_revoked: bool = True) -> list[dict[str, Any]]:
    q = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if not include_revoked:
        q = q.where(ApiKeyRow.revoked_at.is_(None))
    async with store.tx() as s:
        return [key_dict(r) for r in await s.scalars(q)]


async def get_key(store: Store, key_id: str) -> dict[str, Any] | None:
    async with store.tx() as s:
        row = await s.get(ApiKeyRow, key_id)
        return key_dict(row) if row else None


async def find_key(store: Store, raw: str) -> dict[str, Any] | None:
    """The key whose hash matches ``raw`` (check ``revoked_at``); None when unknown."""
    async with store.tx() as s:
        row = (await s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(raw)))).first()
        return key_dict(row) if row is not None else None


async def revoke_key(store: Store, key_id: str) -> dict[str, Any] | None:
    """Mark a key revoked (idempotent: the first revocation time stays). None when unknown."""
    async with store.tx() as s:
        row = await s.get(ApiKeyRow, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = now()
        return key_dict(row)


async def has_active_keys(store: Store) -> bool:
    async with store.tx() as s:
        n = await s.scalar(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
        return bool(n)
