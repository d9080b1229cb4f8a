"""Strict configuration: an unknown key is an error, said the way a person
fixes it — the file and line, the key path, and the nearest known key.

A typo must never be silently dropped: ``baseurl:`` instead of ``base_url:``
once sent an API key to the default host. Every config model derives from
``Strict`` (pydantic ``extra="forbid"``), and ``explain`` turns a pydantic
``ValidationError`` into one readable line per problem.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def known_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        keys.append(field.alias or name)
    return keys


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the last key of ``loc`` (walking fields,
    dict values and list items); None where the shape is not a model."""
    current: Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            args = typing.get_args(current)
            current = args[-1] if args else None
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` → X (the first model-like member of a union)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in members:
            if isinstance(a, type) and issubclass(a, BaseModel) or typing.get_origin(a) in (dict, list):
                return a
        return members[0] if members else tp
    return tp


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` in a YAML document, if it is there."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def path_of(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(err: ValidationError, root: type[BaseModel], *, source: Path | None = None, text: str | None = None,
            prefix: tuple[Any, ...] = ()) -> str:
    """One line per problem: ``file:line: key.path: what is wrong``."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full = prefix + loc
        where = _where(source, text, full)
        if e["type"] == "extra_forbidden":
            holder = _model_at(root, loc)
            hint = did_you_mean(str(loc[-1]), known_keys(holder)) if holder else ""
            msg = f"unknown key{hint}"
        else:
            msg = e["msg"]
        lines.append(f"{where}{path_of(full)}: {msg}")
    return "\n".join(lines)


def explain_unknown(source: Path | None, text: str | None, loc: tuple[Any, ...], hint: str, detail: str = "") -> str:
    return f"{_where(source, text, loc)}{path_of(loc)}: unknown key{hint}{'; ' + detail if detail else ''}"


def _where(source: Path | None, text: str | None, loc: tuple[Any, ...]) -> str:
    """``file:line: `` (or ``file: ``, or nothing) for a key path."""
    if source is None:
        return ""
    n = line_of(text, loc) if text is not None else None
    return f"{source}:{n}: " if n else f"{source}: "
