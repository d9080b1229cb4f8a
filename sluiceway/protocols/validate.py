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


INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what every upstream and our own JSON writer can carry
MAX_DEPTH = 128  # orjson writes at most 255 levels; we nest client JSON inside traces and stored objects


def expect_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _fail(where, "an integer", v)
    if not INT_MIN <= v <= INT_MAX:
        raise BadRequest(f"{where} is out of range (a 64-bit integer)", param=where)
    return v


def expect_fraction(v: Any, where: str) -> float:
    """A number from 0 to 1 (top_p)."""
    f = expect_number(v, where)
    if not 0 <= f <= 1:
        raise BadRequest(f"{where} must be between 0 and 1", param=where)
    return f


def check_json_limits(doc: Any) -> None:
    """Client JSON nested deeper than MAX_DEPTH, or with an integer beyond 64
    bits anywhere, is refused before anything else reads it: both are valid
    JSON that our writer (orjson) and the upstreams cannot carry."""
    stack: list[tuple[Any, int, str]] = [(doc, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            if isinstance(node, int) and not isinstance(node, bool) and not INT_MIN <= node <= INT_MAX:
                raise BadRequest(f"{path or 'the body'}: integer out of range (64 bits)", param=path or None)
            continue
        if depth >= MAX_DEPTH:
            raise BadRequest(f"request body is nested deeper than {MAX_DEPTH} levels", param=path or None)
        for k, v in items:
            if isinstance(v, dict | list | int):
                stack.append((v, depth + 1, f"{path}.{k}" if path and isinstance(k, str) else
                              f"{path}[{k}]" if path else str(k)))


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
