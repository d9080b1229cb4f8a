"""Built-in tools that need no network: the time, arithmetic and reading files
below one configured folder."""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .tools import ServerTool, function_tool

MAX_FILE_BYTES = 256 * 1024


def current_time(timezone: str = "UTC") -> dict[str, str]:
    """The current date and time in an IANA time zone (default UTC)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    now = dt.datetime.now(zone)
    return {"iso": now.isoformat(timespec="seconds"), "timezone": timezone, "weekday": now.strftime("%A")}


# ------------------------------------------------------------- calculator
# A whitelist walk over the parsed expression: no names but a few constants,
# no attribute access, no calls but a few math functions, bounded powers.

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
          "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos,
          "tan": math.tan, "min": min, "max": max}
_CONSTS = {"pi": math.pi, "e": math.e}


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e6):
            raise ValueError("exponent too large")
        return _BIN[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
            and not node.keywords and len(node.args) <= 4:
        return _FUNCS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:60]}")


def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression: + - * / // % **, parentheses, pi, e and
    sqrt, abs, round, floor, ceil, log, log10, exp, sin, cos, tan, min, max."""
    if len(expression) > 500:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {e.msg}") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None


# -------------------------------------------------------------- read_file

def read_file_tool(root: str) -> ServerTool:
    base = Path(root).resolve()

    def read_file(path: str) -> str:
        """Read a UTF-8 text file; the path is relative to the agent's files folder."""
        target = (base / path).resolve()  # resolves symlinks, so a link cannot point outside either
        if not target.is_relative_to(base):
            raise ValueError(f"{path!r} is outside the files folder")
        if not target.is_file():
            raise ValueError(f"no such file: {path!r}")
        data = target.read_bytes()[:MAX_FILE_BYTES + 1]
        text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
        return text + ("\n[truncated]" if len(data) > MAX_FILE_BYTES else "")

    return function_tool(read_file, source="builtin")


BUILTIN_NAMES = ("current_time", "calculator", "read_file")


def builtin_tools(files: str | None) -> dict[str, ServerTool]:
    tools = {"current_time": function_tool(current_time, source="builtin"),
             "calculator": function_tool(calculator, source="builtin")}
    if files:
        tools["read_file"] = read_file_tool(files)
    return tools

