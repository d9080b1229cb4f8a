"""Small type checks for decoding client JSON: each failure is a BadRequest
naming the offending field, so a client always learns what it got wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..core import BadRequest

T = TypeVar("T")


def _fail(where: str, what: str, value: Any) -> BadRequest:
    return BadRequest(f"{where} must be {what}, got {type(value).__name__}", param=where)


def expect_dict(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(where, "an object", v)
    return v


def expect_list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise _fail(where, "an array", v)
    return v


def expect_str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _fail(where, "a string", v)
    return v


def expect_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise _fail(where, "an integer", v)
    return v


def expect_number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(where, "a number", v)
    return float(v)


def expect_bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _fail(where, "a boolean", v)
    return v


def optional(v: Any, check: Callable[[Any, str], T], where: str) -> T | None:
    return None if v is None else check(v, where)
