"""Bindings: the ``${source.path as type | default @(annotation)}`` expressions
of model-compose files.

A string that is exactly one binding renders to the bound value itself (a
dict, a number, a live stream); a string with text around bindings renders to
a string. ``${env.X}`` never gets here: the loader substitutes it in the file
text before YAML parsing, as model-compose does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .streams import LiveStream

# key (input, jobs, response[], result[], output…), optional [index], .path,
# `as type[/subtype][;format]`, `| default`, `@(annotation …)`
BINDING = re.compile(
    r"""\$\{\s*
    (?P<key>[A-Za-z_][A-Za-z0-9_-]*(?:\[\])?)
    (?:\[(?P<index>-?\d+)\])?
    (?:\.(?P<path>[^\s|}@]+))?
    (?:\s+as\s+(?P<type>[A-Za-z]+)(?:/(?P<subtype>[A-Za-z-]+))?(?:;(?P<format>[A-Za-z-]+))?)?
    (?:\s*\|\s*(?P<default>(?:[^}@\\]|\\.)*?))?
    (?:\s*@\((?P<annotation>[^)]*)\))?
    \s*\}""",
    re.VERBOSE,
)
_SEGMENT = re.compile(r"[^.\[\]]+|\[-?\d+\]")


@dataclass(slots=True, frozen=True)
class Binding:
    key: str
    index: int | None
    path: str | None
    type: str | None
    subtype: str | None
    format: str | None
    default: str | None
    annotation: str | None

    @classmethod
    def of(cls, m: re.Match[str]) -> Binding:
        idx = m.group("index")
        default = m.group("default")
        return cls(m.group("key"), int(idx) if idx is not None else None, m.group("path"), m.group("type"),
                   m.group("subtype"), m.group("format"), default.strip() if default is not None else None,
                   m.group("annotation"))

    @property
    def streams(self) -> bool:
        """``as stream/text``, ``as text;sse-text`` and the like mark a streamed output."""
        return self.type == "stream" or (self.format or "").startswith("sse")

    @property
    def stream_format(self) -> str:
        if self.type == "stream":
            return self.subtype or "text"
        return "json" if (self.format or "").endswith("json") else "text"

    @property
    def description(self) -> str | None:
        a = (self.annotation or "").strip()
        return a[len("description"):].strip() if a.startswith("description") else None


def find(value: Any) -> list[Binding]:
    """Every binding in a (nested) value, in order."""
    out: list[Binding] = []
    if isinstance(value, str):
        out.extend(Binding.of(m) for m in BINDING.finditer(value))
    elif isinstance(value, Mapping):
        for v in value.values():
            out.extend(find(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(find(v))
    return out


def lookup(value: Any, path: str | None) -> Any:
    """``a.b[0].c`` into dicts and lists; a missing step is None."""
    if not path:
        return value
    for seg in _SEGMENT.findall(path):
        if seg.startswith("["):
            i = int(seg[1:-1])
            if not isinstance(value, list) or not -len(value) <= i < len(value):
                return None
            value = value[i]
        elif isinstance(value, Mapping):
            value = value.get(seg)
        elif isinstance(value, list) and seg.lstrip("-").isdigit():
            i = int(seg)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


class BindingError(ValueError):
    pass


def convert(value: Any, type_: str | None, what: str) -> Any:
    """Apply ``as <type>``; a value that cannot be converted is a client error."""
    if value is None or type_ in (None, "stream", "markdown", "object", "select"):
        return value if type_ != "markdown" or value is None else str(value)
    try:
        if type_ in ("text", "string"):
            return value if isinstance(value, str) else _text(value)
        if type_ == "integer":
            return int(float(value)) if isinstance(value, str) else int(value)
        if type_ == "number":
            return float(value)
        if type_ == "boolean":
            if isinstance(value, str):
                return value.strip().lower() in ("true", "1", "yes", "on")
            return bool(value)
        if type_ == "json":
            return orjson.loads(value) if isinstance(value, str | bytes) else value
    except (TypeError, ValueError) as e:
        raise BindingError(f"{what}: cannot convert {value!r} to {type_}") from e
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def default_value(raw: str) -> Any:
    """A default is YAML-ish scalar text: ``0.7``, ``false``, ``"quoted"``."""
    raw = raw.replace("\\$", "$").replace("\\{", "{").replace("\\}", "}").replace("\\@", "@")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def resolve(b: Binding, scope: Mapping[str, Any]) -> Any:
    if b.key not in scope:
        raise BindingError(f"unknown binding source ${{{b.key}}}")
    value = scope[b.key]
    if b.index is not None:
        value = value[b.index] if isinstance(value, list) and -len(value) <= b.index < len(value) else None
    if b.key == "jobs" and b.path:  # ${jobs.<id>.output.path}: job ids may contain dashes, not dots
        job, _, rest = b.path.partition(".")
        field, _, rest = rest.partition(".")
        if field.startswith("output["):
            field, rest = "output", field[len("output"):] + ("." + rest if rest else "")
        value = value.get(job) if isinstance(value, Mapping) and field == "output" else None
        value = lookup(value, rest or None)
    else:
        value = lookup(value, b.path)
    if (value is None or value == "") and b.default is not None:
        value = default_value(b.default)
    if isinstance(value, LiveStream):
        return value
    return convert(value, b.type, f"${{{b.key}{'.' + b.path if b.path else ''}}}")


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every binding in a nested value against ``scope``."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        m = BINDING.fullmatch(value.strip())
        if m:
            return resolve(Binding.of(m), scope)
        return BINDING.sub(lambda m: _text(_for_text(resolve(Binding.of(m), scope))), value)
    if isinstance(value, Mapping):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


def _for_text(value: Any) -> Any:
    if isinstance(value, LiveStream):
        raise BindingError("a streamed job output cannot be interpolated into text before it completes")
    return value


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(value)
